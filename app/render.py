"""Drawing shared by the window and the headless video output: boxes, labels, trails and an info line.

Everything here takes a ``SessionResult`` (boxes in frame pixels) and a BGR image and returns a new BGR image;
nothing draws on the caller's frame in place, so the recorder and the window can share one captured picture.

A result that lists its targets (``SessionResult.targets``) has each drawn with its box and trail in a colour of
its own, picked from ``ID_COLOURS`` by target id, and its label in the colour of its state. A result without the
list is drawn from its primary fields, box and trail in the state's colour. A lost target has no box: its last seen
box is drawn dashed, labelled "lost", and its trail stands still until it is tracked again.
"""

from __future__ import annotations

import collections
import itertools
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from tracker.types import Box, GroundingResult, SessionResult, TargetResult, TrackState

Colour = tuple[int, int, int]  # B, G, R

STATE_COLOURS: dict[TrackState, Colour] = {  # BGR
    TrackState.IDLE: (160, 160, 160),  # grey: nothing followed
    TrackState.GROUNDING: (255, 200, 0),  # light blue: searching for a text query
    TrackState.TRACKING: (80, 200, 60),  # green: confident
    TrackState.LOST: (40, 40, 230),  # red: box kept at the last estimate
    TrackState.RECOVERED: (0, 165, 255),  # orange: found again, not yet confirmed
}
# Box and trail colours of targets by id (BGR), none of them a state colour but the first: one target followed
# looks as it always did, green while tracked.
ID_COLOURS: tuple[Colour, ...] = (
    (80, 200, 60),  # green
    (220, 80, 220),  # magenta
    (40, 220, 240),  # yellow
    (240, 150, 40),  # azure
    (200, 230, 80),  # turquoise
    (180, 70, 120),  # violet
)
TRAIL_STATES = frozenset({TrackState.TRACKING, TrackState.RECOVERED})  # a lost box stands still: no trail
FONT = cv2.FONT_HERSHEY_SIMPLEX
REFERENCE_HEIGHT = 480.0  # line widths and text sizes are tuned for this frame height and scale with it
TEXT_COLOUR = (255, 255, 255)
QUERY_LABEL_CHARS = 40  # a long query is cut in the box label; the results file keeps it whole


class Trail:
    """The last ``length`` box centres of one target (frame pixels), oldest first, in segments.

    The trail breaks, instead of joining two positions with a line, where the box did not travel between them: the
    session re-initialised the tracker on a grounded box (a query re-target), or the box jumped farther than its own
    width or height (another object, or found again elsewhere after being lost). A new target starts a new trail.
    """

    def __init__(self, length: int) -> None:
        self.length = max(0, int(length))
        # Each centre with whether a new segment starts at it.
        self._points: collections.deque[tuple[tuple[int, int], bool]] = collections.deque(maxlen=max(1, self.length))
        self._target_id: int | None = None
        self._last_box: Box | None = None

    def add(self, result: SessionResult) -> None:
        """Remember this result's centre while the target is followed; a new target starts a new trail."""
        self.add_box(result.target_id, result.box, result.state, _on_grounded_box(result.box, result.grounding))

    def add_box(self, target_id: int | None, box: Box | None, state: TrackState, retargeted: bool = False) -> None:
        """Remember ``box``'s centre while the target is followed (``retargeted``: the session re-initialised it
        there, so no path joins it to the previous centre); another ``target_id`` starts a new trail."""
        if target_id != self._target_id:
            self.clear()
            self._target_id = target_id
        if self.length == 0 or box is None or state not in TRAIL_STATES or not box.is_finite():
            return
        breaks = self._last_box is not None and (retargeted or _jumped(self._last_box, box))
        self._points.append(((round(box.cx), round(box.cy)), breaks))
        self._last_box = box

    def segments(self) -> list[list[tuple[int, int]]]:
        """The centres in runs the box travelled through, oldest first."""
        runs: list[list[tuple[int, int]]] = []
        for point, breaks in self._points if self.length else ():
            if breaks or not runs:
                runs.append([])
            runs[-1].append(point)
        return runs

    def segments_for(self, target_id: int | None) -> list[list[tuple[int, int]]]:
        """``segments()`` when this is ``target_id``'s trail, else none."""
        return self.segments() if target_id == self._target_id else []

    def points(self) -> list[tuple[int, int]]:
        """Every centre kept, oldest first, whatever the segment."""
        return [point for run in self.segments() for point in run]

    def clear(self) -> None:
        self._points.clear()
        self._last_box = None


