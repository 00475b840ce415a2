"""Rendering: box in the state colour, label, trail, info banner, on a copy; trail bookkeeping; several targets,
each in its id's colour with a trail of its own, and lost ones dashed at their last seen box."""

from __future__ import annotations

import numpy as np

from app.render import ID_COLOURS, STATE_COLOURS, Trail, Trails, draw_result, id_colour, info_line, target_label
from tracker.config import TrackConfig
from tracker.types import Box, Candidate, GroundingResult, SessionResult, TargetResult, TrackState


def result(box: Box | None, state=TrackState.TRACKING, score=0.9, target_id=1, index=0, query=None):
    return SessionResult(index, 0.0, box, score, state, target_id=target_id, query=query)


def grounding(box: Box) -> GroundingResult:
    return GroundingResult(candidates=(Candidate(box, 0.9),), presence=0.9)


def blank(h=240, w=320, value=0):
    return np.full((h, w, 3), value, np.uint8)


def has_colour(pixels: np.ndarray, colour) -> bool:
    """Some pixel is drawn in ``colour``, allowing for anti-aliasing (a darker shade of the same hue)."""
    values = pixels.reshape(-1, 3).astype(float)
    target = np.array(colour, float)
    strength = values @ target / (target @ target)  # how much of the colour each pixel holds
    residual = np.linalg.norm(values - strength[:, None] * target, axis=1)
    return bool(np.any((strength > 0.3) & (residual < 12)))


def test_every_state_has_a_distinct_colour():
    assert set(STATE_COLOURS) == set(TrackState)
    assert len(set(STATE_COLOURS.values())) == len(TrackState)


def test_box_is_drawn_in_the_state_colour_on_a_copy():
    image = blank()
    box = Box(100, 100, 60, 50)
    out = draw_result(image, result(box))
    assert out is not image and out.shape == image.shape and out.dtype == np.uint8
    assert not image.any()  # the caller's frame is untouched
    colour = STATE_COLOURS[TrackState.TRACKING]
    assert has_colour(out[110:140, 98:103], colour)  # left edge
    assert has_colour(out[110:140, 158:163], colour)  # right edge
    assert not out[110:140, 110:150].any()  # inside stays clear
    assert has_colour(out[70:100, 100:200], colour)  # the label above the box is filled in the colour
    lost = draw_result(image, result(box, TrackState.LOST, 0.1))
    left_edge = lost[100:151, 99:102]
    assert has_colour(left_edge, STATE_COLOURS[TrackState.LOST])
    assert not np.all(left_edge.any(axis=(1, 2)))  # dashed: gaps along the edge


def test_no_box_draws_nothing_but_the_banner():
    image = blank(value=100)
    assert np.array_equal(draw_result(image, result(None, TrackState.IDLE)), image)
    out = draw_result(image, result(None, TrackState.IDLE), info=info_line(30, 20, 45, 2))
    assert (out[:3] < 100).all()  # the banner darkens the top
    assert (out[:25] == 255).any()  # white text on it
    assert np.array_equal(out[60:], image[60:])


def test_label_stays_below_the_banner_for_a_box_at_the_top():
    image = blank()
    out = draw_result(image, result(Box(10, 0, 100, 100)), info="capture 1.0 fps")
    colour = STATE_COLOURS[TrackState.TRACKING]
    banner_rows = out[:20, 200:]
    assert not has_colour(banner_rows, colour)
    assert has_colour(out[20:50, 12:100], colour)


def test_grey_input_and_boxes_far_outside_do_not_break_drawing():
    grey = np.zeros((120, 160), np.uint8)
    out = draw_result(grey, result(Box(-1e12, 5e11, 1e12, 3)), info="x")
    assert out.shape == (120, 160, 3)
    out = draw_result(blank(), result(Box(float("nan"), 0, 1, 1)))
    assert not out.any()


def test_trail_keeps_the_last_centres_of_a_followed_target():
    trail = Trail(TrackConfig().trail_length)
    assert trail.length == 24
    for i in range(30):
        trail.add(result(Box(i, 2 * i, 10, 10), index=i))
    points = trail.points()
    assert len(points) == 24 and points[0] == (6 + 5, 12 + 5) and points[-1] == (29 + 5, 58 + 5)
    trail.add(result(Box(100, 100, 10, 10), TrackState.LOST, 0.1))
    trail.add(result(None, TrackState.IDLE))
    assert len(trail.points()) == 24  # a lost or missing box adds nothing
    trail.add(result(Box(0, 0, 2, 2), target_id=2))
    assert trail.points() == [(1, 1)]  # a new target starts a new trail
    trail.clear()
    assert trail.points() == []
    assert Trail(0).points() == []


def test_trail_is_drawn_along_the_path():
    trail = Trail(10)
    for x in (20, 60, 100, 140):  # steps shorter than the box is wide: one path
        trail.add(result(Box(x, 100, 50, 10)))
    out = draw_result(blank(), result(Box(140, 100, 50, 10)), trail)
    colour = STATE_COLOURS[TrackState.TRACKING]
    assert has_colour(out[103:108, 40:100], colour)  # between the old centres, far from the box


