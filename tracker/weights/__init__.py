"""The ``weights/`` folder: its manifest, finding files in it by name, and the weights CLI.

``weights/manifest.json`` lists the bundled files: ``{"files": {name: {"sha256", "size", "config",
"source", "default", ...}}}``. A listed file is checked against its sha256 whenever it is loaded. Released
OSTrack checkpoints a user drops in the folder are not listed; they load by name (``resolve_weights``) with
their config inferred from the tensor shapes.

CLI (errors: one line on stderr, exit 1; ``--debug`` also prints the traceback)::

    python -m tracker.weights list               # what is in weights/, listed or not
    python -m tracker.weights verify [FILE ...]  # sha256 against the manifest; exit 1 on mismatch/missing
    python -m tracker.weights convert IN OUT.safetensors [--config NAME]
    python -m tracker.weights average OUT.safetensors IN IN [...]  # uniform weight average ("model soup")
    python -m tracker.weights info FILE          # architecture, config, parameters, dtypes, format
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import traceback
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from tracker.arch import config_advice, describe, infer_config, parameter_count
from tracker.checkpoint import MAX_LISTED, Checkpoint, load_state_into, read_checkpoint, save_safetensors
from tracker.config import Config, load_config
from tracker.errors import CheckpointError, TrackerError
from tracker.models.ostrack import OSTrack, build_model

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS_DIR = ROOT / "weights"
MANIFEST_NAME = "manifest.json"
# File endings treated as weights when listing the folder (``.tar`` covers the official ``.pth.tar``).
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".tar", ".pt", ".ckpt", ".bin")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ManifestEntry:
    """One file the manifest lists; ``source`` says where it came from (provenance)."""

    name: str
    sha256: str
    size: int | None
    config: str
    source: str
    default: bool
    kind: str = "tracker"  # what the file holds: "tracker" (a box tracker) or another model, e.g. "grounding"


def _folder(weights_dir: str | Path | None) -> Path:
    # Read WEIGHTS_DIR at call time so tests (and embedding apps) can point the module at another folder.
    return Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR


def read_manifest(weights_dir: str | Path | None = None) -> dict[str, ManifestEntry]:
    """The entries of ``<weights_dir>/manifest.json`` (none if there is no manifest)."""
    path = _folder(weights_dir) / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        files = json.loads(path.read_text(encoding="utf-8")).get("files", {})
    except (OSError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{path} is not a readable manifest ({err}); restore it") from None
    if not isinstance(files, dict):
        raise CheckpointError(f"{path}: 'files' must map file names to entries; restore it from the repo")
    return {name: _entry(name, raw, path) for name, raw in files.items()}


def _entry(name: str, raw: object, manifest: Path) -> ManifestEntry:
    sha = raw.get("sha256") if isinstance(raw, dict) else None
    if not isinstance(sha, str) or len(sha) != 64:
        raise CheckpointError(f"{manifest}: entry {name} has no valid sha256; restore it from the repo")
    return ManifestEntry(
        name=name,
        sha256=sha.lower(),
        size=raw.get("size"),
        config=str(raw.get("config", "")),
        source=str(raw.get("source", "")),
        default=bool(raw.get("default", False)),
        kind=str(raw.get("kind", "tracker")),
    )


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_problem(path: Path, entry: ManifestEntry) -> str | None:
    """Why ``path`` is not the file ``entry`` describes (missing, size, sha256), or None if it is."""
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        return f"size {size:,} bytes, manifest says {entry.size:,}"
    sha = file_sha256(path)
    if sha != entry.sha256:
        return f"sha256 {sha[:12]}…, manifest says {entry.sha256[:12]}…"
    return None


def verify_against_manifest(path: str | Path, weights_dir: str | Path | None = None) -> None:
    """If ``path`` is a weights-folder file the manifest lists, raise unless its sha256 matches."""
    path, folder = Path(path), _folder(weights_dir)
    if path.resolve().parent != folder.resolve():
        return
    entry = read_manifest(folder).get(path.name)
    if entry is None:
        return
    problem = file_problem(path, entry)
    if problem is not None:
        raise CheckpointError(
            f"{path} is damaged or changed ({problem}); restore it from the repository or release, "
            "then check it with: python -m tracker.weights verify"
        )


def default_weights(weights_dir: str | Path | None = None) -> Path:
    """The bundled model (the manifest entry marked ``"default": true``), after checking its sha256."""
    folder = _folder(weights_dir)
    for entry in read_manifest(folder).values():
        # Other models (the grounding network) have their own default; they are not box trackers.
        if entry.kind == "tracker" and entry.default and (folder / entry.name).is_file():
            path = folder / entry.name
            verify_against_manifest(path, folder)
            return path
    raise CheckpointError(
        "no bundled model is installed yet; pass --weights FILE (an official OSTrack checkpoint, "
        "see weights/README.md)"
    )


def resolve_weights(name_or_path: str | Path, weights_dir: str | Path | None = None) -> Path:
    """A weights file by path, or by bare file name in the weights folder (``OSTrack_ep0300.pth.tar``).

    A relative path that does not exist from the working folder is also tried from the repository root, so
    ``weights/OSTrack_ep0300.pth.tar`` works from anywhere.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    tried = [path]
    if not path.is_absolute():
        tried.append(_folder(weights_dir) / path if len(path.parts) == 1 else ROOT / path)
        if tried[-1].is_file():
            return tried[-1]
    raise CheckpointError(
        f"weights file {name_or_path} not found (looked at {', '.join(str(p) for p in tried)}); "
        "check the name, or put the file in weights/ (see weights/README.md)"
    )


