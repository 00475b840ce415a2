"""The leave-and-return benchmark: composite layout, its figures on hand-made arrays, and one run end to end."""

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.eval_fixtures import scene, write_boxes, write_images
from tracker.errors import InputError
from tracker.eval.datasets import load_dataset
from tracker.eval.trackers import TrackerSpec
from tracker.types import Box, SessionResult, TrackResult, TrackState

NAN4 = [np.nan] * 4


def _script():
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "leave_return.py"
    spec = importlib.util.spec_from_file_location("leave_return", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script loads
    spec.loader.exec_module(module)
    return module


lr = _script()


# --- the plan -----------------------------------------------------------------------------------------------


def test_plan_sorts_by_name_takes_the_next_clip_as_donor_and_wraps():
    plans = lr.composite_plan([120, 600, 81], ["Crossing", "Basketball", "DTB70"])
    assert [(p.sequence, p.donor) for p in plans] == [
        ("Basketball", "Crossing"), ("Crossing", "DTB70"), ("DTB70", "Basketball")
    ]
    basketball, crossing, dtb = plans
    assert (basketball.t1, basketball.gap, basketball.return_index) == (200, 120, 320)  # L capped by Crossing
    assert (crossing.t1, crossing.gap) == (40, 30)
    assert (dtb.t1, dtb.gap, dtb.skip) == (27, 20, None)
    assert lr.composite_plan([2000, 2000], ["a", "b"])[0].gap == 150


def test_plan_skips_short_gaps_and_short_tails_with_the_reason():
    short_gap, short_tail, just, early = lr.composite_plan([39, 45, 48, 40], ["a", "b", "c", "d"])
    assert short_gap.gap == 9 and "gap of 9" in short_gap.skip
    assert (short_tail.t1, short_tail.gap) == (15, 11) and "19 frames after the gap" in short_tail.skip
    assert (just.t1, just.gap, just.skip) == (16, 12, None)
    assert (early.t1, early.gap) == (13, 10) and "17 frames after the gap" in early.skip
    assert lr.composite_plan([20, 600], ["a", "b"])[0].t1 == 10  # at least 10 frames tracked before the gap
    assert lr.composite_plan([600, 600], ["a", "b"], leave_at=0.5)[0].t1 == 300  # --leave-at moves the gap
    assert lr.composite_plan([600, 600], ["a", "b"], leave_at=0.01)[0].t1 == 10
    assert "gap of 9" in lr.composite_plan([600, 9], ["a", "b"])[0].skip  # the donor is too short


def test_plan_passes_over_parts_of_the_same_video():
    names = ["truck4_1", "truck4_2", "wakeboard3", "Jogging-1", "Jogging-2", "GOT-10k_Val_000001",
             "GOT-10k_Val_000002"]
    donors = {p.sequence: p.donor for p in lr.composite_plan([300] * len(names), names)}
    assert donors["truck4_1"] == "wakeboard3" and donors["truck4_2"] == "wakeboard3"
    assert donors["Jogging-1"] == "truck4_1" and donors["Jogging-2"] == "truck4_1"
    assert donors["GOT-10k_Val_000001"] == "GOT-10k_Val_000002"  # ids, not parts
    assert donors["wakeboard3"] == "GOT-10k_Val_000001"  # wraps (upper case sorts first)
    alone = lr.composite_plan([300, 300], ["car_1", "car_2"])
    assert all(p.donor is None and "no donor" in p.skip for p in alone)


# --- the figures --------------------------------------------------------------------------------------------


def _arrays(count=10, t1=3, gap=3):
    gt = np.array([[10.0 + i, 10.0, 20.0, 20.0] for i in range(count)])
    replaced = np.zeros(count, bool)
    replaced[t1 : t1 + gap] = True
    gt[replaced] = np.nan
    return gt, replaced.copy(), replaced, t1 + gap


def test_a_tracker_lost_on_every_donor_frame_scores_one_and_one_that_keeps_a_box_zero():
    gt, absent, replaced, back = _arrays()
    exact = np.where(replaced[:, None], np.nan, gt)
    score = lr.leave_return_scores(exact, replaced, gt, absent, replaced, back)
    assert score.lost_on_absent == 1.0 and score.lost_while_visible == 0.0
    assert score.success_after_return == 1.0 and score.frames_to_found == 0
    assert score.auc_after_return == pytest.approx(20 / 21)  # IoU 1 is not above the threshold 1
    assert (score.replaced_frames, score.post_return_frames) == (3, 4)
    kept = np.where(replaced[:, None], gt[2], gt)
    score = lr.leave_return_scores(kept, np.zeros(10, bool), gt, absent, replaced, back)
    assert score.lost_on_absent == 0.0 and score.success_after_return == 1.0


def test_frames_until_found_again_count_from_the_return_and_never_is_none():
    gt, absent, replaced, back = _arrays()
    late = np.where(replaced[:, None], np.nan, gt)
    late[6:8] = [200, 200, 20, 20]  # two misses, then found on frame 8
    score = lr.leave_return_scores(late, replaced, gt, absent, replaced, back)
    assert score.frames_to_found == 2 and score.success_after_return == 0.5
    late[6:] = NAN4  # lost from the gap to the end
    score = lr.leave_return_scores(late, np.isnan(late[:, 0]), gt, absent, replaced, back)
    assert score.frames_to_found is None and score.success_after_return == 0.0
    assert score.auc_after_return == 0.0 and score.lost_while_visible == pytest.approx(4 / 6)


def test_own_absent_frames_are_not_donor_frames_and_a_lost_flag_overrides_the_box():
    gt, _, replaced, back = _arrays()
    absent = replaced.copy()
    absent[6] = True  # the dataset's own flag: not scored, not counted as replaced
    boxes = gt.copy()
    boxes[replaced] = NAN4
    lost = np.isnan(boxes[:, 0])
    lost[7] = True  # said lost with a (wrong-headed) finite box: no box
    score = lr.leave_return_scores(boxes, lost, gt, absent, replaced, back)
    assert score.replaced_frames == 3 and score.post_return_frames == 3
    assert score.frames_to_found == 2 and score.success_after_return == pytest.approx(2 / 3)


def test_summary_means_over_clips_and_counts_never_found():
    found = lr.LeaveReturnScore(1.0, 0.0, 0.8, 0.6, 4, 10, 20)
    never = lr.LeaveReturnScore(0.0, 0.5, 0.0, float("nan"), None, 10, 20)
    runs = [lr.SequenceResult("a", found, 2.0, 30), lr.SequenceResult("b", never, 4.0, 10)]
    summary = lr.summarise("t", runs)
    assert (summary.lost_on_absent, summary.success_after_return, summary.auc_after_return) == (0.5, 0.4, 0.6)
    assert (summary.frames_to_found, summary.found, summary.never_found) == (4.0, 1, 1)
    assert summary.step_ms == pytest.approx((2.0 * 30 + 4.0 * 10) / 40)


# --- end to end ---------------------------------------------------------------------------------------------

COUNT = 50  # t1 16, L 12: the square moves 1 px a frame, so it has moved 12 px when it comes back


def _dataset(root):
    """OTB layout: alpha (96x72), beta_1 (twice the size, so donor frames are resized both ways), beta_2."""
    for name, seed, scale in (("alpha", 0, 1), ("beta_1", 1, 2), ("beta_2", 2, 1)):
        frames, boxes = scene(COUNT, seed=seed, step=1)
        frames = [cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST) for f in frames]
        write_images(root / name / "img", frames, "{:04d}.png")  # lossless: the fake tracker matches exactly
        write_boxes(root / name / "groundtruth_rect.txt", boxes * scale)
    return root


