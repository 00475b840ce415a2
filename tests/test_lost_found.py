"""Lost and found: honest states from the score, re-detection over the whole frame, and several targets in one
batched forward with the results of stepping each alone."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from tests.helpers import TINY_WEIGHTS, TINY_YAML
from tracker.accel import Network, build_network
from tracker.build import load_model
from tracker.errors import InputError, TrackerError
from tracker.redetect import tile_centres
from tracker.session import Session
from tracker.single import SingleTracker, padded_rows, update_together
from tracker.target import Target
from tracker.types import Box, Frame, TrackState

WHITE = 255


def _bright_spot_network(cfg):
    """A stand-in network that scores each cell of the search crop by how bright it is: a white square on black
    is the target, wherever it is; it predicts a box of the template's size there."""
    stride = cfg.test.search_size // cfg.search_tokens_side
    same = 1.0 / cfg.test.search_factor

    def run(template, search):
        brightness = torch.nn.functional.avg_pool2d(search[:, :1], stride)  # normalised red: about -2 to 2.2
        score = torch.sigmoid(4 * (brightness - 0.5))
        size = torch.full((search.shape[0], 2, *score.shape[-2:]), same)
        return score, size, torch.full_like(size, 0.5)

    return run


def _tracker(**track):
    model, cfg = load_model(TINY_YAML, TINY_WEIGHTS)
    redetect = track.pop("redetect", {})
    cfg = dataclasses.replace(
        cfg,
        track=dataclasses.replace(
            cfg.track, redetect=dataclasses.replace(cfg.track.redetect, **redetect), **track
        ),
    )
    return SingleTracker(model, cfg, "cpu", network=Network("fake", "fp32", _bright_spot_network(cfg), "exact"))


def _scene(square: tuple[int, int] | None, size=(240, 320), colour=(WHITE, WHITE, WHITE)):
    image = np.zeros((*size, 3), np.uint8)
    if square is not None:
        x, y = square
        image[y : y + 20, x : x + 20] = colour
    return image


def _lose(target, frames):
    results = [target.update(_scene(None)) for _ in range(frames)]
    return results


def test_a_target_that_leaves_is_reported_lost_without_a_box():
    target = Target(_tracker(lost_frames=3, redetect={"enabled": False}))
    target.init(_scene((100, 100)), Box(100, 100, 20, 20))
    tracked = target.update(_scene((102, 100)))
    assert target.state is TrackState.TRACKING and not tracked.lost
    assert tracked.box.cx == pytest.approx(112, abs=6)
    results = _lose(target, 3)
    assert [r.lost for r in results] == [False, False, True]  # hysteresis: three weak steps in a row
    assert target.state is TrackState.LOST and target.box is None  # no measurement; the result holds a guess
    assert target.last_seen.cx == pytest.approx(tracked.box.cx)  # where it was last tracked, not where it drifted


def test_without_redetection_a_target_back_far_away_stays_lost():
    target = Target(_tracker(lost_frames=2, redetect={"enabled": False}))
    target.init(_scene((20, 20)), Box(20, 20, 20, 20))
    _lose(target, 2)
    results = [target.update(_scene((280, 200))) for _ in range(20)]
    assert all(r.lost for r in results) and target.state is TrackState.LOST


def test_redetection_finds_a_target_back_far_away_and_confirms_it_first():
    target = Target(_tracker(lost_frames=2, recover_frames=2, redetect={"enabled": True, "batch": 2}))
    target.init(_scene((20, 20)), Box(20, 20, 20, 20))
    _lose(target, 2)
    assert target.searching
    results = [target.update(_scene((280, 200))) for _ in range(40)]
    found = next(i for i, r in enumerate(results) if not r.lost)
    assert found >= 1  # seen once is a candidate; it must hold for RECOVER_FRAMES frames
    assert target.state in (TrackState.RECOVERED, TrackState.TRACKING)
    box = results[found].box
    assert box.cx == pytest.approx(290, abs=6) and box.cy == pytest.approx(210, abs=6)
    assert all(not r.lost for r in results[found:])  # and it is tracked from there on
    assert target.state is TrackState.TRACKING


