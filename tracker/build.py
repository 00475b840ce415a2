"""Named constructors: a config (and optionally weights) in, a ready model or tracker out."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from tracker.accel import configure_cpu_threads
from tracker.checkpoint import load_state_into, read_checkpoint
from tracker.config import Config, load_config, with_overrides
from tracker.models.ostrack import OSTrack, build_model
from tracker.single import SingleTracker, resolve_device

OVERRIDES_SOURCE = "config overrides"  # how errors in build_tracker(overrides=...) name their origin


def default_weights() -> Path:
    """The bundled model: the manifest entry marked ``"default": true`` in ``weights/``, sha256 checked."""
    # Imported here, not at the top: `python -m tracker.weights` must not find itself already imported.
    from tracker import weights as weights_folder

    return weights_folder.default_weights()


def load_model(
    config: str | Path | Config | None = None,
    weights: str | Path | None = None,
    overrides: Mapping[str, str] | None = None,
) -> tuple[OSTrack, Config]:
    """Build a model; with ``weights`` load them strictly. The config comes from ``config`` if given, else from
    the weights file (embedded, or inferred from tensor shapes). With neither, the bundled model. ``overrides``
    (dotted keys, YAML values) then change that config before the model is built, e.g. a test-time setting.
    Returns the model in eval mode and its config."""
    if weights is None and config is None:
        weights = default_weights()
    if weights is None:
        cfg = with_overrides(load_config(config), overrides, source=OVERRIDES_SOURCE)
        return build_model(cfg).eval(), cfg
    from tracker.weights import resolve_weights, verify_against_manifest  # see default_weights

    path = resolve_weights(weights)  # a path, or a file name in weights/
    verify_against_manifest(path)  # bundled files must match their manifest sha256
    ckpt = read_checkpoint(path)
    cfg = load_config(config) if config is not None else ckpt.config_or_inferred()
    cfg = with_overrides(cfg, overrides, source=OVERRIDES_SOURCE)
    with torch.device("meta"):
        model = build_model(cfg)
    model = load_state_into(model, ckpt.state_dict, str(path), cfg)
    return model.eval(), cfg


def build_tracker(
    config: str | Path | Config | None = None,
    weights: str | Path | None = None,
    device: str = "auto",
    backend: str = "auto",
    precision: str = "auto",
    gpu_crop: bool | None = None,
    fused_attention: bool = False,
    overrides: Mapping[str, str] | None = None,
) -> SingleTracker:
    """A ``SingleTracker`` for a config and/or weights file (a config alone: random weights; neither: the bundled
    model).

    ``backend``: ``auto`` (the fastest that keeps the tracks: ``cudagraph`` fp16 on a GPU, ``onnx`` fp32 on the
    CPU, ``eager`` where ONNX Runtime is missing or fails),
    ``eager``, ``compile``, ``cudagraph``, ``tensorrt``, ``onnx`` or ``int8``; ``precision``: ``auto``, ``fp32``,
    ``fp16`` or ``bf16`` (see tracker.accel). Impossible choices raise a one-line ``TrackerError``. ``gpu_crop``:
    crop and normalise with torch on the device (default: on a GPU only; same bytes as the OpenCV crop).
    ``fused_attention``: the fused SDPA kernel in blocks that do not rank tokens (near-exact). On the CPU the
    torch thread count is set to the physical cores (``$OSTRACK_LIVE_THREADS`` overrides it). ``overrides``: as
    ``load_model`` takes them.
    """
    model, cfg = load_model(config, weights, overrides)
    if resolve_device(device).type == "cpu":
        configure_cpu_threads()  # physical cores, or $OSTRACK_LIVE_THREADS
    return SingleTracker(
        model, cfg, device, backend=backend, precision=precision, gpu_crop=gpu_crop, fused_attention=fused_attention
    )
