"""Drawing on a moving picture and the trail, in the window driven like a user (offscreen).

Pressing the mouse on the video holds the picture until release; the box starts tracking on that frame, then the
tracker catches up (a file) or goes on from the newest picture (a live camera). The trail breaks at a re-target or a
jump larger than the box instead of joining the two positions with a line.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from PyQt6.QtCore import QPoint, Qt
from PyQt6.QtGui import QImage

from app.sources import open_source
from app.video_view import VideoView
from app.window import HOLD_NOTICE, MainWindow
from tests.test_reliability_common import FakeCamera
from tests.test_window import WAIT_MS, FakeSession, at_frame_rate, make_window, write_video
from tracker.types import Box, Candidate, GroundingResult, SessionResult, TrackState

HOLD_MS = 700  # how long the button stays down: many frames arrive meanwhile


class LoggingSession(FakeSession):
    """``FakeSession`` that also notes every frame it stepped while following a target."""

    def __init__(self) -> None:
        super().__init__()
        self.stepped: list[int] = []

    def step(self, frame) -> SessionResult:
        if self.state is not TrackState.IDLE:
            self.stepped.append(frame.index)
        return super().step(frame)


def widget_point(view: VideoView, x: float, y: float) -> QPoint:
    wx, wy = view.viewport().to_widget(x, y)
    return QPoint(round(wx), round(wy))


def draw_slowly(qtbot, window: MainWindow, box: Box) -> int:
    """Press at the box's corner, hold while the video plays on, drag and release; returns the held frame index."""
    view = window.view
    start, end = widget_point(view, box.x, box.y), widget_point(view, box.x + box.w, box.y + box.h)
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=start)
    held = view.frame_index
    assert window.message == HOLD_NOTICE
    qtbot.wait(HOLD_MS)
    assert view.frame_index == held  # the picture held still while the video played on
    qtbot.mouseMove(view, (start + end) / 2)
    qtbot.mouseMove(view, end)
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=end)
    return held


def caught_up(message: str) -> int:
    found = re.search(r"caught up (\d+) frames", message)
    return int(found.group(1)) if found else 0


# -- drawing on a moving picture -----------------------------------------------------------------------------


def test_a_box_drawn_on_a_playing_video_starts_on_the_held_frame_and_catches_up(qtbot, tmp_path):
    session = LoggingSession()
    window = make_window(qtbot, lambda: session, at_frame_rate)
    window.open_source(str(write_video(tmp_path / "clip.avi", 150)))
    qtbot.waitUntil(lambda: window.last_update is not None and window.last_update.frame.index >= 5, timeout=WAIT_MS)

    box = Box(40, 100, 40, 50)
    held = draw_slowly(qtbot, window, box)
    qtbot.waitUntil(lambda: window.message.startswith("tracking from the frame you drew on"), timeout=WAIT_MS)
    assert [index for index, _ in session.starts] == [held]  # tracking began on the held frame
    assert session.starts[0][1].as_list() == pytest.approx(box.as_list(), abs=1.0)
    assert f"(frame {held + 1})" in window.message
    assert caught_up(window.message) >= 10  # 700 ms of a 30 fps video arrived while the button was down

    qtbot.waitUntil(lambda: window.last_update.frame.index > held + caught_up(window.message) + 3, timeout=WAIT_MS)
    # Every frame after the held one was tracked once, in order, none skipped: the tracker caught up.
    assert session.stepped == list(range(held + 1, held + 1 + len(session.stepped)))
    shown = window.last_update
    assert shown.result.box.x == pytest.approx(session.starts[-1][1].x + shown.frame.index - held)


def test_a_box_drawn_on_a_live_camera_starts_on_the_held_frame_and_goes_on_from_the_newest(qtbot):
    camera = FakeCamera(period_s=0.02)
    session = LoggingSession()
    window = make_window(qtbot, lambda: session, lambda spec: open_source(spec, capture_factory=camera.factory))
    window.open_source("webcam")
    qtbot.waitUntil(lambda: window.last_update is not None and window.last_update.frame.index >= 5, timeout=WAIT_MS)

    delivered = camera.delivered
    held = draw_slowly(qtbot, window, Box(20, 20, 30, 30))
    assert camera.delivered >= delivered + 10  # the camera went on while the picture held
    qtbot.waitUntil(lambda: window.message.startswith("tracking from the frame you drew on"), timeout=WAIT_MS)
    assert session.starts[-1][0] == held  # the template comes from the frame the box was drawn on
    qtbot.waitUntil(lambda: len(session.stepped) >= 3, timeout=WAIT_MS)
    # A live picture is not replayed: past the few frames tracked before the hold, it goes on from the newest.
    gaps = [b - a for a, b in itertools.pairwise([held, *session.stepped])]
    assert max(gaps) >= 10, gaps


