"""Weights files in and out, safely.

Reads: official OSTrack checkpoints (``{'net': state_dict}`` ``.pth``/``.pth.tar``, bare state dicts, and the
released training checkpoints whose pickles name training-code classes) and our safetensors files (config in the
metadata, or a YAML beside them). Nothing named in a file is ever imported or run: ``torch.load`` runs with
``weights_only=True``; files it refuses go through ``tracker.safe_unpickle``, which builds inert placeholders and
refuses files that ask to run code. Which config a file's tensors need, and loading them into a model, is
``tracker.resolve``.
"""

from __future__ import annotations

import json
import math
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from tracker.config import Config, config_from_yaml_text
from tracker.errors import CheckpointError, first_line
from tracker.safe_unpickle import UnsafeCheckpoint, safe_load

MAX_LISTED = 10  # mismatches listed by name in one error; the rest are counted


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """Tensors read from a weights file, with what the file said about its model.

    ``config`` is the embedded (or side-by-side) config for our own files; ``config_hint`` is what an official
    training checkpoint's settings name (such as its experiment file), used to pick between look-alike variants.
    ``layout`` says where in the file the tensors were found; ``dtypes`` are their types as stored (before the
    cast to float32).
    """

    path: str
    state_dict: dict[str, torch.Tensor]
    format: str
    config: Config | None = None
    config_hint: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    layout: str = ""
    dtypes: tuple[str, ...] = ()


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a weights file without running anything in it; tensors come back as float32 CPU tensors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist; check the path (see weights/README.md)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"weights file {path} is empty; download it again")
    ckpt = _read_safetensors(path) if path.suffix == ".safetensors" else _read_torch(path)
    _check_finite(ckpt.state_dict, path)
    return ckpt


def _read_safetensors(path: Path) -> Checkpoint:
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({first_line(err, 200)}); download it again"
        ) from None
    config = None
    if "config" in metadata:
        config = config_from_yaml_text(
            metadata["config"], source=f"{path} (embedded config)", name=metadata.get("config_name", "")
        )
    else:
        for side in (path.with_suffix(".yaml"), path.with_suffix(".yml")):
            if side.is_file():
                config = config_from_yaml_text(side.read_text(encoding="utf-8"), source=str(side))
                break
    return Checkpoint(
        str(path),
        _as_float32(tensors),
        "safetensors",
        config,
        metadata.get("config_name"),
        metadata,
        "safetensors tensors" + (" with embedded config" if "config" in metadata else ""),
        _dtype_names(tensors),
    )


def _read_torch(path: Path) -> Checkpoint:
    _check_container(path)
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols; our error says it better
            warnings.simplefilter("ignore")
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        hint = None
    except Exception as first:
        if not _is_weights_only_refusal(first):
            raise CheckpointError(
                f"{path} cannot be read ({first_line(first)}); it may be truncated: download it again"
            ) from None
        try:
            obj = safe_load(path)
        except UnsafeCheckpoint as err:
            raise CheckpointError(
                f"refusing {path}: {err}; never load it, get the file from a trusted source"
            ) from None
        except Exception as err:
            raise CheckpointError(
                f"{path} cannot be read ({first_line(err, 200)}); it may be truncated: download it again"
            ) from None
        hint = _settings_hint(obj)
    state, layout = _extract_state_dict(obj, path)
    return Checkpoint(
        str(path), _as_float32(_strip_prefix(state)), "torch", None, hint, {}, layout, _dtype_names(state)
    )


def _check_container(path: Path) -> None:
    """Torch checkpoints are zips holding ``*/data.pkl`` (or, from old versions, bare pickles)."""
    with path.open("rb") as handle:
        head = handle.read(2)
    if head == b"PK":
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            raise CheckpointError(f"{path} is a damaged or truncated zip file; download it again") from None
        if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
            raise CheckpointError(f"{path} is a zip but no PyTorch checkpoint (no data.pkl); check the file")
    elif head[:1] != b"\x80":  # pickle PROTO opcode
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (not a zip, not a pickle); check the file")


def _is_weights_only_refusal(err: Exception) -> bool:
    text = str(err)
    return "Weights only load failed" in text or "weights_only" in text or "Unsupported global" in text


def _extract_state_dict(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict in ``obj`` and where it was: under 'net' (official), another known key, or ``obj``."""
    layout = "bare state dict"
    if isinstance(obj, dict):
        for key in ("net", "state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                others = len(obj) - 1
                layout = f"state dict under '{key}'" + (f", {others} other entries ignored" if others else "")
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path} holds no state dict (expected {{'net': {{name: tensor}}}}); check the file")
    bad = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"{path}: entries that are not tensors: {', '.join(bad[:MAX_LISTED])}; not a weights file"
        )
    return {str(k): v for k, v in obj.items()}, layout


def _dtype_names(state: dict[str, torch.Tensor]) -> tuple[str, ...]:
    return tuple(sorted({str(v.dtype).removeprefix("torch.") for v in state.values()}))


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` prefix DDP adds, when every key has it."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return state


def _as_float32(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _check_finite(state: dict[str, torch.Tensor], path: Path) -> None:
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: tensor {key} contains NaN or inf; the file is damaged, download it again")


def _settings_hint(obj: Any) -> str | None:
    """The experiment file an official training checkpoint's ``settings`` name, if any (e.g. ``vitb_256_mae_ce``)."""
    settings = obj.get("settings") if isinstance(obj, dict) else None
    state = getattr(settings, "state", None)
    if isinstance(state, dict):
        for key in ("cfg_file", "config_name", "script_name"):
            value = state.get(key)
            if isinstance(value, str) and value:
                return value
    return None


# ----------------------------------------------------------------------------------------------------------------
# Our format


def save_safetensors(
    model_or_state: torch.nn.Module | dict[str, torch.Tensor],
    cfg: Config,
    path: str | Path,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write weights as safetensors with the config (YAML) and ``extra`` (JSON-encoded if not text) in metadata."""
    state = model_or_state.state_dict() if isinstance(model_or_state, torch.nn.Module) else model_or_state
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    metadata = {"format": "ostrack-live", "config": cfg.to_yaml(), "config_name": cfg.name or ""}
    for key, value in (extra or {}).items():
        metadata[key] = value if isinstance(value, str) else json.dumps(value)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


def finite_or_raise(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise CheckpointError(f"{what} is not finite")
    return value
