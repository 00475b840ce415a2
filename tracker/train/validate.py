"""Validation hooks: ``(cfg, model) -> float``, higher is better. The trainer keeps the checkpoint that scores best.

``SequenceValidator`` tracks held-out training sequences with the real ``SingleTracker`` (test-time crops,
Hann window, box mapping) and returns the mean success AUC as the evaluation toolkit scores it. Any other
callable of the same shape can be plugged in with ``--val-fn module:function`` on the command line.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch

from tracker.config import Config
from tracker.errors import InputError
from tracker.eval.metrics import score_sequence
from tracker.models.ostrack import OSTrack
from tracker.single import SingleTracker
from tracker.train.datasets import TrackSequence
from tracker.types import Box

Validator = Callable[[Config, OSTrack], float]


def track_boxes(tracker: SingleTracker, sequence: TrackSequence, max_frames: int | None = None) -> np.ndarray:
    """(N, 4) boxes (x, y, w, h, frame pixels) the tracker gives, initialised with the ground truth on frame 0
    (row 0 is that init box, as the evaluation toolkit's result files have it)."""
    count = len(sequence) if max_frames is None else min(len(sequence), max_frames)
    first = cv2.cvtColor(sequence.frames.read(0), cv2.COLOR_RGB2BGR)
    tracker.init(first, Box.from_xywh(sequence.boxes[0]))
    boxes = [sequence.boxes[0]]
    for index in range(1, count):
        frame = cv2.cvtColor(sequence.frames.read(index), cv2.COLOR_RGB2BGR)
        boxes.append(tracker.update(frame).box.as_list())
    return np.asarray(boxes, dtype=np.float64)


def sequence_auc(tracker: SingleTracker, sequence: TrackSequence, max_frames: int | None = None) -> float:
    """Success AUC on one sequence, scored by the evaluation toolkit (init frame and absent frames not scored)."""
    pred = track_boxes(tracker, sequence, max_frames)
    score = score_sequence(pred, sequence.boxes, absent=~sequence.visible)
    return 0.0 if math.isnan(score.auc) else float(score.auc)


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
                scores = [sequence_auc(tracker, s, self.max_frames) for s in self.sequences]
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
