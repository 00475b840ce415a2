"""Presence: the score-map peak and the box's colours as one calibrated probability, and the calibration's fit."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from tracker.config import PresenceConfig
from tracker.presence import ColourReference, TargetPresence, presence
from tracker.types import Box

ROOT = Path(__file__).resolve().parent.parent


def _calibration():
    spec = importlib.util.spec_from_file_location("calibrate_presence", ROOT / "benchmarks" / "calibrate_presence.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _two_colours():
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, :100] = (0, 0, 255)  # red (BGR)
    image[:, 100:] = (255, 0, 0)  # blue
    return image


def test_colour_similarity_is_one_for_the_same_colours_and_low_for_others():
    image = _two_colours()
    reference = ColourReference(image, Box(10, 10, 40, 40))
    assert reference.similarity(image, Box(50, 50, 30, 30)) == pytest.approx(1.0, abs=1e-6)
    assert reference.similarity(image, Box(120, 20, 40, 40)) < 0.05
    assert 0.3 < reference.similarity(image, Box(70, 20, 60, 40)) < 0.9  # half and half


def test_colour_similarity_of_a_box_off_the_frame_is_zero():
    image = _two_colours()
    reference = ColourReference(image, Box(10, 10, 40, 40))
    assert reference.similarity(image, Box(500, 500, 20, 20)) == 0.0
    assert reference.similarity(image, Box(math.nan, 0, 20, 20)) == 0.0


def test_presence_rises_with_the_peak_and_the_colour_and_stays_a_probability():
    cfg = PresenceConfig()
    assert presence(0.8, 0.9, cfg) > presence(0.5, 0.9, cfg) > presence(0.5, 0.3, cfg)
    assert 0.0 <= presence(-1e9, 0.0, cfg) < 1e-6 and 1 - 1e-6 < presence(1e9, 1.0, cfg) <= 1.0


def test_the_fit_separates_what_is_separable_and_the_roc_auc_counts_ties_half():
    calib = _calibration()
    rng = np.random.default_rng(0)
    visible = np.stack([rng.uniform(0.5, 0.9, 200), rng.uniform(0.6, 1.0, 200)], 1)
    absent = np.stack([rng.uniform(0.2, 0.6, 200), rng.uniform(0.0, 0.5, 200)], 1)
    fit = calib.fit_logistic(np.concatenate([visible, absent]), np.r_[np.ones(200), np.zeros(200)])
    assert fit.score_weight > 0 and fit.colour_weight > 0
    probs_visible = [presence(p, c, fit) for p, c in visible]
    probs_absent = [presence(p, c, fit) for p, c in absent]
    assert calib.roc_auc(np.array(probs_visible), np.array(probs_absent)) > 0.95
    assert calib.roc_auc(np.array([1.0, 2.0]), np.array([0.0])) == 1.0
    assert calib.roc_auc(np.array([1.0]), np.array([1.0])) == 0.5


def test_weak_runs_mark_frames_that_end_a_long_enough_run():
    calib = _calibration()
    flags = calib.weak_runs(np.array([0.9, 0.1, 0.1, 0.9, 0.1, 0.1, 0.1]), 0.5, 2)
    assert flags.tolist() == [False, False, True, False, False, True, True]


def test_the_running_colours_follow_a_target_whose_colours_drift_and_init_is_kept():
    image = _two_colours()
    red, blue = Box(10, 10, 40, 40), Box(120, 20, 40, 40)
    fixed = ColourReference(image, red, rate=0.0)
    drifting = ColourReference(image, red, rate=0.2)
    for _ in range(10):
        fixed.update(image, blue)
        drifting.update(image, blue)
    assert fixed.similarity(image, blue) < 0.05  # rate 0: the colours at init only
    assert drifting.similarity(image, blue) > 0.7
    assert drifting.similarity(image, red) == pytest.approx(1.0, abs=1e-6)  # the init colours still count


def test_learning_after_a_comparison_measures_the_box_it_learns_from():
    """``update`` may reuse the histogram ``similarity`` just measured, but only for that frame and box."""
    image = _two_colours()
    red, blue = Box(10, 10, 40, 40), Box(120, 20, 40, 40)
    reused, fresh = ColourReference(image, red, rate=0.5), ColourReference(image, red, rate=0.5)
    reused.similarity(image, red)
    reused.update(image, blue)  # another box than the one compared: its own colours, not red's
    fresh.update(image, blue)
    assert np.array_equal(reused.recent, fresh.recent)
    repainted = image.copy()
    reused.similarity(image, blue)
    reused.update(repainted, blue)  # another frame: measured again
    fresh.update(repainted, blue)
    assert np.array_equal(reused.recent, fresh.recent)


def test_a_one_pixel_box_still_has_colours():
    image = _two_colours()
    reference = ColourReference(image, Box(20, 20, 1, 1))
    assert reference.similarity(image, Box(30, 30, 1, 1)) == pytest.approx(1.0, abs=1e-6)
    assert reference.similarity(image, Box(150, 30, 1, 1)) < 0.05


def test_the_trade_off_counts_absent_and_visible_frames_in_lost_runs_per_threshold():
    calib = _calibration()
    presence_of = {"clip": np.array([0.9, 0.35, 0.35, 0.9, 0.05, 0.05, 0.05, 0.05])}
    visible = {"clip": np.array([True, True, True, True, False, False, False, False])}
    absent = {"clip": ~visible["clip"]}
    rows = {(r["lost_score"], r["lost_frames"]): r for r in calib.trade_off(presence_of, visible, absent)}
    assert rows[0.4, 2]["visible_in_lost_runs"] == 0.25  # the dip to 0.35 lasts two frames: its second is LOST
    assert rows[0.3, 2]["visible_in_lost_runs"] == 0.0
    assert rows[0.4, 2]["absent_in_lost_runs"] == 0.75  # the first absent frame only starts the run
    assert rows[0.4, 5]["absent_in_lost_runs"] == 0.0


def test_a_targets_presence_learns_colours_from_confident_steps_only():
    image = _two_colours()
    red, blue = Box(10, 10, 40, 40), Box(120, 20, 40, 40)
    cfg = PresenceConfig(score_weight=10.0, colour_weight=10.0, bias=-12.0, colour_update=0.5)
    judge = TargetPresence(image, red, cfg)
    on_blue = judge.at(image, blue, 0.9)
    assert on_blue == pytest.approx(presence(0.9, judge.colour.similarity(image, blue), cfg))
    for _ in range(5):
        judge.at(image, blue, 0.9)  # places looked at while searching teach nothing
        judge.step(image, blue, 0.1, confident=0.6)  # nor do weak steps
    assert judge.at(image, blue, 0.9) == pytest.approx(on_blue)
    for _ in range(5):
        judge.step(image, blue, 0.9, confident=0.01)  # confident steps move the colours towards the box's
    assert judge.at(image, blue, 0.9) > on_blue + 0.1