# ------------------------------------------------------------------------------------------------------------
# CLI


def _cmd_list(args: argparse.Namespace) -> int:
    folder = _folder(args.dir)
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
        ckpt = read_checkpoint(path)
        return (ckpt.config.name or "embedded") if ckpt.config is not None else ckpt.config_or_inferred().name
    except TrackerError:
        return "? (see info)"


def _cmd_verify(args: argparse.Namespace) -> int:
    folder = _folder(args.dir)
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
    source = resolve_weights(args.input, args.dir)
    target = _new_output(args.output, args.force)
    ckpt = read_checkpoint(source)
    cfg = load_config(args.config) if args.config else ckpt.config_or_inferred()
    # A config read from a YAML path is named by that path; embed only its stem, not this machine's folders.
    cfg = dataclasses.replace(cfg, name=Path(cfg.name).stem)
    _write_checked(_loaded(ckpt, cfg), cfg, target, _provenance(source, ckpt))
    return 0


def _cmd_average(args: argparse.Namespace) -> int:
    """A uniform weight average ("model soup") of fine-tunes of one model; the first file's config is kept."""
    if len(args.inputs) < 2:
        raise CheckpointError("average needs at least two weights files")
    target = _new_output(args.output, args.force)
    sources = [resolve_weights(name, args.dir) for name in args.inputs]
    ckpts = [read_checkpoint(path) for path in sources]
    cfg = ckpts[0].config_or_inferred()
    for path, ckpt in zip(sources[1:], ckpts[1:], strict=True):
        if ckpt.config_or_inferred().model != cfg.model:
            raise CheckpointError(f"{path} has another MODEL config than {sources[0]}; only like models average")
    # Loading each file into the model checks its tensor names and shapes, with the loader's own error lines.
    models = [_loaded(ckpt, cfg) for ckpt in ckpts]
    states = [each.state_dict() for each in models]
    averaged = {key: _mean([state[key] for state in states]) for key in states[0]}
    model = models[0]
    model.load_state_dict(averaged)
    named = zip(args.inputs, sources, strict=True)
    extra = {"averaged_from": ", ".join(f"{name} (sha256 {file_sha256(path)})" for name, path in named),
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


def _loaded(ckpt: Checkpoint, cfg: Config) -> OSTrack:
    with torch.device("meta"):
        model = build_model(cfg)
    return load_state_into(model, ckpt.state_dict, ckpt.path, cfg).eval()


def _provenance(source: Path, ckpt: Checkpoint) -> dict[str, str]:
    extra = {
        "source_file": source.name,
        "source_sha256": file_sha256(source),
        "source_layout": ckpt.layout,
        "converted_by": "python -m tracker.weights convert",
    }
    if ckpt.config_hint:
        extra["source_experiment"] = ckpt.config_hint
    return extra


def _check_same_model(model: OSTrack, cfg: Config, path: Path) -> None:
    """Load ``path`` the way the app does and require the same config and bit-identical tensors."""
    from tracker.build import load_model  # build imports this module

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
    if ckpt.config is not None:
        return f"{ckpt.config.name or '(unnamed)'} (embedded in the file)"
    try:
        cfg = infer_config(ckpt.state_dict, source=ckpt.path, hint=ckpt.config_hint)
    except CheckpointError:
        return config_advice(ckpt.state_dict)
    if ckpt.config_hint:
        return f"{cfg.name} (inferred from the tensor shapes; the file names experiment {ckpt.config_hint})"
    return f"{cfg.name} (inferred from the tensor shapes; CE preferred, as the released models are CE)"


def _manifest_text(path: Path, weights_dir: str | Path | None) -> str:
    folder = _folder(weights_dir)
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


if __name__ == "__main__":
    sys.exit(main())
