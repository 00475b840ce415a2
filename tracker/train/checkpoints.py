"""Resumable training checkpoints (``checkpoints/last.pt``): the run's progress and every RNG's state beside the
model, optimiser and scheduler, so a resumed run continues exactly as an uninterrupted one would."""

from __future__ import annotations

import dataclasses
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tracker.errors import CheckpointError

CHECKPOINT_FORMAT = "ostrack-live-train-1"


@dataclass
class Progress:
    """Mutable run state that goes into every checkpoint."""

    step: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    elapsed_s: float = 0.0
    history: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, saved: dict) -> Progress:
        return cls(saved["step"], saved["best_metric"], saved["best_step"], saved["elapsed_s"], list(saved["history"]))


def rng_state() -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state_to_tensor(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_state_to_tensor() -> tuple:
    _, keys, pos, has_gauss, cached = np.random.get_state()
    return (torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached)


def save_training_checkpoint(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save(payload, partial)
    os.replace(partial, path)  # atomic: an interrupted save never leaves a broken last.pt


def load_training_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"no training checkpoint at {path}; check --resume")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path} is not a readable training checkpoint ({type(err).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a training checkpoint of this toolkit; give checkpoints/last.pt")
    return payload
