"""Several targets in the window, driven like a user (offscreen): Shift+drag adds a target, a plain drag replaces
them all, the status bar counts them and shows LOST while the primary is lost, and a results text file begun with
one target keeps to it."""

from __future__ import annotations

import numpy as np
import pytest
from PyQt6.QtCore import QPoint, Qt

from app.commands import AddTarget, FrameUpdate, RecordTarget, SetTarget
from app.status_bar import StatusBar
from app.video_view import VideoView
from app.window import MainWindow
from tests.helpers import TINY_WEIGHTS, TINY_YAML
from tests.test_window import WAIT_MS, FakeSession, drag, make_window, read_lines, write_video
from tracker import Session, build_tracker
from tracker.types import Box, Frame, SessionResult, TargetResult, TrackState

SHIFT = Qt.KeyboardModifier.ShiftModifier


class MultiSession(FakeSession):
    """``FakeSession`` following several boxes, each 1 px further right per step, with ``Session.add_target``'s
    contract: a new id per target, the same as ``start`` when nothing is followed."""

    def __init__(self) -> None:
        super().__init__()
        self.boxes: dict[int, Box] = {}
        self.adds: list[tuple[int, Box]] = []
        self._next_id = 1

    def start(self, frame, box: Box) -> SessionResult:
        self.boxes = {}
        self.starts.append((frame.index, box))
        return self._follow(frame, box)

    def add_target(self, frame, box: Box) -> SessionResult:
        if not self.boxes:
            return self.start(frame, box)
        self.adds.append((frame.index, box))
        return self._follow(frame, box)

    def step(self, frame) -> SessionResult:
        if not self.boxes:
            return SessionResult(frame.index, frame.timestamp, None, 0.0, TrackState.IDLE)
        self.boxes = {i: Box(b.x + 1, b.y, b.w, b.h) for i, b in self.boxes.items()}
        return self._report(frame, 0.9)

    def reset(self) -> None:
        super().reset()
        self.boxes = {}

    def _follow(self, frame, box: Box) -> SessionResult:
        self.boxes[self._next_id] = box
        self._next_id += 1
        self.state = TrackState.TRACKING
        return self._report(frame, 1.0)

    def _report(self, frame, score: float) -> SessionResult:
        targets = tuple(TargetResult(i, b, score, TrackState.TRACKING, b) for i, b in self.boxes.items())
        first = targets[0]
        return SessionResult(
            frame.index, frame.timestamp, first.box, score, TrackState.TRACKING, 0.1, first.target_id,
            targets=targets, last_seen=first.box,
        )  # fmt: skip


def shift_drag(qtbot, view: VideoView, box: Box) -> None:
    """``drag`` with Shift held, as a user adding a target would."""
    viewport = view.viewport()
    x1, y1 = viewport.to_widget(box.x, box.y)
    x2, y2 = viewport.to_widget(box.x + box.w, box.y + box.h)
    start, end = QPoint(round(x1), round(y1)), QPoint(round(x2), round(y2))
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, SHIFT, start)
    qtbot.mouseMove(view, (start + end) / 2)
    qtbot.mouseMove(view, end)
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, SHIFT, end)


def sent_commands(window: MainWindow) -> list[object]:
    """Every command the window sends its worker from now on (still delivered)."""
    sent: list[object] = []
    send = window.worker.send
    window.worker.send = lambda command: sent.append(command) or send(command)
    return sent


def paused_on_a_frame(qtbot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: window.last_update is not None, timeout=WAIT_MS)
    window.set_paused(True)
    qtbot.waitUntil(lambda: window.last_update.paused, timeout=WAIT_MS)


def step_frames(qtbot, window: MainWindow, count: int) -> None:
    for _ in range(count):
        index = window.last_update.frame.index
        qtbot.keyClick(window.view, Qt.Key.Key_S)
        qtbot.waitUntil(lambda i=index: window.last_update.frame.index == i + 1, timeout=WAIT_MS)


def target_ids(window: MainWindow) -> list[int]:
    return [t.target_id for t in window.last_update.result.targets]


@pytest.fixture
def video(tmp_path):
    return write_video(tmp_path / "square.avi", 60)