def _frames_to_find(colour_search: bool) -> int:
    """Lost frames until a red target back in the far corner of a 480x640 frame is found again."""
    redetect = {"enabled": True, "batch": 2, "colour_search": colour_search}
    target = Target(_tracker(lost_frames=2, recover_frames=2, redetect=redetect))
    red = (0, 0, WHITE)  # BGR: bright in the stand-in network's red channel, and a colour the black frame lacks
    target.init(_scene((20, 20), (480, 640), red), Box(20, 20, 20, 20))
    _lose(target, 2)
    for index in range(200):
        if not target.update(_scene((600, 440), (480, 640), red)).lost:
            return index
    return 200


def test_redetection_looks_first_where_the_targets_colours_are():
    by_colour = _frames_to_find(colour_search=True)
    assert by_colour == 1  # a candidate on the first lost frame, confirmed on the second
    assert _frames_to_find(colour_search=False) > 10  # the tiles reach the far corner last


def test_redetection_does_not_accept_a_flash():
    """A bright spot for one frame only is a candidate, never a recovery."""
    target = Target(_tracker(lost_frames=1, recover_frames=2, redetect={"enabled": True, "batch": 64}))
    target.init(_scene((20, 20)), Box(20, 20, 20, 20))
    _lose(target, 1)
    flashes = [target.update(_scene((280, 200) if i % 2 == 0 else None)) for i in range(10)]
    assert all(r.lost for r in flashes)


def test_tiles_cover_the_frame_nearest_first():
    near = Box(300, 200, 20, 20)
    centres = tile_centres(640, 480, 100, 0.5, near)
    half = 50
    covered = np.zeros((480, 640), bool)
    for cx, cy in centres:
        covered[int(cy - half) : int(cy + half) + 1, int(cx - half) : int(cx + half) + 1] = True
    assert covered.all()
    distances = [math.hypot(cx - near.cx, cy - near.cy) for cx, cy in centres]
    assert distances == sorted(distances)
    assert tile_centres(64, 48, 100, 0.5, near) == [(32.0, 24.0)]  # a crop larger than the frame: one tile


def test_padded_rows_are_powers_of_two():
    assert [padded_rows(n) for n in (1, 2, 3, 4, 5, 8, 9)] == [1, 2, 4, 4, 8, 8, 16]


def _real_trackers(count, backend="eager"):
    model, cfg = load_model(TINY_YAML, TINY_WEIGHTS)
    network = build_network(model, cfg, torch.device("cpu"), backend)
    return [SingleTracker(model, cfg, "cpu", network=network) for _ in range(count)]


def _textured(seed, size=(240, 320)):
    return np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)


@pytest.mark.parametrize("backend", ["eager", "onnx"])
def test_targets_stepped_together_match_each_stepped_alone(backend, tmp_path, monkeypatch):
    monkeypatch.setenv("OSTRACK_LIVE_CACHE", str(tmp_path))
    if backend == "onnx":
        pytest.importorskip("onnxruntime")
    boxes = [Box(40, 50, 30, 40), Box(150, 100, 50, 30), Box(220, 30, 40, 40)]
    frames = [_textured(seed) for seed in range(4)]
    together, alone = _real_trackers(3, backend), _real_trackers(3, backend)
    for tracker, box in zip(together + alone, boxes + boxes, strict=True):
        tracker.init(frames[0], box)
    for frame in frames[1:]:
        joint = update_together(together, frame)  # three rows, padded to a static four on ONNX
        single = [tracker.update(frame) for tracker in alone]
        for a, b in zip(joint, single, strict=True):
            assert np.allclose(a.box.as_list(), b.box.as_list(), atol=0.05)
            assert a.score == pytest.approx(b.score, abs=1e-4)


