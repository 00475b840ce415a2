"""What the evaluator can run: any object with ``init(frame_bgr, Box)`` and
``update(frame_bgr) -> TrackResult``, named and built from a command-line spec.

Specs: ``bundled`` (the bundled model), ``config=NAME,weights=PATH`` (either key may be left out: a config alone
gives random weights, weights alone carry or imply their config), each optionally followed by ``name=LABEL``,
``device=DEV``, ``backend=B``, ``precision=P`` and config overrides as dotted keys (``TEST.SEARCH_FACTOR=3.5``,
``TEST.CE_KEEP_RATIO=[0.9,0.9]``), so test-time ablations need no edited copies of a config; and the OpenCV
baselines by name (``mil``, ``csrt``, ``kcf``, ``nano``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from tracker.build import build_tracker, default_weights
from tracker.errors import CheckpointError, InputError
from tracker.eval.baselines import BASELINES, PEERS_DIR, baseline_available, build_baseline
from tracker.target import Target
from tracker.types import Box, TrackResult
from tracker.weights import resolve_weights

SPEC_KEYS = ("config", "weights", "name", "device", "backend", "precision")
CONFIG_KEY = re.compile(r"[A-Z][A-Z0-9_]*(\.[A-Z][A-Z0-9_]*)+")  # TEST.SEARCH_FACTOR
SPEC_SEPARATOR = re.compile(r",(?![^\[]*\])")  # commas, except inside a [list] value


class Tracker(Protocol):
    """The one contract every evaluated tracker follows (``SingleTracker`` and the OpenCV wrappers do)."""

    def init(self, frame_bgr: np.ndarray, box: Box) -> None: ...

    def update(self, frame_bgr: np.ndarray) -> TrackResult: ...


@dataclass(frozen=True)
class TrackerSpec:
    """A tracker to evaluate: ``name`` labels it in tables and names its results folder; ``make``
    builds it once (``init`` then restarts it on every sequence)."""

    name: str
    make: Callable[[], Tracker]


@dataclass(frozen=True)
class SkippedTracker:
    """A requested tracker that this installation cannot run, and why."""

    name: str
    reason: str


def parse_tracker_spec(text: str, default_device: str = "auto") -> TrackerSpec:
    """A ``TrackerSpec`` from ``bundled[,key=value...]`` or ``config=...,weights=...[,key=value...]``.

    Keys: ``name``, ``device``, and ``backend`` / ``precision`` (as ``build_tracker`` takes them), so the same
    weights can be scored through each inference path in one run. The tracker runs as the app runs it, a
    ``tracker.target.Target``: lost and found again by its config's ``TRACK`` settings (re-detection included).
    """
    parts = [p.strip() for p in SPEC_SEPARATOR.split(text) if p.strip()]
    bundled = bool(parts) and parts[0] == "bundled"
    fields, overrides = _key_values(parts[1:] if bundled else parts)
    config, weights = fields.get("config"), fields.get("weights")
    if bundled:
        if config or weights:
            raise InputError(f"tracker '{text}': 'bundled' already names the model; drop config= and weights=")
        weights = str(_bundled_weights())  # resolved now, so a missing bundle fails before any tracker runs
    elif not config and not weights:
        raise InputError(f"tracker '{text}' names no model; use bundled or config=NAME,weights=PATH")
    if weights is not None:
        weights = str(_named_weights(weights))
    device = fields.get("device", default_device)
    backend, precision = fields.get("backend", "auto"), fields.get("precision", "auto")
    name = fields.get("name") or _default_name(bundled, config, weights, backend, precision)
    return TrackerSpec(
        name,
        lambda: Target(
            build_tracker(config, weights, device, backend=backend, precision=precision, overrides=overrides)
        ),
    )


def _named_weights(weights: str) -> Path:
    """A path, or a file name in ``weights/`` (``bundled_small.safetensors``), as the app's ``--weights`` takes it."""
    try:
        return resolve_weights(weights)
    except CheckpointError as error:
        raise InputError(f"{error} (in --tracker)") from None


def _bundled_weights() -> Path:
    try:
        return default_weights()
    except CheckpointError:
        message = "no bundled model is installed yet; evaluate a checkpoint with --tracker weights=PATH"
        raise InputError(message) from None


def _default_name(bundled: bool, config: str | None, weights: str | None, backend: str, precision: str) -> str:
    base = "bundled" if bundled else Path(weights or config or "").name.split(".")[0]
    extras = [v for v in (backend, precision) if v != "auto"]
    return "-".join([base, *extras])


def _key_values(parts: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """The spec's own keys, and the config overrides (dotted upper-case keys)."""
    fields, overrides = {}, {}
    for part in parts:
        key, sep, value = part.partition("=")
        key = key.strip()
        if sep and CONFIG_KEY.fullmatch(key):
            overrides[key] = value.strip()
        elif sep and key in SPEC_KEYS:
            fields[key] = value.strip()
        else:
            keys = ", ".join(k + "=" for k in SPEC_KEYS)
            raise InputError(f"tracker spec part '{part}' is not one of {keys} or a config key (TEST.SEARCH_FACTOR=)")
    return fields, overrides


def baseline_specs(
    names: list[str], peers_dir: Path = PEERS_DIR
) -> tuple[list[TrackerSpec], list[SkippedTracker]]:
    """Specs for the named OpenCV baselines this cv2 has, and the rest as skipped (with the reason)."""
    specs, skipped = [], []
    for name in names:
        if name not in BASELINES:
            raise InputError(f"unknown baseline '{name}'; use any of {', '.join(BASELINES)}")
        info = BASELINES[name]
        if baseline_available(name):
            specs.append(TrackerSpec(info.label, lambda n=name: build_baseline(n, peers_dir)))
        else:
            skipped.append(SkippedTracker(info.label, info.missing_hint))
    return specs, skipped


def unique_names(specs: list[TrackerSpec]) -> list[TrackerSpec]:
    """The same specs, renamed ``name-2``, ``name-3`` where names repeat (each needs its own results
    folder)."""
    seen: dict[str, int] = {}
    out = []
    for spec in specs:
        seen[spec.name] = seen.get(spec.name, 0) + 1
        name = spec.name if seen[spec.name] == 1 else f"{spec.name}-{seen[spec.name]}"
        out.append(TrackerSpec(name, spec.make))
    return out
