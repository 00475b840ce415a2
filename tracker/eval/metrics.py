"""One-pass evaluation scores (OTB / LaSOT conventions) from predicted and ground-truth boxes.

All boxes are (N, 4) arrays of x, y, w, h in frame pixels. Conventions, matching the peer table in
``../shared/data/README.md``:

- Scored frames: every frame after the init frame (frame 0) whose ground truth is visible (finite, positive
  width and height, not flagged absent). Other frames are skipped: neither counted nor penalised.
- Success: fraction of scored frames with IoU strictly above each of 21 thresholds 0, 0.05, ..., 1 (so IoU 0
  never succeeds and a perfect tracker reaches 20/21); AUC is the mean of those 21 rates.
- Precision: fraction with centre distance <= each threshold 0..50 px; P@20 is the value at 20 px.
- Normalised precision (LaSOT): centre offset divided by the GT width and height per axis, then its length;
  fraction <= each of 51 thresholds 0..0.5; NP is the mean of those 51 rates.
- A prediction that is not a finite box with positive size counts as a miss (IoU 0, infinite distance).
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass

import numpy as np

from tracker.eval.sequence import visible_mask

IOU_THRESHOLDS = np.linspace(0.0, 1.0, 21)
PIXEL_THRESHOLDS = np.arange(0, 51, dtype=np.float64)
PRECISION_AT = 20.0
NORM_THRESHOLDS = np.linspace(0.0, 0.5, 51)


@dataclass(frozen=True, eq=False)
class Score:
    """Accuracy of one tracker on one sequence (or the mean over sequences).

    ``success``, ``precision`` and ``norm_curve`` are the curves over ``IOU_THRESHOLDS``,
    ``PIXEL_THRESHOLDS`` and ``NORM_THRESHOLDS``; ``frames`` is how many frames were scored (summed for a
    mean).
    """

    auc: float
    precision20: float
    norm_precision: float
    success: np.ndarray
    precision: np.ndarray
    norm_curve: np.ndarray
    frames: int


def iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(N,) intersection over union of matching rows of two (N, 4) x,y,w,h arrays; 0 where a box is
    invalid."""
    pred, gt = _as_boxes(pred), _as_boxes(gt)
    left = np.maximum(pred[:, 0], gt[:, 0])
    top = np.maximum(pred[:, 1], gt[:, 1])
    right = np.minimum(pred[:, 0] + pred[:, 2], gt[:, 0] + gt[:, 2])
    bottom = np.minimum(pred[:, 1] + pred[:, 3], gt[:, 1] + gt[:, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    union = pred[:, 2] * pred[:, 3] + gt[:, 2] * gt[:, 3] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = inter / union
    return np.where(_valid(pred) & _valid(gt) & (union > 0), out, 0.0)


def centre_distance(pred: np.ndarray, gt: np.ndarray, normalised: bool = False) -> np.ndarray:
    """(N,) distance between box centres in pixels, or in GT-size units per axis when ``normalised``;
    infinite where the prediction is invalid."""
    pred, gt = _as_boxes(pred), _as_boxes(gt)
    offset = (pred[:, :2] + 0.5 * pred[:, 2:]) - (gt[:, :2] + 0.5 * gt[:, 2:])
    if normalised:
        with np.errstate(invalid="ignore", divide="ignore"):
            offset = offset / gt[:, 2:]
    distance = np.hypot(offset[:, 0], offset[:, 1])
    return np.where(_valid(pred) & np.isfinite(distance), distance, np.inf)


def scored_mask(gt: np.ndarray, absent: np.ndarray | None = None) -> np.ndarray:
    """(N,) bool: frames that count: visible ground truth, init frame excluded."""
    mask = visible_mask(gt, absent)
    mask[:1] = False
    return mask


def score_sequence(pred: np.ndarray, gt: np.ndarray, absent: np.ndarray | None = None) -> Score:
    """Scores of predictions ``pred`` (N, 4) against ground truth ``gt`` (N, 4); frame 0 is the init frame.

    ``pred`` may be shorter than ``gt`` (a run cut with --max-frames): only the frames it covers are scored.
    With no frame to score the result is NaN throughout and ``frames`` is 0.
    """
    pred = _as_boxes(pred)
    gt = _as_boxes(gt)[: len(pred)]
    mask = scored_mask(gt, None if absent is None else np.asarray(absent)[: len(pred)])
    if not mask.any():
        return _empty_score()
    pred, gt = pred[mask], gt[mask]
    success = (iou(pred, gt)[:, None] > IOU_THRESHOLDS[None, :]).mean(axis=0)
    precision = (centre_distance(pred, gt)[:, None] <= PIXEL_THRESHOLDS[None, :]).mean(axis=0)
    norm_curve = (centre_distance(pred, gt, normalised=True)[:, None] <= NORM_THRESHOLDS[None, :]).mean(axis=0)
    return _from_curves(success, precision, norm_curve, int(mask.sum()))


def _empty_score() -> Score:
    """The score of nothing scored: NaN figures and curves, zero frames."""
    nan = float("nan")
    return Score(nan, nan, nan, _nan_like(IOU_THRESHOLDS), _nan_like(PIXEL_THRESHOLDS), _nan_like(NORM_THRESHOLDS), 0)


def mean_score(scores: Seq[Score]) -> Score:
    """The mean over sequences (each sequence weighs the same, as in OTB and LaSOT); sequences with no scored
    frame are left out."""
    kept = [s for s in scores if s.frames > 0]
    if not kept:
        return _empty_score()
    return _from_curves(
        np.mean([s.success for s in kept], axis=0),
        np.mean([s.precision for s in kept], axis=0),
        np.mean([s.norm_curve for s in kept], axis=0),
        sum(s.frames for s in kept),
    )


def _from_curves(success: np.ndarray, precision: np.ndarray, norm_curve: np.ndarray, frames: int) -> Score:
    at20 = int(np.flatnonzero(PIXEL_THRESHOLDS == PRECISION_AT)[0])
    return Score(
        auc=float(success.mean()),
        precision20=float(precision[at20]),
        norm_precision=float(norm_curve.mean()),
        success=success,
        precision=precision,
        norm_curve=norm_curve,
        frames=frames,
    )


def _as_boxes(boxes: np.ndarray) -> np.ndarray:
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def _valid(boxes: np.ndarray) -> np.ndarray:
    return np.isfinite(boxes).all(axis=1) & (np.nan_to_num(boxes[:, 2]) > 0) & (np.nan_to_num(boxes[:, 3]) > 0)


def _nan_like(values: np.ndarray) -> np.ndarray:
    return np.full(len(values), np.nan)


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Probability that a positive scores above a negative (ties count half): the ROC AUC."""
    positive, negative = np.asarray(positive, float), np.asarray(negative, float)
    if not len(positive) or not len(negative):
        return float("nan")
    values = np.concatenate([positive, negative])
    order = values.argsort(kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    # Average ranks over ties.
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = 0.5 * (start + end - 1) + 1
            start = end
    rank_sum = ranks[: len(positive)].sum()
    return float((rank_sum - len(positive) * (len(positive) + 1) / 2) / (len(positive) * len(negative)))