def test_trail_breaks_at_a_jump_larger_than_the_box_and_at_a_query_retarget():
    trail = Trail(24)
    for x in (20, 30, 40):  # steps smaller than the box: one path
        trail.add(result(Box(x, 100, 20, 20)))
    trail.add(result(Box(100, 100, 20, 20)))  # 60 px at once, the box is 20 wide: a jump
    grounded = Box(110, 112, 20, 20)  # close by, but the session re-initialised the tracker on a grounded box
    trail.add(SessionResult(0, 0.0, grounded, 0.9, TrackState.TRACKING, target_id=1, grounding=grounding(grounded)))
    trail.add(result(Box(115, 112, 20, 20)))
    assert trail.segments() == [[(30, 110), (40, 110), (50, 110)], [(110, 110)], [(120, 122), (125, 122)]]
    assert len(trail.points()) == 6


def test_info_line_reports_all_four_figures():
    text = info_line(29.97, 12.345, 81.6, 7)
    assert text == "capture 30.0 fps | track 12.3 fps | latency 82 ms | dropped 7"


# -- several targets -----------------------------------------------------------------------------------------


def with_targets(*targets: TargetResult, index=0) -> SessionResult:
    first = targets[0]
    return SessionResult(
        index, 0.0, first.box, first.score, first.state, target_id=first.target_id, targets=targets,
        last_seen=first.last_seen,
    )  # fmt: skip


def tracked(target_id: int, box: Box) -> TargetResult:
    return TargetResult(target_id, box, 0.9, TrackState.TRACKING, box)


def lost(target_id: int, last_seen: Box | None) -> TargetResult:
    return TargetResult(target_id, None, 0.1, TrackState.LOST, last_seen)


def test_id_colours_are_distinct_and_none_reads_as_lost_or_idle():
    assert len(set(ID_COLOURS)) == len(ID_COLOURS) >= 6
    assert not {STATE_COLOURS[TrackState.LOST], STATE_COLOURS[TrackState.IDLE]} & set(ID_COLOURS)
    assert [id_colour(i) for i in (1, 2, 1 + len(ID_COLOURS))] == [ID_COLOURS[0], ID_COLOURS[1], ID_COLOURS[0]]


def test_every_target_is_drawn_in_its_ids_colour_with_its_id_in_the_label():
    out = draw_result(blank(), with_targets(tracked(1, Box(20, 100, 60, 50)), tracked(2, Box(200, 100, 60, 50))))
    assert has_colour(out[110:140, 18:23], id_colour(1)) and not has_colour(out[110:140, 18:23], id_colour(2))
    assert has_colour(out[110:140, 198:203], id_colour(2)) and not has_colour(out[110:140, 198:203], id_colour(1))
    assert has_colour(out[80:100, 200:260], STATE_COLOURS[TrackState.TRACKING])  # the label: the state's colour
    assert target_label(tracked(2, Box(0, 0, 1, 1))) == "tracking 0.90 #2"


def test_a_lost_target_is_dashed_at_its_last_seen_box_and_labelled_lost():
    box = Box(100, 100, 60, 50)
    out = draw_result(blank(), with_targets(tracked(1, Box(10, 10, 20, 20)), lost(2, box)))
    left_edge = out[100:151, 99:102]
    assert has_colour(left_edge, id_colour(2))
    assert not np.all(left_edge.any(axis=(1, 2)))  # dashed: gaps along the edge
    assert has_colour(out[70:100, 100:200], STATE_COLOURS[TrackState.LOST])  # the label says lost, in red
    assert target_label(lost(2, box)) == "lost #2"
    nowhere = draw_result(blank(), with_targets(lost(1, None)))
    assert not nowhere.any()  # lost before it was ever seen: nothing to draw


def test_a_lost_primary_without_a_target_list_is_dashed_at_its_last_seen_box():
    box = Box(100, 100, 60, 50)
    out = draw_result(blank(), SessionResult(0, 0.0, None, 0.1, TrackState.LOST, target_id=1, last_seen=box))
    left_edge = out[100:151, 99:102]
    assert has_colour(left_edge, STATE_COLOURS[TrackState.LOST]) and not np.all(left_edge.any(axis=(1, 2)))


def test_trails_are_kept_per_target_and_stand_still_while_lost():
    trails = Trails(24)
    for i in range(5):
        trails.add(with_targets(tracked(1, Box(10 + i, 10, 10, 10)), tracked(2, Box(100, 50 + i, 10, 10))))
    assert trails.segments_for(1) == [[(15 + i, 15) for i in range(5)]]
    assert trails.segments_for(2) == [[(105, 55 + i) for i in range(5)]]
    trails.add(with_targets(tracked(1, Box(15, 10, 10, 10)), lost(2, Box(100, 54, 10, 10))))
    assert len(trails.segments_for(1)[0]) == 6 and len(trails.segments_for(2)[0]) == 5  # lost: no new point
    trails.add(with_targets(tracked(1, Box(16, 10, 10, 10))))  # target 2 is gone: its trail too
    assert trails.segments_for(2) == [] and trails.segments_for(3) == []
    out = draw_result(blank(), with_targets(tracked(1, Box(16, 10, 10, 10))), trails)
    assert has_colour(out[14:17, 15:19], id_colour(1))  # the trail, in the target's colour
    trails.clear()
    assert trails.segments_for(1) == []


def test_trails_of_a_result_without_a_target_list_follow_the_primary():
    trails = Trails(10)
    for x in (20, 30, 40):
        trails.add(result(Box(x, 100, 20, 20)))
    assert trails.segments_for(1) == [[(30, 110), (40, 110), (50, 110)]]
    trails.add(result(Box(0, 0, 2, 2), target_id=2))  # a new target (a re-target): a new trail
    assert trails.segments_for(1) == [] and trails.segments_for(2) == [[(1, 1)]]
