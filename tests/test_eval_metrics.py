"""One-pass scores on hand-computed cases: IoU, centre errors, skipped frames, sequence means."""

import math

import numpy as np
import pytest

from tracker.eval.metrics import (
    IOU_THRESHOLDS,
    NORM_THRESHOLDS,
    PIXEL_THRESHOLDS,
    centre_distance,
    iou,
    mean_score,
    score_sequence,
)


def _repeat(box, n):
    return np.tile(np.asarray(box, dtype=np.float64), (n, 1))


def test_iou_of_known_overlaps():
    gt = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 20, 10], [0, 0, 10, 10], [0, 0, 10, 10]], float)
    pred = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [0, 0, 10, 10], [10, 0, 10, 10], [5, 5, 10, 10]], float)
    # identical; half shifted (50 / 150); half the GT (100 / 200); touching edges; quarter (25 / 175)
    np.testing.assert_allclose(iou(pred, gt), [1.0, 1 / 3, 0.5, 0.0, 25 / 175])


def test_iou_is_zero_for_invalid_predictions():
    gt = _repeat([0, 0, 10, 10], 3)
    pred = np.array([[np.nan, 0, 10, 10], [0, 0, 0, 10], [0, 0, -5, 10]])
    np.testing.assert_array_equal(iou(pred, gt), [0.0, 0.0, 0.0])


def test_centre_distance_in_pixels_and_normalised_by_gt_size():
    gt = np.array([[0, 0, 10, 20]], float)
    pred = np.array([[3, 4, 10, 20]], float)  # centre offset (3, 4)
    assert centre_distance(pred, gt)[0] == pytest.approx(5.0)
    assert centre_distance(pred, gt, normalised=True)[0] == pytest.approx(math.hypot(3 / 10, 4 / 20))
    assert centre_distance(np.array([[np.nan] * 4]), gt)[0] == np.inf


def test_identical_boxes_succeed_everywhere_but_the_strict_iou_one_threshold():
    gt = _repeat([10, 10, 30, 20], 6)
    score = score_sequence(gt.copy(), gt)
    # IoU must be strictly above the threshold (OTB/LaSOT convention): 1.0 > 1.0 fails: 20 of 21 thresholds.
    np.testing.assert_array_equal(score.success, [1.0] * 20 + [0.0])
    assert score.auc == pytest.approx(20 / 21)
    assert score.precision20 == 1.0
    assert score.norm_precision == 1.0
    assert score.frames == 5  # the init frame is not scored


def test_disjoint_boxes_score_zero():
    gt = _repeat([0, 0, 10, 10], 4)
    pred = _repeat([100, 100, 10, 10], 4)
    score = score_sequence(pred, gt)
    assert score.auc == 0.0
    assert score.precision20 == 0.0
    assert score.norm_precision == 0.0


def test_half_shifted_box_counts_at_thresholds_below_its_iou():
    gt = _repeat([0, 0, 10, 10], 3)
    pred = _repeat([5, 0, 10, 10], 3)  # IoU 1/3, centre error 5 px, normalised 0.5
    score = score_sequence(pred, gt)
    assert score.auc == pytest.approx(7 / 21)  # thresholds 0 .. 0.30 are below 1/3
    assert score.precision20 == 1.0
    np.testing.assert_array_equal(score.precision, (PIXEL_THRESHOLDS >= 5).astype(float))
    assert score.norm_precision == pytest.approx(1 / 51)  # only the 0.5 threshold reaches 0.5


def test_iou_equal_to_a_threshold_does_not_pass_it():
    gt = _repeat([0, 0, 20, 10], 2)
    pred = _repeat([0, 0, 10, 10], 2)  # IoU exactly 0.5
    score = score_sequence(pred, gt)
    assert score.auc == pytest.approx(10 / 21)
    assert score.success[IOU_THRESHOLDS == 0.5][0] == 0.0


def test_mixed_frames_average_per_frame():
    gt = _repeat([0, 0, 10, 10], 5)
    pred = np.array([[50, 50, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [5, 0, 10, 10], [40, 40, 10, 10]])
    # frame 0 (init) ignored; frames 1-2 IoU 1, frame 3 IoU 1/3, frame 4 IoU 0
    score = score_sequence(pred, gt)
    assert score.auc == pytest.approx((2 * 20 / 21 + 7 / 21) / 4)
    assert score.precision20 == pytest.approx(3 / 4)


def test_invisible_frames_are_skipped_not_penalised():
    gt = _repeat([0, 0, 10, 10], 6)
    gt[2] = np.nan  # no box
    gt[3, 2] = 0  # zero width
    absent = np.array([0, 0, 0, 0, 1, 0], bool)  # flagged absent
    pred = gt.copy()
    pred[2:5] = [90, 90, 5, 5]  # wrong on every invisible frame
    score = score_sequence(pred, gt, absent)
    assert score.frames == 2  # frames 1 and 5
    assert score.auc == pytest.approx(20 / 21)


def test_shorter_prediction_scores_only_frames_it_covers():
    gt = _repeat([0, 0, 10, 10], 10)
    pred = _repeat([0, 0, 10, 10], 4)
    assert score_sequence(pred, gt).frames == 3


def test_no_visible_frame_gives_nan_and_is_left_out_of_the_mean():
    gt = _repeat([0, 0, 10, 10], 3)
    gt[1:] = np.nan
    empty = score_sequence(gt.copy(), gt)
    assert empty.frames == 0 and math.isnan(empty.auc)
    perfect = score_sequence(_repeat([0, 0, 10, 10], 3), _repeat([0, 0, 10, 10], 3))
    assert mean_score([empty, perfect]).auc == pytest.approx(perfect.auc)


def test_mean_weighs_sequences_not_frames():
    short = score_sequence(_repeat([0, 0, 10, 10], 3), _repeat([0, 0, 10, 10], 3))  # 2 frames, AUC 20/21
    long = score_sequence(_repeat([50, 50, 10, 10], 11), _repeat([0, 0, 10, 10], 11))  # 10 frames, AUC 0
    mean = mean_score([short, long])
    assert mean.auc == pytest.approx(10 / 21)
    assert mean.precision20 == pytest.approx(0.5)
    assert mean.frames == 12
    assert mean.success.shape == IOU_THRESHOLDS.shape and mean.norm_curve.shape == NORM_THRESHOLDS.shape
