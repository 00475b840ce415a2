"""Session in grounding mode: query -> grounding -> hand-over to the box tracker, re-checks, re-targeting,
several targets with identities kept by assignment, and recovery from lost.

The grounder here is scripted (its answers are given per call) so the state machine is tested on its own; the box
tracker is the real tiny conformance model.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.helpers import ROOT, TINY_WEIGHTS, TINY_YAML
from tracker import Box, InputError, Session, TrackState, build_tracker
from tracker.config import TrackConfig, load_config
from tracker.grounding import GroundingStep, clean_query
from tracker.types import Candidate, Frame, GroundingResult

GCFG = load_config(ROOT / "tests" / "data" / "grounding_tiny.yaml").grounding  # handoff 2, recheck every 3
FAR = Box(200, 150, 40, 40)
NEAR = Box(40, 40, 50, 50)


class ScriptedGrounder:
    """Answers ``ground`` from a list of (presence, boxes) in order; the last answer repeats."""

    def __init__(self, script: list[tuple[float, list[Box]]]) -> None:
        self.gcfg = GCFG
        self.script = list(script)
        self.calls = 0

    def set_query(self, text: str) -> str:
        return clean_query(text)

    def ground(self, image: np.ndarray) -> GroundingStep:
        presence, boxes = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        candidates = tuple(Candidate(b, 0.9 - 0.1 * i) for i, b in enumerate(boxes))
        # Appearance: one unit vector per distinct box position, so the same object looks the same.
        feats = np.array([[np.cos(b.x / 50.0), np.sin(b.x / 50.0)] for b in boxes], np.float32).reshape(-1, 2)
        return GroundingStep(GroundingResult(candidates, presence), feats)


def session(script, **track) -> Session:
    tracker = build_tracker(TINY_YAML, TINY_WEIGHTS, device="cpu")
    cfg = dataclasses.replace(TrackConfig(), **track)
    return Session(tracker, cfg, grounder=ScriptedGrounder(script))


def frame(index: int) -> Frame:
    image = np.full((240, 320, 3), 90, np.uint8)
    image[40:90, 40:90] = (20, 40, 220)
    image[150:190, 200:240] = (220, 200, 20)
    return Frame(index, index / 30.0, image)


def test_query_needs_a_grounder():
    plain = Session(build_tracker(TINY_YAML, TINY_WEIGHTS, device="cpu"))
    with pytest.raises(InputError, match="grounding"):
        plain.set_query("the boat")


def test_hand_over_after_confident_frames_then_periodic_rechecks():
    s = session([(0.2, [NEAR]), (0.9, [NEAR]), (0.9, [NEAR])], lost_score=0.0)
    assert s.set_query("  the blue   square ") == "the blue square"
    assert s.state is TrackState.GROUNDING
    first = s.step(frame(0))
    assert first.state is TrackState.GROUNDING and first.box == NEAR and first.score == 0.2
    assert first.target_id is None and first.query == "the blue square" and first.grounding is not None
    assert (
        s.step(frame(1)).state is TrackState.GROUNDING
    )  # one confident frame is not enough (HANDOFF_FRAMES 2)
    handed = s.step(frame(2))
    assert handed.state is TrackState.TRACKING and handed.box == NEAR and handed.target_id == 1
    assert [t.target_id for t in handed.targets] == [1]
    calls = s.grounder.calls
    results = [s.step(frame(i)) for i in range(3, 9)]
    # The tracker runs every frame; grounding re-checks every RECHECK_INTERVAL (3) frames.
    assert s.grounder.calls == calls + 2
    assert [r.grounding is not None for r in results] == [False, False, True, False, False, True]
    assert all(r.state is TrackState.TRACKING and r.target_id == 1 for r in results)


def test_a_drifted_tracker_is_re_targeted_on_the_grounded_box():
    script = [(0.9, [NEAR]), (0.9, [NEAR]), (0.9, [FAR])]
    s = session(script, lost_score=0.0)
    s.set_query("the square")
    for i in range(2):
        s.step(frame(i))
    results = [s.step(frame(i)) for i in range(2, 5)]
    assert results[-1].grounding is not None
    assert results[-1].box == FAR and results[-1].target_id == 1  # same identity, moved to the grounded box


def test_several_matches_become_targets_whose_ids_follow_their_objects():
    other = Box(200, 40, 40, 40)
    s = session([(0.9, [NEAR, FAR]), (0.9, [NEAR, FAR])], lost_score=0.0)
    s.set_query("the squares")
    s.step(frame(0))
    handed = s.step(frame(1))
    assert sorted(t.target_id for t in handed.targets) == [1, 2]
    tracked = {t.target_id: t.box for t in handed.targets}
    # Next re-check: the same two objects in the other order, plus a new one far from both.
    s.grounder.script.append((0.9, [tracked[2], tracked[1], other]))
    results = [s.step(frame(i)) for i in range(2, 5)]
    final = {t.target_id: t.box for t in results[-1].targets}
    assert set(final) == {1, 2, 3}
    assert final[3] == other
    for target_id in (1, 2):
        assert final[target_id].iou(tracked[target_id]) > 0.3


def test_lost_target_is_re_grounded_and_recovered():
    s = session([(0.9, [NEAR]), (0.9, [NEAR]), (0.1, [])], lost_score=2.0, lost_frames=2, recover_score=2.0)
    s.set_query("the square")
    s.step(frame(0))
    assert s.step(frame(1)).state is TrackState.TRACKING
    states = [s.step(frame(i)).state for i in range(2, 5)]
    assert states[-1] is TrackState.LOST
    calls = s.grounder.calls
    s.step(frame(5))
    assert s.grounder.calls == calls + 1  # while lost, grounding runs every frame
    s.grounder.script.append((0.9, [FAR]))
    recovered = s.step(frame(6))
    assert recovered.state is TrackState.RECOVERED and recovered.box == FAR and recovered.target_id == 1


def test_drawing_a_box_leaves_grounding_mode():
    s = session([(0.9, [NEAR])])
    s.set_query("the square")
    s.step(frame(0))
    started = s.start(frame(1), FAR)
    assert started.state is TrackState.TRACKING and started.query is None
    assert s.step(frame(2)).query is None
    s.reset()
    assert s.step(frame(3)).state is TrackState.IDLE


def test_several_matches_followed_by_opencv_trackers_step_one_by_one():
    """A grounding evaluation may follow matches with OpenCV trackers, which have no shared network to batch."""
    from tracker.eval.baselines import build_baseline

    grounder = ScriptedGrounder([(0.9, [NEAR, FAR])])
    s = Session(build_baseline("mil"), dataclasses.replace(TrackConfig(), lost_score=0.0), grounder,
                lambda: build_baseline("mil"))
    s.set_query("the squares")
    s.step(frame(0))
    results = [s.step(frame(i)) for i in range(1, 5)]
    assert sorted(t.target_id for t in results[-1].targets) == [1, 2]
    assert all(t.box is not None and t.box.is_finite() for t in results[-1].targets)


@pytest.mark.parametrize("memory", [8, 0])
def test_a_lost_target_does_not_jump_to_a_candidate_passed_over_at_hand_over(memory):
    script = [(0.9, [NEAR, FAR]), (0.9, [NEAR, FAR]), (0.1, [])]
    tracker = build_tracker(TINY_YAML, TINY_WEIGHTS, device="cpu")
    grounder = ScriptedGrounder(script)
    grounder.gcfg = dataclasses.replace(GCFG, max_targets=1, rejected_memory=memory)
    cfg = dataclasses.replace(TrackConfig(), lost_score=2.0, lost_frames=2, recover_score=2.0)
    s = Session(tracker, cfg, grounder=grounder)
    s.set_query("the blue square")
    s.step(frame(0))
    handed = s.step(frame(1))
    assert handed.box == NEAR and len(handed.targets) == 1  # FAR was a candidate, passed over
    assert [s.step(frame(i)).state for i in range(2, 5)][-1] is TrackState.LOST
    s.grounder.script.append((0.9, [FAR]))  # the only match now is the one passed over
    after = s.step(frame(5))
    if memory:
        assert after.state is TrackState.LOST and after.box is None
        back = Box(70, 120, 50, 50)  # looks like the target (the scripted appearance follows x)
        s.grounder.script.append((0.9, [FAR, back]))
        found = s.step(frame(6))
        assert found.state is TrackState.RECOVERED and found.box == back and found.target_id == 1
    else:
        assert after.state is TrackState.RECOVERED and after.box == FAR  # without the memory it jumps
