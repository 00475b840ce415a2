"""Named constructors: a config (and optionally weights) in, a ready model or tracker out."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tracker.checkpoint import load_state_into, read_checkpoint
from tracker.config import Config, load_config
from tracker.errors import CheckpointError
from tracker.models.ostrack import OSTrack, build_model
from tracker.single import SingleTracker

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
MANIFEST = WEIGHTS_DIR / "manifest.json"


def default_weights() -> Path:
    """The bundled model: the manifest entry marked ``"default": true``, present in ``weights/``."""
    entries = json.loads(MANIFEST.read_text(encoding="utf-8")).get("files", {}) if MANIFEST.is_file() else {}
    for name, entry in entries.items():
        if entry.get("default") and (WEIGHTS_DIR / name).is_file():
            return WEIGHTS_DIR / name
    raise CheckpointError(
        "no bundled model is installed yet; pass --weights FILE (an official OSTrack checkpoint, see weights/README.md)"
    )


def load_model(config: str | Path | Config | None = None, weights: str | Path | None = None) -> tuple[OSTrack, Config]:
    """Build a model; with ``weights`` load them strictly. The config comes from ``config`` if given, else from
    the weights file (embedded, or inferred from tensor shapes). Returns the model in eval mode and its config."""
    if weights is None:
        if config is None:
            raise CheckpointError("no config and no weights given; pass a config name or a weights file")
        cfg = load_config(config)
        return build_model(cfg).eval(), cfg
    ckpt = read_checkpoint(weights)
    cfg = load_config(config) if config is not None else ckpt.config_or_inferred()
    with torch.device("meta"):
        model = build_model(cfg)
    model = load_state_into(model, ckpt.state_dict, str(weights), cfg)
    return model.eval(), cfg


def build_tracker(
    config: str | Path | Config | None = None, weights: str | Path | None = None, device: str = "auto"
) -> SingleTracker:
    """A ``SingleTracker`` for a config and/or weights file (random weights if no file is given)."""
    model, cfg = load_model(config, weights)
    return SingleTracker(model, cfg, device)
