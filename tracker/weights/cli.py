"""``python -m tracker.weights``: the command line over the ``weights/`` folder, on top of the library.

Errors: one line on stderr, exit 1; ``--debug`` also prints the traceback::

    python -m tracker.weights list               # what is in weights/, listed or not
    python -m tracker.weights verify [FILE ...]  # sha256 against the manifest; exit 1 on mismatch/missing
    python -m tracker.weights convert IN OUT.safetensors [--config NAME] [--set KEY=VALUE ...]
    python -m tracker.weights average OUT.safetensors IN IN [...]  # uniform weight average ("model soup")
    python -m tracker.weights info FILE          # architecture, config, parameters, dtypes, format
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import traceback
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from tracker.arch import config_advice, describe, parameter_count
from tracker.build import load_model, model_from
from tracker.checkpoint import MAX_LISTED, Checkpoint, read_checkpoint, save_safetensors
from tracker.config import Config, parse_overrides
from tracker.errors import CheckpointError, TrackerError
from tracker.models.ostrack import OSTrack
from tracker.resolve import EMBEDDED, ResolvedModel, config_for, resolve_model
from tracker.weights import (
    MANIFEST_NAME,
    WEIGHT_SUFFIXES,
    ManifestEntry,
    file_problem,
    file_sha256,
    read_manifest,
    resolve_weights,
    weights_folder,
)


def _cmd_list(args: argparse.Namespace) -> int:
    folder = weights_folder(args.dir)
    manifest = read_manifest(folder)
    rows = [("NAME", "SHA256", "SIZE", "CONFIG", "SOURCE")]
    for entry in manifest.values():
        path = folder / entry.name
        size = path.stat().st_size if path.is_file() else entry.size
        source = entry.source or "(no source recorded)"
        rows.append(
            (
                entry.name + (" (default)" if entry.default else ""),
                entry.sha256[:12],
                _size_text(size),
                entry.config or "?",
                source if path.is_file() else f"{source} [MISSING]",
            )
        )
    for path in _unlisted_files(folder, manifest):
        size = _size_text(path.stat().st_size)
        rows.append((path.name, file_sha256(path)[:12], size, _config_label(path), "not in manifest"))
    if len(rows) == 1:
        print(f"no weights in {folder}; see weights/README.md for the released OSTrack files")
        return 0
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
    return 0


def _unlisted_files(folder: Path, manifest: dict[str, ManifestEntry]) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES and p.name not in manifest
    )


def _config_label(path: Path) -> str:
    """The config a file carries or fits, for the listing; '?' when it has none or cannot be read."""
    try:
        cfg, origin = config_for(read_checkpoint(path))
        return cfg.name or origin  # an embedded config may have no name
    except TrackerError:
        return "? (see info)"


def _cmd_verify(args: argparse.Namespace) -> int:
    folder = weights_folder(args.dir)
    manifest = read_manifest(folder)
    targets = [Path(f) for f in args.files] or [folder / name for name in manifest]
    if not targets:
        print(f"{folder / MANIFEST_NAME} lists no files; nothing to verify")
        return 0
    failed = 0
    for target in targets:
        path = target if target.is_file() else folder / target.name
        entry = manifest.get(target.name)
        problem = "not in the manifest: no sha256 to check" if entry is None else file_problem(path, entry)
        print(f"ok    {target.name}" if problem is None else f"FAIL  {target.name}: {problem}")
        failed += problem is not None
    if failed:
        print(f"{failed} of {len(targets)} files failed; restore them from the repository or release")
    return 1 if failed else 0


def _cmd_convert(args: argparse.Namespace) -> int:
    target = _new_output(args.output, args.force)
    overrides = parse_overrides(args.set)
    resolved = resolve_model(args.config, args.input, overrides, weights_dir=args.dir)
    # A config read from a YAML path is named by that path; embed only its stem, not this machine's folders.
    cfg = dataclasses.replace(resolved.config, name=args.name or Path(resolved.config.name).stem)
    model = model_from(dataclasses.replace(resolved, config=cfg))
    extra = _provenance(resolved)
    if overrides:
        extra["config_overrides"] = " ".join(f"{key}={value}" for key, value in overrides.items())
    _write_checked(model, cfg, target, extra)
    return 0


def _cmd_average(args: argparse.Namespace) -> int:
    """A uniform weight average ("model soup") of fine-tunes of one model; the first file's config is kept."""
    if len(args.inputs) < 2:
        raise CheckpointError("average needs at least two weights files")
    target = _new_output(args.output, args.force)
    resolved = [resolve_model(None, name, weights_dir=args.dir) for name in args.inputs]
    cfg = resolved[0].config
    for each in resolved[1:]:
        if each.config.model != cfg.model:
            raise CheckpointError(
                f"{each.source} has another MODEL config than {resolved[0].source}; only like models average"
            )
    # Loading each file into the model checks its tensor names and shapes, with the loader's own error lines.
    models = [model_from(dataclasses.replace(each, config=cfg)) for each in resolved]
    states = [each.state_dict() for each in models]
    averaged = {key: _mean([state[key] for state in states]) for key in states[0]}
    model = models[0]
    model.load_state_dict(averaged)
    named = zip(args.inputs, resolved, strict=True)
    extra = {"averaged_from": ", ".join(f"{name} (sha256 {file_sha256(each.source)})" for name, each in named),
             "converted_by": "python -m tracker.weights average"}
    _write_checked(model, cfg, target, extra)
    return 0