def test_shift_drag_adds_a_target_and_a_plain_drag_replaces_them_all(qtbot, video):
    session = MultiSession()
    window = make_window(qtbot, lambda: session)
    window.open_source(str(video))
    paused_on_a_frame(qtbot, window)
    sent = sent_commands(window)

    drag(qtbot, window.view, Box(40, 100, 40, 50))
    qtbot.waitUntil(lambda: target_ids(window) == [1], timeout=WAIT_MS)
    assert window.status.targets_label.isHidden()  # one target: nothing to count

    shift_drag(qtbot, window.view, Box(200, 20, 60, 30))
    qtbot.waitUntil(lambda: target_ids(window) == [1, 2], timeout=WAIT_MS)
    assert [type(c) for c in sent if isinstance(c, SetTarget | AddTarget)] == [SetTarget, AddTarget]
    assert len(session.starts) == 1 and session.adds[0][1].as_list() == pytest.approx([200, 20, 60, 30], abs=1.0)
    assert not window.status.targets_label.isHidden()
    assert window.status.targets_label.text() == "2 targets: 2 tracking"
    assert window.status.state_label.text() == "TRACKING"

    step_frames(qtbot, window, 2)
    assert target_ids(window) == [1, 2]  # both followed on

    drag(qtbot, window.view, Box(100, 60, 40, 40))  # no Shift: start over with this one alone
    qtbot.waitUntil(lambda: target_ids(window) == [3], timeout=WAIT_MS)
    assert len(session.starts) == 2 and window.status.targets_label.isHidden()


def test_a_text_file_begun_with_one_target_keeps_to_it_and_says_so(qtbot, video, tmp_path):
    session = MultiSession()
    window = make_window(qtbot, lambda: session)
    notices: list[str] = []
    window.worker.notice.connect(notices.append)
    window.open_source(str(video), init_box=Box(40, 100, 40, 50))
    paused_on_a_frame(qtbot, window)
    results = tmp_path / "one.txt"
    window.start_recording(RecordTarget(results=results))
    qtbot.waitUntil(lambda: window.recording, timeout=WAIT_MS)
    step_frames(qtbot, window, 10)  # some frames are written with one target

    shift_drag(qtbot, window.view, Box(200, 20, 60, 30))
    qtbot.waitUntil(lambda: target_ids(window) == [1, 2], timeout=WAIT_MS)
    step_frames(qtbot, window, 2)
    window.stop_recording()
    qtbot.waitUntil(lambda: not window.recording, timeout=WAIT_MS)

    lines = read_lines(results)
    assert len(lines) == 13 and all(len(line) == 4 for line in lines)  # x,y,w,h of the primary on every frame
    assert sum("goes on with the first only" in n for n in notices) == 1


def test_shift_drag_with_the_real_session_follows_two_targets(qtbot, video):
    window = make_window(qtbot, lambda: Session(build_tracker(TINY_YAML, TINY_WEIGHTS, device="cpu")))
    window.open_source(str(video), init_box=Box(40, 100, 40, 50))
    paused_on_a_frame(qtbot, window)
    qtbot.waitUntil(lambda: target_ids(window) == [1], timeout=WAIT_MS)

    shift_drag(qtbot, window.view, Box(200, 20, 60, 30))
    qtbot.waitUntil(lambda: len(target_ids(window)) == 2, timeout=WAIT_MS)
    step_frames(qtbot, window, 2)
    result = window.last_update.result
    assert target_ids(window) == [1, 2] and result.target_id == 1
    assert window.status.targets_label.text().startswith("2 targets: ")


def test_status_bar_shows_lost_while_the_primary_is_lost_and_counts_targets(qtbot):
    bar = StatusBar()
    qtbot.addWidget(bar)
    seen = Box(10, 10, 20, 20)
    targets = (
        TargetResult(1, None, 0.1, TrackState.LOST, seen),
        TargetResult(2, Box(50, 10, 20, 20), 0.9, TrackState.TRACKING),
        TargetResult(3, Box(90, 10, 20, 20), 0.6, TrackState.RECOVERED),
    )
    lost = SessionResult(3, 0.0, None, 0.1, TrackState.LOST, target_id=1, targets=targets, last_seen=seen)
    frame = Frame(3, 0.0, np.zeros((48, 64, 3), np.uint8))
    bar.show_figures(FrameUpdate(frame, lost, 30.0, 20.0, 0, "running"), 12.0, None)
    assert bar.state_label.text() == "LOST"
    assert bar.targets_label.text() == "3 targets: 1 tracking, 1 recovered, 1 lost"
    assert not bar.targets_label.isHidden()
    one = SessionResult(4, 0.0, None, 0.1, TrackState.LOST, target_id=1, targets=targets[:1], last_seen=seen)
    bar.show_figures(FrameUpdate(frame, one, 30.0, 20.0, 0, "running"), 12.0, None)
    assert bar.state_label.text() == "LOST" and bar.targets_label.isHidden()