class Trails:
    """One ``Trail`` per followed target, by target id. A target no longer reported loses its trail, so one added
    again later starts afresh."""

    def __init__(self, length: int) -> None:
        self.length = max(0, int(length))
        self._trails: dict[int | None, Trail] = {}

    def add(self, result: SessionResult) -> None:
        """Extend the trail of every target of ``result`` (its primary fields when it lists none)."""
        kept: dict[int | None, Trail] = {}
        for target_id, box, state in _trail_entries(result):
            trail = self._trails.get(target_id) or Trail(self.length)
            trail.add_box(target_id, box, state, _on_grounded_box(box, result.grounding))
            kept[target_id] = trail
        self._trails = kept

    def segments_for(self, target_id: int | None) -> list[list[tuple[int, int]]]:
        trail = self._trails.get(target_id)
        return trail.segments_for(target_id) if trail is not None else []

    def clear(self) -> None:
        self._trails.clear()


class TrailView(Protocol):
    """What drawing asks of a trail: the segments of one target's (a ``Trail`` or ``Trails``, or a scaled view)."""

    def segments_for(self, target_id: int | None) -> list[list[tuple[int, int]]]: ...


def _trail_entries(result: SessionResult) -> list[tuple[int | None, Box | None, TrackState]]:
    if result.targets:
        return [(t.target_id, t.box, t.state) for t in result.targets]
    return [(result.target_id, result.box, result.state)]


def _jumped(previous: Box, box: Box) -> bool:
    """The centre moved farther than the previous box is wide or high: no path joins the two."""
    return abs(box.cx - previous.cx) > previous.w or abs(box.cy - previous.cy) > previous.h


def _on_grounded_box(box: Box | None, grounding: GroundingResult | None) -> bool:
    """A query re-target keeps the target id, and the session re-initialises the tracker exactly on one of the
    grounded boxes, where a tracked box never lands exactly."""
    return box is not None and grounding is not None and any(c.box == box for c in grounding.candidates)


def info_line(capture_fps: float, track_fps: float, latency_ms: float, dropped: int) -> str:
    """The status text drawn at the top of a frame, e.g. ``capture 30.0 fps | track 24.8 fps | ...``."""
    return (
        f"capture {capture_fps:.1f} fps | track {track_fps:.1f} fps | latency {latency_ms:.0f} ms | dropped {dropped}"
    )


def id_colour(target_id: int | None) -> Colour:
    """The box and trail colour of target ``target_id`` (ids count from 1)."""
    return ID_COLOURS[((target_id or 1) - 1) % len(ID_COLOURS)]


def draw_result(
    image_bgr: np.ndarray,
    result: SessionResult,
    trail: TrailView | None = None,
    info: str | None = None,
) -> np.ndarray:
    """A copy of ``image_bgr`` with the result drawn: every target's trail, box and label (state, score, target id;
    the query on the primary's), and ``info`` on a dark banner at the top. See the module docstring for colours."""
    canvas = _bgr_copy(image_bgr)
    scale = max(canvas.shape[0], 1) / REFERENCE_HEIGHT
    marks = _marks(result)
    if trail is not None:
        for mark in marks:
            _draw_trail(canvas, trail.segments_for(mark.target_id), mark.colour, scale)
    for mark in marks:
        _draw_box(canvas, mark.box, mark.colour, scale, mark.dashed)
    banner_bottom = _draw_banner(canvas, info, scale) if info else 0
    for mark in marks:
        # Drawn last and kept below the banner, so neither hides the other.
        _draw_label(canvas, mark.label, mark.box, mark.label_colour, scale, banner_bottom)
    return canvas


def result_label(result: SessionResult) -> str:
    """``tracking 0.87`` plus ``#id`` and the query when the session set them; ``lost #id`` while lost."""
    return _label(result.state, result.score, result.target_id, result.query)


def target_label(target: TargetResult, query: str | None = None) -> str:
    """One target's label, as ``result_label``."""
    return _label(target.state, target.score, target.target_id, query)


@dataclass(frozen=True)
class _Mark:
    """One target as drawn: where, in which colours, dashed or not, with which label."""

    target_id: int | None
    box: Box
    colour: Colour
    label_colour: Colour
    dashed: bool
    label: str


def _marks(result: SessionResult) -> list[_Mark]:
    """The targets to draw: each listed target in its id's colour, else the primary in its state's colour."""
    if not result.targets:
        box = _shown_box(result.box, result.last_seen, result.state)
        if box is None:
            return []
        colour = _state_colour(result.state)
        lost = result.state is TrackState.LOST
        return [_Mark(result.target_id, box, colour, colour, lost, result_label(result))]
    marks = []
    for i, target in enumerate(result.targets):
        box = _shown_box(target.box, target.last_seen, target.state)
        if box is None:
            continue
        dashed = target.state is TrackState.LOST or target.box is None
        label = target_label(target, result.query if i == 0 else None)
        colour, label_colour = id_colour(target.target_id), _state_colour(target.state)
        marks.append(_Mark(target.target_id, box, colour, label_colour, dashed, label))
    return marks


