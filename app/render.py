"""Drawing shared by the window and the headless video output: box, label, trail and an info line.

Everything here takes a ``SessionResult`` (boxes in frame pixels) and a BGR image and returns a new BGR image;
nothing draws on the caller's frame in place, so the recorder and the window can share one captured picture.
"""

from __future__ import annotations

import collections
import itertools

import cv2
import numpy as np

from tracker.types import Box, SessionResult, TrackState

Colour = tuple[int, int, int]  # B, G, R

STATE_COLOURS: dict[TrackState, Colour] = {  # BGR
    TrackState.IDLE: (160, 160, 160),  # grey: nothing followed
    TrackState.GROUNDING: (255, 200, 0),  # light blue: searching for a text query
    TrackState.TRACKING: (80, 200, 60),  # green: confident
    TrackState.LOST: (40, 40, 230),  # red: box kept at the last estimate
    TrackState.RECOVERED: (0, 165, 255),  # orange: found again, not yet confirmed
}
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
        if result.target_id != self._target_id:
            self.clear()
            self._target_id = result.target_id
        if self.length == 0 or result.box is None or result.state not in TRAIL_STATES:
            return
        if not result.box.is_finite():
            return
        breaks = self._last_box is not None and (_retargeted(result) or _jumped(self._last_box, result.box))
        self._points.append(((round(result.box.cx), round(result.box.cy)), breaks))
        self._last_box = result.box

    def segments(self) -> list[list[tuple[int, int]]]:
        """The centres in runs the box travelled through, oldest first."""
        runs: list[list[tuple[int, int]]] = []
        for point, breaks in self._points if self.length else ():
            if breaks or not runs:
                runs.append([])
            runs[-1].append(point)
        return runs

    def points(self) -> list[tuple[int, int]]:
        """Every centre kept, oldest first, whatever the segment."""
        return [point for run in self.segments() for point in run]

    def clear(self) -> None:
        self._points.clear()
        self._last_box = None


def _jumped(previous: Box, box: Box) -> bool:
    """The centre moved farther than the previous box is wide or high: no path joins the two."""
    return abs(box.cx - previous.cx) > previous.w or abs(box.cy - previous.cy) > previous.h


def _retargeted(result: SessionResult) -> bool:
    """A query re-target keeps the target id, and the session re-initialises the tracker exactly on one of the
    grounded boxes, where a tracked box never lands exactly."""
    grounding = result.grounding
    return grounding is not None and any(candidate.box == result.box for candidate in grounding.candidates)


def info_line(capture_fps: float, track_fps: float, latency_ms: float, dropped: int) -> str:
    """The status text drawn at the top of a frame, e.g. ``capture 30.0 fps | track 24.8 fps | ...``."""
    return (
        f"capture {capture_fps:.1f} fps | track {track_fps:.1f} fps | latency {latency_ms:.0f} ms | dropped {dropped}"
    )


def draw_result(
    image_bgr: np.ndarray,
    result: SessionResult,
    trail: Trail | None = None,
    info: str | None = None,
) -> np.ndarray:
    """A copy of ``image_bgr`` with the result drawn: trail, box in the state's colour, a label with state and
    score (and target id / query when known), and ``info`` on a dark banner at the top."""
    canvas = _bgr_copy(image_bgr)
    scale = max(canvas.shape[0], 1) / REFERENCE_HEIGHT
    colour = STATE_COLOURS.get(result.state, STATE_COLOURS[TrackState.IDLE])
    if trail is not None:
        _draw_trail(canvas, trail.segments(), colour, scale)
    if result.box is not None and result.box.is_finite():
        _draw_box(canvas, result.box, colour, scale, result.state is TrackState.LOST)
    banner_bottom = _draw_banner(canvas, info, scale) if info else 0
    if result.box is not None and result.box.is_finite():
        # Drawn last and kept below the banner, so neither hides the other.
        _draw_label(canvas, result_label(result), result.box, colour, scale, banner_bottom)
    return canvas


def result_label(result: SessionResult) -> str:
    """``tracking 0.87`` plus ``#id`` and the query when the session set them."""
    parts = [result.state.value, f"{result.score:.2f}"]
    if result.target_id is not None:
        parts.append(f"#{result.target_id}")
    if result.query:
        query = result.query
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