def test_a_cancelled_drag_lets_the_picture_move_on_and_loses_no_frame(qtbot, tmp_path):
    session = LoggingSession()
    window = make_window(qtbot, lambda: session, at_frame_rate)
    window.open_source(str(write_video(tmp_path / "clip.avi", 150)), init_box=Box(40, 100, 40, 50))
    qtbot.waitUntil(lambda: window.last_update is not None and window.last_update.frame.index >= 5, timeout=WAIT_MS)

    view = window.view
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=widget_point(view, 100, 100))
    held = view.frame_index
    qtbot.wait(HOLD_MS)
    assert view.frame_index == held
    qtbot.keyClick(view, Qt.Key.Key_Escape)
    assert not view.dragging
    qtbot.waitUntil(lambda: view.frame_index > held + 10, timeout=WAIT_MS)
    assert session.stepped == list(range(1, 1 + len(session.stepped)))  # every frame tracked, in order


# -- the trail -----------------------------------------------------------------------------------------------


class ScriptedSession(FakeSession):
    """Follows a target whose box on each frame is ``script(frame_index)``: (box, the session's grounding answer)."""

    def __init__(self, script: Callable[[int], tuple[Box, GroundingResult | None]]) -> None:
        super().__init__()
        self.script = script

    def step(self, frame) -> SessionResult:
        if self.state is TrackState.IDLE:
            return super().step(frame)
        box, grounding = self.script(frame.index)
        return SessionResult(frame.index, frame.timestamp, box, 0.9, TrackState.TRACKING, 1.0, 1, grounding=grounding)


def centred(cx: float, cy: float, side: float = 60) -> Box:
    return Box(cx - side / 2, cy - side / 2, side, side)


def path_with_a_break(to: tuple[float, float], grounded: bool) -> Callable[[int], tuple[Box, GroundingResult | None]]:
    """Frames 0-8: right along y=60 to (102, 60); frame 9: at ``to`` (grounded: a query re-target, reported with
    the grounded box); frames 10-24: right from ``to`` by 6 px per frame."""

    def script(index: int) -> tuple[Box, GroundingResult | None]:
        if index < 9:
            return centred(70 + 4 * index, 60), None
        box = centred(to[0] + 6 * (index - 9), to[1])
        if index == 9 and grounded:
            return box, GroundingResult(candidates=(Candidate(box, 0.9),), presence=0.9)
        return box, None

    return script


def view_rgb(view: VideoView) -> np.ndarray:
    image = view.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    pixels = np.frombuffer(image.constBits().asarray(image.sizeInBytes()), np.uint8)
    return pixels.reshape(image.height(), image.bytesPerLine())[:, : image.width() * 3].reshape(-1, image.width(), 3)


def trail_drawn_at(view: VideoView, pixels: np.ndarray, x: float, y: float) -> bool:
    """The trail's green (tracking) within 2 px of frame point (x, y)."""
    point = widget_point(view, x, y)
    patch = pixels[point.y() - 2 : point.y() + 3, point.x() - 2 : point.x() + 3].astype(int)
    red, green, blue = patch[..., 0], patch[..., 1], patch[..., 2]
    return bool(np.any((green > 100) & (green > red + 50) & (green > blue + 50)))


@pytest.mark.parametrize(
    ("to", "grounded"),
    [((100, 100), True), ((100, 160), False)],
    ids=["query re-target to a box close by", "jump larger than the box"],
)
def test_the_trail_breaks_where_the_box_did_not_travel(qtbot, tmp_path, to, grounded):
    clip = tmp_path / "black.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 240))
    for _ in range(25):  # 10 fps: the window shows every frame, so the trail sees every position
        writer.write(np.zeros((240, 320, 3), np.uint8))
    writer.release()
    window = make_window(qtbot, lambda: ScriptedSession(path_with_a_break(to, grounded)), at_frame_rate)
    window.resize(640 + 40, 480 + 120)  # the frame at twice its size: a few pixels of slack either way
    window.open_source(str(clip), init_box=centred(70, 60))
    qtbot.waitUntil(lambda: window.message.startswith("end of"), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.last_update.frame.index == 24, timeout=WAIT_MS)

    pixels = view_rgb(window.view)
    assert trail_drawn_at(window.view, pixels, 86, 60)  # along the path before the break...
    assert trail_drawn_at(window.view, pixels, to[0] + 40, to[1])  # ...and after it
    midway = ((102 + to[0]) / 2, (60 + to[1]) / 2)
    assert not trail_drawn_at(window.view, pixels, *midway)  # but nothing joins the two