def _shown_box(box: Box | None, last_seen: Box | None, state: TrackState) -> Box | None:
    """The box itself; while lost, where the target was last seen (drawn dashed: not a measurement)."""
    if box is not None and box.is_finite():
        return box
    if state is TrackState.LOST and last_seen is not None and last_seen.is_finite():
        return last_seen
    return None


def _state_colour(state: TrackState) -> Colour:
    return STATE_COLOURS.get(state, STATE_COLOURS[TrackState.IDLE])


def _label(state: TrackState, score: float, target_id: int | None, query: str | None) -> str:
    parts = [state.value]
    if state is not TrackState.LOST:  # a lost target's score measures nothing it could be found by
        parts.append(f"{score:.2f}")
    if target_id is not None:
        parts.append(f"#{target_id}")
    if query:
        if len(query) > QUERY_LABEL_CHARS:
            query = query[: QUERY_LABEL_CHARS - 3].rstrip() + "..."
        parts.append(f'"{query}"')
    return " ".join(parts)


def _bgr_copy(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(image).copy()


def _thickness(scale: float, base: float = 2.0) -> int:
    return max(1, round(base * scale))


def _draw_box(canvas: np.ndarray, box: Box, colour: Colour, scale: float, dashed: bool) -> None:
    x1, y1, x2, y2 = _pixel_corners(canvas, box)
    thickness = _thickness(scale)
    # Axis-aligned edges need no anti-aliasing: crisp lines in exactly the state colour.
    if not dashed:
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        return
    # A lost target's box is the last estimate, not a measurement: dashed so it does not look confident.
    dash = max(4, round(8 * scale))
    corners = [(x1, y1), (x2, y1), (x2, y2), (x1, y2), (x1, y1)]
    for (ax, ay), (bx, by) in itertools.pairwise(corners):
        length = max(abs(bx - ax), abs(by - ay))
        for start in range(0, length, 2 * dash):
            end = min(start + dash, length)
            p = (ax + (bx - ax) * start // max(length, 1), ay + (by - ay) * start // max(length, 1))
            q = (ax + (bx - ax) * end // max(length, 1), ay + (by - ay) * end // max(length, 1))
            cv2.line(canvas, p, q, colour, thickness)


def _pixel_corners(canvas: np.ndarray, box: Box) -> tuple[int, int, int, int]:
    """Integer corners, clamped to a band around the frame so absurd estimates cannot overflow OpenCV."""
    height, width = canvas.shape[:2]

    def clamp(value: float, size: int) -> int:
        return int(min(max(round(value), -size), 2 * size))

    return (
        clamp(box.x, width),
        clamp(box.y, height),
        clamp(box.x + box.w, width),
        clamp(box.y + box.h, height),
    )


def _draw_label(canvas: np.ndarray, text: str, box: Box, colour: Colour, scale: float, min_top: int = 0) -> None:
    font_scale = 0.5 * scale
    thickness = _thickness(scale, 1.0)
    (width, height), baseline = cv2.getTextSize(text, FONT, font_scale, thickness)
    left, box_top, _, _ = _pixel_corners(canvas, box)
    x = int(min(max(left, 0), max(canvas.shape[1] - width - 2, 0)))
    top = box_top - height - baseline - 4
    if top < min_top:  # no room above the box: put the label just inside its top edge
        top = max(box_top, min_top)
    top = int(min(top, max(canvas.shape[0] - height - baseline - 4, 0)))
    cv2.rectangle(canvas, (x, top), (x + width + 4, top + height + baseline + 4), colour, cv2.FILLED)
    cv2.putText(canvas, text, (x + 2, top + height + 2), FONT, font_scale, TEXT_COLOUR, thickness, cv2.LINE_AA)


def _draw_trail(canvas: np.ndarray, segments: list[list[tuple[int, int]]], colour: Colour, scale: float) -> None:
    # Older parts are thinner so the direction of motion reads at a glance.
    last = max(sum(len(segment) for segment in segments) - 1, 1)
    first = 0  # position of the segment's first point in the whole trail
    for segment in segments:
        for i, (a, b) in enumerate(itertools.pairwise(segment), start=first + 1):
            thickness = max(1, round(_thickness(scale) * i / last))
            cv2.line(canvas, a, b, colour, thickness, cv2.LINE_AA)
        first += len(segment)


def _draw_banner(canvas: np.ndarray, text: str, scale: float) -> int:
    """Draw ``text`` on a darkened strip at the top; returns the strip's height in pixels."""
    font_scale = 0.5 * scale
    thickness = _thickness(scale, 1.0)
    (_, height), baseline = cv2.getTextSize(text, FONT, font_scale, thickness)
    bottom = height + baseline + 8
    # Darken rather than paint over, so the picture under the banner stays visible.
    canvas[:bottom] = (canvas[:bottom] * 0.4).astype(canvas.dtype)
    cv2.putText(canvas, text, (6, height + 4), FONT, font_scale, TEXT_COLOUR, thickness, cv2.LINE_AA)
    return bottom