def test_a_static_network_refuses_more_rows_than_its_batch():
    network = Network("fake", "fp32", lambda t, s: (s[:, :1], s[:, :2], s[:, :2]), "exact", batch=2)
    out = network(torch.zeros(1, 4), torch.zeros(1, 3, 8, 8))  # one row padded to two, then cut back
    assert out.score_map.shape[0] == 1
    with pytest.raises(TrackerError, match="at most 2 crops"):
        network(torch.zeros(1, 4), torch.zeros(3, 3, 8, 8))


def _frame(index, image):
    return Frame(index, index / 30, image)


def test_a_session_follows_several_boxes_and_reports_each():
    session = Session(_tracker(lost_frames=2, redetect={"enabled": False}))
    first = _scene((40, 40))
    first[150:170, 200:220] = WHITE  # a second square
    session.start(_frame(0, first), Box(40, 40, 20, 20))
    result = session.add_target(_frame(0, first), Box(200, 150, 20, 20))
    assert [t.target_id for t in result.targets] == [1, 2]
    result = session.step(_frame(1, first))
    assert [t.state for t in result.targets] == [TrackState.TRACKING, TrackState.TRACKING]
    assert result.targets[1].box.cx == pytest.approx(210, abs=6)
    only_second = _scene(None)
    only_second[150:170, 200:220] = WHITE
    for index in (2, 3):
        result = session.step(_frame(index, only_second))
    assert result.state is TrackState.LOST and result.box is None  # the primary left
    assert result.last_seen is not None and result.last_seen.cx == pytest.approx(50, abs=6)
    assert result.targets[0].box is None and result.targets[1].state is TrackState.TRACKING


def test_a_session_refuses_a_target_too_many_or_a_box_beside_a_query():
    session = Session(_tracker(max_targets=2))
    frame = _frame(0, _scene((40, 40)))
    session.add_target(frame, Box(40, 40, 20, 20))  # idle: the same as start
    session.add_target(frame, Box(100, 40, 20, 20))
    with pytest.raises(InputError, match="already following 2 targets"):
        session.add_target(frame, Box(200, 40, 20, 20))
    session.query = "the white square"  # as set_query leaves it, without needing a grounder here
    with pytest.raises(InputError, match="clear the text query"):
        session.add_target(frame, Box(200, 40, 20, 20))


def test_a_target_back_where_it_was_is_found_by_the_trackers_own_step():
    """With no tiles at all (one crop a lost frame), the tracker's own step still runs and finds it again."""
    target = Target(_tracker(lost_frames=2, recover_frames=3, redetect={"enabled": True, "batch": 1}))
    target.init(_scene((100, 100)), Box(100, 100, 20, 20))
    _lose(target, 2)
    back = [target.update(_scene((104, 100))) for _ in range(4)]
    assert [r.lost for r in back] == [True, True, False, False]  # held for RECOVER_FRAMES frames first
    assert target.state is TrackState.TRACKING and 104 <= back[2].box.cx <= 124  # on the square


def test_a_bad_box_leaves_the_session_as_it_was():
    session = Session(_tracker())
    frame = _frame(0, _scene((40, 40)))
    session.start(frame, Box(40, 40, 20, 20))
    with pytest.raises(InputError):
        session.start(frame, Box(900, 900, 20, 20))  # outside the frame
    result = session.step(_frame(1, _scene((42, 40))))
    assert result.state is TrackState.TRACKING and [t.target_id for t in result.targets] == [1]


def test_the_frame_a_target_is_found_on_carries_the_presence_it_was_found_with():
    target = Target(_tracker(lost_frames=2, recover_frames=2, redetect={"enabled": True, "batch": 2}))
    target.init(_scene((20, 20)), Box(20, 20, 20, 20))
    _lose(target, 2)
    results = [target.update(_scene((280, 200))) for _ in range(40)]
    found = next(r for r in results if not r.lost)
    assert found.score >= target.cfg.recover_score and target.score == found.score