def _mean(tensors: list[torch.Tensor]) -> torch.Tensor:
    if not tensors[0].is_floating_point():  # counters such as BatchNorm's num_batches_tracked are not weights
        return tensors[0]
    return torch.stack([t.double() for t in tensors]).mean(0).to(tensors[0].dtype)


def _new_output(output: str, force: bool) -> Path:
    target = Path(output)
    if target.suffix != ".safetensors":
        raise CheckpointError(f"output {target} must end in .safetensors")
    if target.exists() and not force:
        raise CheckpointError(f"{target} already exists; pass --force to replace it")
    return target


def _write_checked(model: OSTrack, cfg: Config, target: Path, extra: dict[str, str]) -> None:
    """Write through a partial file that must load back to the same model, so a failure leaves no half file."""
    partial = target.with_name(f"{target.stem}.partial{target.suffix}")
    try:
        save_safetensors(model, cfg, partial, extra=extra)
        _check_same_model(model, cfg, partial)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    size = _size_text(target.stat().st_size)
    sha = file_sha256(target)
    print(f"wrote {target} (config {cfg.name}, {size}, sha256 {sha}); it loads to an identical model")


# Keys save_safetensors writes afresh; every other key of the source (training command, seed, data, wall time)
# is its provenance and travels with the tensors.
_REWRITTEN_KEYS = ("format", "config", "config_name")


def _provenance(resolved: ResolvedModel) -> dict[str, str]:
    source = resolved.provenance
    kept = {key: value for key, value in source.metadata.items() if key not in _REWRITTEN_KEYS}
    extra = kept | {
        "source_file": source.weights.name,
        "source_sha256": file_sha256(source.weights),
        "source_layout": source.layout,
        "converted_by": "python -m tracker.weights convert",
    }
    if source.experiment:
        extra["source_experiment"] = source.experiment
    return extra


def _check_same_model(model: OSTrack, cfg: Config, path: Path) -> None:
    """Load ``path`` the way the app does and require the same config and bit-identical tensors."""
    again, cfg_again = load_model(None, path)
    if cfg_again != cfg:  # field by field, name included
        raise CheckpointError(f"{path}: the embedded config reads back changed; report this as a bug")
    expected, got = model.state_dict(), again.state_dict()
    differing = [k for k, v in expected.items() if k not in got or not _identical(v, got[k])]
    if differing or len(got) != len(expected):
        listed = ", ".join(differing[:MAX_LISTED])
        raise CheckpointError(f"{path}: tensors differ after conversion ({listed}); report this as a bug")