class ExactMatch:
    """Finds its init patch anywhere in the frame; reports lost when it is not there."""

    def init(self, frame, box: Box) -> None:
        x, y, w, h = (int(v) for v in box.as_list())
        self.patch = frame[y : y + h, x : x + w].copy()

    def update(self, frame) -> TrackResult:
        found = cv2.matchTemplate(frame, self.patch, cv2.TM_SQDIFF_NORMED)
        low, _, (x, y), _ = cv2.minMaxLoc(found)
        if low > 0.01:
            return TrackResult(Box(*NAN4), 0.0, 0.1, lost=True)
        return TrackResult(Box(x, y, self.patch.shape[1], self.patch.shape[0]), 1.0, 0.1)


class StandStill:
    def init(self, frame, box: Box) -> None:
        self.box = box

    def update(self, frame) -> TrackResult:
        return TrackResult(self.box, 1.0, 0.1)


def test_composite_frames_put_the_donor_in_the_gap_at_the_clip_size(tmp_path):
    alpha, beta, _ = load_dataset(_dataset(tmp_path / "otb"))
    plan = lr.composite_plan([COUNT] * 3, ["alpha", "beta_1", "beta_2"])[0]
    frames = list(lr.composite_frames(alpha, beta, plan))
    own, donor = list(alpha.frames()), list(beta.frames(plan.gap))
    assert len(frames) == COUNT and all(f.shape == own[0].shape for f in frames)
    np.testing.assert_array_equal(frames[plan.t1 - 1], own[plan.t1 - 1])
    np.testing.assert_array_equal(frames[plan.t1], cv2.resize(donor[0], (own[0].shape[1], own[0].shape[0])))
    np.testing.assert_array_equal(frames[plan.return_index], own[plan.return_index])
    gt, absent, replaced = lr.composite_truth(alpha, plan)
    assert replaced.sum() == plan.gap and np.isnan(gt[replaced]).all() and (absent == replaced).all()


