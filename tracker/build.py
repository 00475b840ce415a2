"""Named constructors: a config (and optionally weights) in, a ready model or tracker out."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from tracker.config import Config
from tracker.models.ostrack import OSTrack, build_model
from tracker.resolve import ResolvedModel, load_state_into, resolve_model
from tracker.single import SingleTracker, resolve_device
from tracker.threads import configure_cpu_threads
from tracker.weights import default_weights

# default_weights is re-exported: the app and the evaluator ask this module for the bundled model.
__all__ = ["build_tracker", "default_weights", "load_model", "model_from"]


def load_model(
    config: str | Path | Config | None = None,
    weights: str | Path | None = None,
    overrides: Mapping[str, str] | None = None,
) -> tuple[OSTrack, Config]:
    """Build a model; with ``weights`` load them strictly. The config comes from ``config`` if given, else from
    the weights file (embedded, or inferred from tensor shapes). With neither, the bundled model. ``overrides``
    (dotted keys, YAML values) then change that config before the model is built, e.g. a test-time setting.
    Returns the model in eval mode and its config."""
    resolved = resolve_model(config, weights, overrides)
    return model_from(resolved), resolved.config


def model_from(resolved: ResolvedModel) -> OSTrack:
    """The model ``resolved`` describes, in eval mode: its tensors loaded strictly, or random weights if none."""
    if resolved.state_dict is None:
        return build_model(resolved.config).eval()
    with torch.device("meta"):  # no memory or init time for weights the file replaces
        model = build_model(resolved.config)
    return load_state_into(model, resolved.state_dict, resolved.source, resolved.config).eval()


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