def _identical(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


def _cmd_info(args: argparse.Namespace) -> int:
    path = resolve_weights(args.file, args.dir)
    ckpt = read_checkpoint(path)
    state = ckpt.state_dict
    print(f"file:         {path}")
    print(f"format:       {_format_text(path, ckpt)}")
    print(f"size:         {_size_text(path.stat().st_size)}, sha256 {file_sha256(path)}")
    print(f"architecture: {describe(state)}")
    print(f"config:       {_config_text(ckpt)}")
    print(f"parameters:   {parameter_count(state):,} in {len(state)} tensors")
    print(f"dtypes:       {', '.join(ckpt.dtypes)} as stored (floating-point tensors load as float32)")
    print(f"manifest:     {_manifest_text(path, args.dir)}")
    return 0


def _format_text(path: Path, ckpt: Checkpoint) -> str:
    if ckpt.format == "safetensors":
        return ckpt.layout
    container = "PyTorch zip" if zipfile.is_zipfile(path) else "PyTorch legacy pickle"
    text = f"{container}, {ckpt.layout}"
    if ckpt.config_hint:
        text += f"; training checkpoint of experiment {ckpt.config_hint} (its objects read as inert data)"
    return text


def _config_text(ckpt: Checkpoint) -> str:
    try:
        cfg, origin = config_for(ckpt)
    except CheckpointError:
        return config_advice(ckpt.state_dict)
    if origin == EMBEDDED:
        return f"{cfg.name or '(unnamed)'} (embedded in the file)"
    if ckpt.config_hint:
        return f"{cfg.name} (inferred from the tensor shapes; the file names experiment {ckpt.config_hint})"
    return f"{cfg.name} (inferred from the tensor shapes; CE preferred, as the released models are CE)"


def _manifest_text(path: Path, weights_dir: str | Path | None) -> str:
    folder = weights_folder(weights_dir)
    entry = read_manifest(folder).get(path.name) if path.resolve().parent == folder.resolve() else None
    if entry is None:
        return "not listed"
    problem = file_problem(path, entry)
    return "listed, sha256 matches" if problem is None else f"listed, DOES NOT MATCH ({problem})"


def _size_text(size: int | None) -> str:
    return "?" if size is None else f"{size / 1e6:.1f} MB"


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "list": _cmd_list,
    "verify": _cmd_verify,
    "convert": _cmd_convert,
    "average": _cmd_average,
    "info": _cmd_info,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tracker.weights", description="The files in weights/.")
    parser.add_argument("--dir", type=Path, default=None, help="weights folder (default: weights/)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="files in the weights folder: name, sha256, size, config, source")
    verify = sub.add_parser("verify", help="check sha256 against the manifest (all listed files by default)")
    verify.add_argument("files", nargs="*", help="file names or paths (default: all the manifest lists)")
    convert = sub.add_parser("convert", help="official checkpoint -> safetensors with the config embedded")
    convert.add_argument("input", help="official .pth/.pth.tar (training checkpoints too) or .safetensors")
    convert.add_argument("output", help="the .safetensors file to write")
    convert.add_argument("--config", help="config name or YAML (default: inferred from the tensor shapes)")
    convert.add_argument("--force", action="store_true", help="replace an existing output file")
    convert.add_argument(
        "--name", help="the config name to embed (default: the source's), e.g. once a run's --set made another model"
    )
    convert.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="change one config key before embedding it (dotted, YAML value), e.g. a calibration fitted after training",
    )
    average = sub.add_parser("average", help="uniform weight average of fine-tunes of one model (a model soup)")
    average.add_argument("output", help="the .safetensors file to write")
    average.add_argument("inputs", nargs="+", help="two or more weights files with the same MODEL config")
    average.add_argument("--force", action="store_true", help="replace an existing output file")
    info = sub.add_parser("info", help="architecture, matching config, parameters, dtypes, format of a file")
    info.add_argument("file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except (TrackerError, OSError) as err:
        if args.debug:
            traceback.print_exc()
        print(f"error: {err}", file=sys.stderr)
        return 1