def test_end_to_end_writes_the_layout_and_figures(tmp_path, monkeypatch, capsys):
    root = _dataset(tmp_path / "otb")
    specs = [TrackerSpec("exact", ExactMatch), TrackerSpec("still", StandStill)]
    monkeypatch.setattr(lr, "tracker_specs", lambda *args: (specs, []))
    out = tmp_path / "out"
    assert lr.main(["--dataset", str(root), "--out", str(out)]) == 0
    data = json.loads((out / "leave_return.json").read_text())
    assert {"command", "machine", "layout", "trackers", "skipped_trackers"} <= set(data)
    assert [(p["sequence"], p["donor"], p["t1"], p["L"]) for p in data["layout"]] == [
        ("alpha", "beta_1", 16, 12), ("beta_1", "alpha", 16, 12), ("beta_2", "alpha", 16, 12)
    ]
    exact, still = data["trackers"]["exact"], data["trackers"]["still"]
    assert exact["mean"]["lost_on_absent"] == 1.0 and exact["mean"]["lost_while_visible"] == 0.0
    assert exact["mean"]["success_after_return"] == 1.0 and exact["mean"]["never_found"] == 0
    assert exact["sequences"]["beta_1"]["frames_to_found"] == 0
    assert still["mean"]["lost_on_absent"] == 0.0 and still["mean"]["success_after_return"] == 0.0
    assert still["mean"]["never_found"] == 3 and still["mean"]["frames_to_found"] is None
    assert still["sequences"]["alpha"]["frames_to_found"] == "never"
    assert "| alpha | beta_1 | exact | 16 | 12 | 1.000 |" in (out / "leave_return.md").read_text()
    assert "lost on absent" in capsys.readouterr().out
    assert lr.main(["--dataset", str(root), "--out", str(out), "--max-sequences", "1"]) == 0
    assert [p["sequence"] for p in json.loads((out / "leave_return.json").read_text())["layout"]] == ["alpha"]


def test_clips_too_short_for_a_gap_are_a_one_line_error(tmp_path, capsys):
    root = _dataset(tmp_path / "otb")
    assert lr.main(["--dataset", str(root), "--out", str(tmp_path / "o"), "--max-frames", "20"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "--max-frames" in err


class CaptionFinder:
    """A query session stand-in: finds the patch its caption names (given at construction) and says LOST when it
    is not in the frame; ``queries`` records what it was asked for."""

    def __init__(self, patch: np.ndarray) -> None:
        self.finder, self.patch, self.queries = ExactMatch(), patch, []

    def reset(self) -> None:
        self.finder.patch = self.patch

    def set_query(self, text: str) -> str:
        self.queries.append(text)
        return text

    def step(self, frame) -> SessionResult:
        found = self.finder.update(frame.image)
        state = TrackState.LOST if found.lost else TrackState.TRACKING
        return SessionResult(frame.index, frame.timestamp, None if found.lost else found.box, found.score, state)


def test_a_query_session_starts_from_the_caption_and_is_scored_like_a_tracker(tmp_path):
    alpha, beta, _ = load_dataset(_dataset(tmp_path / "otb"))
    plan = lr.composite_plan([COUNT] * 3, ["alpha", "beta_1", "beta_2"])[0]
    x, y, w, h = (int(v) for v in alpha.groundtruth[0])
    session = CaptionFinder(next(alpha.frames())[y : y + h, x : x + w].copy())
    captioned = dataclasses.replace(alpha, language="the bright square")
    result = lr.run_query_composite(session, captioned, beta, plan)
    assert session.queries == ["the bright square"] and result.steps == COUNT
    assert result.score.lost_on_absent == 1.0 and result.score.success_after_return == 1.0
    assert result.score.frames_to_found == 0
    with pytest.raises(InputError, match=r"language\.txt"):
        lr.run_query_composite(session, alpha, beta, plan)


def test_a_query_session_follows_as_many_matches_as_the_app():
    name, session = lr.query_session("default,GROUNDING.MAX_TARGETS=3,name=three")
    assert name == "three" and session.grounder.gcfg.max_targets == 3  # was forced to one match
