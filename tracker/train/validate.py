"""Validation hooks: ``(cfg, model) -> float``, higher is better. The trainer keeps the checkpoint that scores best.

``SequenceValidator`` tracks held-out training sequences with the real ``SingleTracker`` (test-time crops,
Hann window, box mapping) and returns the mean success AUC. Any other callable of the same shape can be plugged
in, for example one from the evaluation toolkit, with ``--val-fn module:function`` on the command line.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch

from tracker.config import Config
from tracker.errors import InputError
from tracker.models.ostrack import OSTrack
from tracker.single import SingleTracker
from tracker.train.datasets import TrackSequence
from tracker.types import Box

Validator = Callable[[Config, OSTrack], float]
SUCCESS_THRESHOLDS = np.linspace(0.0, 1.0, 21)  # the OTB success curve's IoU thresholds


def success_auc(ious: np.ndarray) -> float:
    """Area under the success curve: mean over 21 IoU thresholds of the share of frames above each."""
    if len(ious) == 0:
        return 0.0
    return float(np.mean([(ious > t).mean() for t in SUCCESS_THRESHOLDS]))


def track_ious(tracker: SingleTracker, sequence: TrackSequence, max_frames: int | None = None) -> np.ndarray:
    """IoU of the tracker's box with the ground truth on every frame after the first (init on frame 0)."""
    count = len(sequence) if max_frames is None else min(len(sequence), max_frames)
    first = cv2.cvtColor(sequence.frames.read(0), cv2.COLOR_RGB2BGR)
    tracker.init(first, Box.from_xywh(sequence.boxes[0]))
    ious = []
    for index in range(1, count):
        frame = cv2.cvtColor(sequence.frames.read(index), cv2.COLOR_RGB2BGR)
        box = tracker.update(frame).box
        if sequence.visible[index]:
            ious.append(box.iou(Box.from_xywh(sequence.boxes[index])))
    return np.asarray(ious, dtype=np.float64)


class SequenceValidator:
    """Mean success AUC of the model tracking ``sequences`` (held out from training), on the model's device."""

    def __init__(self, sequences: Sequence[TrackSequence], max_frames: int | None = None) -> None:
        if not sequences:
            raise InputError("no validation sequences given; name held-out sequences with --val-seq")
        self.sequences = list(sequences)
        self.max_frames = max_frames

    def __call__(self, cfg: Config, model: OSTrack) -> float:
        device = next(model.parameters()).device
        was_training = model.training
        tracker = SingleTracker(model, cfg, device)
        try:
            with torch.no_grad():
                scores = [success_auc(track_ious(tracker, s, self.max_frames)) for s in self.sequences]
        finally:
            model.train(was_training)
        return float(np.mean(scores))


def load_validator(spec: str) -> Validator:
    """A validator named ``module:function`` (the function takes ``(cfg, model)`` and returns a float)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise InputError(f"--val-fn '{spec}' must look like package.module:function")
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        raise InputError(f"--val-fn '{spec}' cannot be imported; check the module and function name") from None
    if not callable(function):
        raise InputError(f"--val-fn '{spec}' is not callable; give a function (cfg, model) -> float")
    return function
