"""The ``weights/`` folder: its manifest, finding files in it by name, checking them against their sha256.

``weights/manifest.json`` lists the bundled files: ``{"files": {name: {"sha256", "size", "config",
"source", "default", ...}}}``. A listed file is checked against its sha256 whenever it is loaded. Released
OSTrack checkpoints a user drops in the folder are not listed; they load by name (``resolve_weights``) with
their config inferred from the tensor shapes.

The command line over this folder (``python -m tracker.weights list|verify|convert|average|info``) is
``tracker.weights.cli``; nothing here imports it, so the library never depends on its front end.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from tracker.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[2]
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


def weights_folder(weights_dir: str | Path | None = None) -> Path:
    """``weights_dir`` if given, else the repository's ``weights/``."""
    # Read WEIGHTS_DIR at call time so tests (and embedding apps) can point the module at another folder.
    return Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR


def read_manifest(weights_dir: str | Path | None = None) -> dict[str, ManifestEntry]:
    """The entries of ``<weights_dir>/manifest.json`` (none if there is no manifest)."""
    path = weights_folder(weights_dir) / MANIFEST_NAME
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
    path, folder = Path(path), weights_folder(weights_dir)
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
    folder = weights_folder(weights_dir)
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
        tried.append(weights_folder(weights_dir) / path if len(path.parts) == 1 else ROOT / path)
        if tried[-1].is_file():
            return tried[-1]
    raise CheckpointError(
        f"weights file {name_or_path} not found (looked at {', '.join(str(p) for p in tried)}); "
        "check the name, or put the file in weights/ (see weights/README.md)"
    )


def update_manifest(manifest: Path, name: str, entry: dict) -> None:
    """Add or replace ``files[name]`` in the manifest, keeping every other entry (another writer may share it)."""
    manifest.parent.mkdir(parents=True, exist_ok=True)
    lock_path = manifest.with_suffix(".lock")
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = {"files": {}}
        if manifest.is_file():
            with contextlib.suppress(json.JSONDecodeError):
                data = json.loads(manifest.read_text(encoding="utf-8"))
        data.setdefault("files", {})
        previous = data["files"].get(name, {})
        same_file = previous.get("sha256") == entry.get("sha256")
        if previous.get("scores") and not entry.get("scores") and same_file:  # scores of other weights do not carry
            entry = {**entry, "scores": previous["scores"]}
        data["files"][name] = entry
        tmp = manifest.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        tmp.replace(manifest)
    with contextlib.suppress(OSError):
        lock_path.unlink()
