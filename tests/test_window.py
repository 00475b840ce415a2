"""The Qt window driven like a user (offscreen): box drawing, tracking, controls, recording, threads."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from PyQt6.QtCore import QPoint, Qt, QTimer
from PyQt6.QtWidgets import QApplication, QFileDialog, QInputDialog

from app.commands import RecordTarget
from app.options import AppOptions
from app.session_driver import GROUNDING_MISSING
from app.sources import open_source
from app.video_view import VideoView, Viewport
from app.window import MainWindow, run_gui
from tests.helpers import SHARED, TINY_WEIGHTS, TINY_YAML
from tracker import Box, CheckpointError, InputError, Session, SessionResult, TrackState, build_tracker

CROSSING = SHARED / "data" / "sequences" / "Crossing"
WAIT_MS = 30_000  # generous: the CI machine may be shared; waits end as soon as the condition holds


# -- helpers -------------------------------------------------------------------------------------------------


class FakeSession:
    """Stands in for ``tracker.Session``: the box moves 1 px right per step; ``delay_s`` is a slow model."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.state = TrackState.IDLE
        self.box: Box | None = None
        self.target_id: int | None = None
        self.starts: list[tuple[int, Box]] = []

    def start(self, frame, box: Box) -> SessionResult:
        self.box, self.state = box, TrackState.TRACKING
        self.target_id = (self.target_id or 0) + 1
        self.starts.append((frame.index, box))
        return self._result(frame, 1.0, 0.1)

    def step(self, frame) -> SessionResult:
        if self.state is TrackState.IDLE:
            return SessionResult(frame.index, frame.timestamp, None, 0.0, TrackState.IDLE)
        begin = time.perf_counter()
        time.sleep(self.delay_s)
        self.box = Box(self.box.x + 1, self.box.y, self.box.w, self.box.h)
        return self._result(frame, 0.9, (time.perf_counter() - begin) * 1e3)

    def reset(self) -> None:
        self.state, self.box = TrackState.IDLE, None

    def _result(self, frame, score: float, elapsed_ms: float) -> SessionResult:
        return SessionResult(frame.index, frame.timestamp, self.box, score, self.state, elapsed_ms, self.target_id)


def write_video(path: Path, frames: int, size: tuple[int, int] = (320, 240), fps: float = 30.0) -> Path:
    """A small MJPG video: a bright square moving right on a dark, textured background."""
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    background = np.random.default_rng(0).integers(0, 60, (height, width, 3), dtype=np.uint8)
    for i in range(frames):
        image = background.copy()
        x = 40 + 3 * i
        cv2.rectangle(image, (x, 100), (x + 40, 150), (40, 220, 250), cv2.FILLED)
        writer.write(image)
    writer.release()
    return path


def as_fast_as_possible(spec: str):
    return open_source(spec, realtime=False)


def at_frame_rate(spec: str):
    return open_source(spec, realtime=True)


def make_window(qtbot, session_factory, source_factory=as_fast_as_possible, **kwargs) -> MainWindow:
    window = MainWindow(session_factory, source_factory, **kwargs)
    qtbot.addWidget(window)  # closed at teardown: the worker is stopped there too
    window.show()
    qtbot.waitExposed(window)
    qtbot.waitUntil(window.isActiveWindow)  # keyboard shortcuts only reach the active window
    return window


def drag(qtbot, view: VideoView, box: Box) -> None:
    """Press, move and release the left button over ``box`` (frame pixels) as a user would."""
    viewport = view.viewport()
    x1, y1 = viewport.to_widget(box.x, box.y)
    x2, y2 = viewport.to_widget(box.x + box.w, box.y + box.h)
    start, end = QPoint(round(x1), round(y1)), QPoint(round(x2), round(y2))
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(view, (start + end) / 2)
    qtbot.mouseMove(view, end)
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=end)


def read_lines(path: Path) -> list[list[float]]:
    return [[float(v) for v in line.split(",")] for line in path.read_text().splitlines()]


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "tracking worker" or t.name.startswith("capture ")]


@pytest.fixture
def video(tmp_path) -> Path:
    return write_video(tmp_path / "square.avi", 60)


# -- coordinates ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("widget", "scale", "left", "top"),
    [((800, 400), 2.0, 0.0, 0.0), ((400, 400), 1.0, 0.0, 100.0), ((1000, 300), 1.5, 200.0, 0.0)],
)
def test_viewport_letterboxes_the_frame(widget, scale, left, top):
    viewport = Viewport.fit(400, 200, *widget)
    assert (viewport.scale, viewport.left, viewport.top) == pytest.approx((scale, left, top))
    assert viewport.to_frame(left, top) == pytest.approx((0, 0))
    assert viewport.to_frame(left + 400 * scale, top + 200 * scale) == pytest.approx((400, 200))
    assert viewport.to_frame(*viewport.to_widget(123.5, 77.25)) == pytest.approx((123.5, 77.25))
    assert viewport.to_frame(-50, 10_000) == (0.0, 200.0)  # outside the picture clamps to its edge


@pytest.mark.parametrize(
    ("widget", "press", "release"),
    [
        # frame 400x200; each case drags over frame pixels (50, 50)-(150, 100), worked out by hand
        ((800, 400), (100, 100), (300, 200)),  # scale 2, no bars
        ((400, 400), (50, 150), (150, 200)),  # scale 1, 100 px bars above and below
        ((1000, 300), (275, 75), (425, 150)),  # scale 1.5, 200 px bars left and right
    ],
)
def test_drag_gives_a_box_in_frame_pixels_whatever_the_widget_size(qtbot, widget, press, release):
    view = VideoView()
    qtbot.addWidget(view)
    view.resize(*widget)
    view.show()
    qtbot.waitExposed(view)
    assert (view.width(), view.height()) == widget
    frame = np.zeros((200, 400, 3), np.uint8)
    view.show_frame(frame, SessionResult(0, 0.0, None, 0.0, TrackState.IDLE), None)
    with qtbot.waitSignal(view.box_drawn, timeout=2000) as drawn:
        qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=QPoint(*press))
        qtbot.mouseMove(view, QPoint(*release))
        assert view.dragging
        qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=QPoint(*release))
    box = drawn.args[0]
    assert box.as_list() == pytest.approx([50, 50, 100, 50], abs=1e-6)
    assert not view.dragging


def test_a_click_or_a_drag_beyond_the_frame_is_handled(qtbot):
    view = VideoView()
    qtbot.addWidget(view)
    view.resize(400, 400)  # frame 400x200 at scale 1, 100 px bars above and below
    view.show()
    qtbot.waitExposed(view)
    idle = SessionResult(0, 0.0, None, 0.0, TrackState.IDLE)
    view.show_frame(np.zeros((200, 400, 3), np.uint8), idle, None)
    with qtbot.assertNotEmitted(view.box_drawn, wait=100):  # a click is not a box
        qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=QPoint(200, 200))
    with qtbot.waitSignal(view.box_drawn, timeout=2000) as drawn:  # dragged into the bar: clamped to the edge
        qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=QPoint(300, 250))
        qtbot.mouseMove(view, QPoint(390, 390))
        qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=QPoint(390, 390))
    assert drawn.args[0].as_list() == pytest.approx([300, 150, 90, 50])


# -- tracking with the real (tiny) model ---------------------------------------------------------------------


@pytest.mark.skipif(not (CROSSING / "video.mp4").is_file(), reason="shared Crossing sequence not available")
def test_drag_on_a_paused_frame_tracks_the_person_and_records_every_frame(qtbot, tmp_path):
    results = tmp_path / "crossing.txt"
    window = make_window(qtbot, lambda: Session(build_tracker(TINY_YAML, TINY_WEIGHTS, device="cpu")), at_frame_rate)
    seen: list[SessionResult] = []
    window.worker.frame_ready.connect(lambda update: seen.append(update.result))
    window.open_source(str(CROSSING / "video.mp4"), record=RecordTarget(results=results))
    qtbot.waitUntil(lambda: window.last_update is not None, timeout=WAIT_MS)

    qtbot.keyClick(window.view, Qt.Key.Key_Space)  # pause
    assert window.paused
    qtbot.waitUntil(lambda: window.last_update.paused, timeout=WAIT_MS)  # showing the frame it paused on
    paused_at = window.last_update.frame.index
    qtbot.wait(200)
    assert window.last_update.frame.index == paused_at  # nothing moves while paused

    truth = Box.from_xywh(
        (CROSSING / "groundtruth.txt").read_text().splitlines()[paused_at].replace("\t", ",").split(",")
    )
    drag(qtbot, window.view, truth)
    qtbot.waitUntil(lambda: window.last_update.result.state is TrackState.TRACKING, timeout=WAIT_MS)
    started = window.last_update.result
    assert started.frame_index == paused_at  # tracking starts on the frame the box was drawn on
    assert started.box.as_list() == pytest.approx(truth.as_list(), abs=1.0)

    qtbot.keyClick(window.view, Qt.Key.Key_Space)  # resume
    assert not window.paused
    qtbot.waitUntil(lambda: window.last_update.frame.index >= paused_at + 3, timeout=WAIT_MS)
    tracked = [r for r in seen if r.frame_index > paused_at and r.state is not TrackState.IDLE]
    assert len({tuple(r.box.as_list()) for r in tracked}) >= 2  # the box follows the frames
    assert window.status.track_label.text().startswith("track ") and "–" not in window.status.track_label.text()

    window.close()
    assert not window.worker.running and not worker_threads()
    lines = read_lines(results)
    assert len(lines) == window.worker.frames_processed  # one line per frame, written by close
    assert all(math.isnan(v) for line in lines[:paused_at] for v in line)  # before the box: no target
    assert lines[paused_at] == pytest.approx(truth.as_list(), abs=1.0)
    assert all(math.isfinite(v) for line in lines[paused_at:] for v in line)


def test_run_gui_tracks_from_the_init_box_and_saves_results(qtbot, tmp_path):
    clip = write_video(tmp_path / "clip.avi", 12)
    results = tmp_path / "results.txt"
    options = AppOptions(
        source=str(clip),
        init_box=Box(40, 100, 40, 50),
        config=str(TINY_YAML),
        weights=str(TINY_WEIGHTS),
        device="cpu",
        save_results=results,
        max_frames=6,
    )
    deadline = time.monotonic() + 30

    def close_when_played() -> None:
        windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        done = windows and windows[0].message.startswith("stopped after 6 frames")
        if windows and (done or time.monotonic() > deadline):
            windows[0].close()
        else:
            QTimer.singleShot(50, close_when_played)

    QTimer.singleShot(50, close_when_played)
    assert run_gui(options) == 0
    assert not worker_threads()
    lines = read_lines(results)
    assert len(lines) == 6  # --max-frames ends the source; results complete
    assert lines[0] == [40, 100, 40, 50]  # the first line is the init box
    # every line a box, or no box at all on a frame the target was reported lost
    assert all(all(map(math.isfinite, line)) or all(map(math.isnan, line)) for line in lines)


# -- responsiveness and threads ------------------------------------------------------------------------------


def test_gui_stays_responsive_while_the_tracker_takes_300_ms_per_frame(qtbot, video):
    window = make_window(qtbot, lambda: FakeSession(delay_s=0.3))
    window.open_source(str(video))
    qtbot.waitUntil(lambda: window.last_update is not None, timeout=WAIT_MS)
    drag(qtbot, window.view, Box(40, 100, 40, 50))
    qtbot.waitUntil(lambda: window.last_update.result.state is TrackState.TRACKING, timeout=WAIT_MS)

    ticks: list[float] = []
    steps: list[float] = []
    window.worker.frame_ready.connect(lambda update: steps.append(update.result.elapsed_ms))
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(20)
    qtbot.wait(1500)
    timer.stop()
    gaps = np.diff(ticks) * 1e3
    assert len(steps) >= 3 and min(steps) >= 290  # the worker really was busy the whole time
    assert len(ticks) > 30 and gaps.max() < 100, f"event loop stalled {gaps.max():.0f} ms"


def test_frames_the_gui_could_not_show_are_tracked_and_counted_as_dropped(qtbot, tmp_path):
    clip = write_video(tmp_path / "long.avi", 150)
    window = make_window(qtbot, FakeSession)
    window.open_source(str(clip))
    qtbot.waitUntil(lambda: window.last_update is not None, timeout=WAIT_MS)
    time.sleep(0.5)  # the GUI thread is blocked: the worker must not pile up pictures for it
    qtbot.waitUntil(lambda: window.message.startswith("end of"), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.last_update.frame.index == 149, timeout=WAIT_MS)  # the last frame shows
    assert window.worker.frames_processed == 150  # every frame was tracked...
    assert window.last_update.dropped > 0  # ...but not every one shown; a file source itself drops nothing


def test_closing_the_window_stops_the_worker_and_the_capture_thread(qtbot, video):
    before = set(threading.enumerate())
    window = make_window(qtbot, FakeSession, at_frame_rate)
    window.open_source(str(video))
    qtbot.waitUntil(lambda: window.last_update is not None, timeout=WAIT_MS)
    assert len(worker_threads()) == 2  # tracking worker + capture thread
    window.close()
    assert set(threading.enumerate()) <= before
    assert not worker_threads()


# -- controls ------------------------------------------------------------------------------------------------


def test_pause_step_and_reset(qtbot, video):
    session = FakeSession()
    window = make_window(qtbot, lambda: session)
    window.open_source(str(video))
    qtbot.waitUntil(lambda: window.last_update is not None, timeout=WAIT_MS)
    window.set_paused(True)
    qtbot.waitUntil(lambda: window.last_update.paused, timeout=WAIT_MS)
    index = window.last_update.frame.index
    assert window.status.frame_label.text() == f"frame {index + 1}/60 (paused)"
    qtbot.wait(200)
    assert window.last_update.frame.index == index

    drag(qtbot, window.view, Box(40, 100, 40, 50))  # a box on the paused frame
    qtbot.waitUntil(lambda: window.last_update.result.state is TrackState.TRACKING, timeout=WAIT_MS)
    assert session.starts[-1][0] == index and window.last_update.frame.index == index

    for key in (Qt.Key.Key_S, Qt.Key.Key_Right):  # single steps, still paused
        index += 1
        qtbot.keyClick(window.view, key)
        qtbot.waitUntil(lambda i=index: window.last_update.frame.index == i, timeout=WAIT_MS)
        start_index, start_box = session.starts[-1]
        assert window.last_update.result.box.x == pytest.approx(start_box.x + index - start_index)
    qtbot.wait(200)
    assert window.last_update.frame.index == index and window.paused

    qtbot.keyClick(window.view, Qt.Key.Key_R)  # reset: nothing followed any more
    qtbot.waitUntil(lambda: window.last_update.result.state is TrackState.IDLE, timeout=WAIT_MS)
    assert window.last_update.result.box is None and window.status.state_label.text() == "IDLE"

    assert window.status.latency_label.text() == "latency – ms"  # nothing is late while paused
    qtbot.wait(1000)
    latencies: list[float | None] = []  # connected after the window's slot, so it sees what the window computed
    window.worker.frame_ready.connect(lambda _update: latencies.append(window.latency_ms))
    qtbot.keyClick(window.view, Qt.Key.Key_Space)  # play again
    qtbot.waitUntil(lambda: window.last_update.frame.index > index + 2, timeout=WAIT_MS)
    # The first frames after the pause were read ahead over a second ago; the pause is not latency.
    assert latencies[0] is not None and latencies[0] < 1000


def test_drag_again_retargets(qtbot, video):
    session = FakeSession()
    window = make_window(qtbot, lambda: session, at_frame_rate)
    window.open_source(str(video))
    qtbot.waitUntil(lambda: window.last_update is not None, timeout=WAIT_MS)
    drag(qtbot, window.view, Box(40, 100, 40, 50))
    qtbot.waitUntil(lambda: window.last_update.result.target_id == 1, timeout=WAIT_MS)
    drag(qtbot, window.view, Box(200, 20, 60, 30))
    qtbot.waitUntil(lambda: window.last_update.result.target_id == 2, timeout=WAIT_MS)
    assert session.starts[-1][1].as_list() == pytest.approx([200, 20, 60, 30], abs=1.0)


def test_query_field_explains_that_grounding_is_not_installed(qtbot, video):
    window = make_window(qtbot, lambda: Session(build_tracker(TINY_YAML, TINY_WEIGHTS, device="cpu")))
    window.open_source(str(video))
    window.query_edit.setFocus()
    qtbot.keyClicks(window.query_edit, "the yellow square")
    assert window.query_edit.text() == "the yellow square"  # typing S or R there is text, not a shortcut
    qtbot.keyClick(window.query_edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: window.message == GROUNDING_MISSING, timeout=WAIT_MS)
    assert window.worker.running


def test_recording_on_and_off_writes_complete_files(qtbot, tmp_path):
    clip = write_video(tmp_path / "clip.avi", 60)
    window = make_window(qtbot, FakeSession, at_frame_rate, recordings_dir=tmp_path / "recordings")
    window.open_source(str(clip))
    qtbot.waitUntil(lambda: window.last_update is not None, timeout=WAIT_MS)
    drag(qtbot, window.view, Box(40, 100, 40, 50))
    qtbot.keyClick(window, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.recording, timeout=WAIT_MS)
    assert window.status.record_label.isVisible()
    qtbot.wait(400)
    qtbot.keyClick(window, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not window.recording, timeout=WAIT_MS)
    written = int(window.message.split()[1])  # "saved N frames to ..."
    assert written >= 5
    texts = list((tmp_path / "recordings").glob("*_clip.txt"))
    videos = list((tmp_path / "recordings").glob("*_clip.mp4"))
    assert len(texts) == 1 and len(videos) == 1
    assert len(read_lines(texts[0])) == written
    capture = cv2.VideoCapture(str(videos[0]))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == written
    capture.release()


# -- errors stay in the window -------------------------------------------------------------------------------


def test_a_source_that_cannot_be_opened_is_reported_and_another_can_be_opened(qtbot, tmp_path, video):
    window = make_window(qtbot, FakeSession)
    window.open_source(str(tmp_path / "missing.mp4"))
    qtbot.waitUntil(lambda: "does not exist" in window.message, timeout=WAIT_MS)
    assert window.status.message_label.styleSheet()  # shown as an error
    assert window.view.frame_size is None
    window.open_source(str(video))
    qtbot.waitUntil(lambda: window.last_update is not None, timeout=WAIT_MS)
    assert window.view.frame_size == (320, 240)


def test_a_model_that_cannot_be_loaded_is_reported_and_video_still_plays(qtbot, video):
    def broken():
        raise CheckpointError("no bundled model is installed yet; pass --weights FILE")

    window = make_window(qtbot, broken, at_frame_rate)
    qtbot.waitUntil(lambda: "no bundled model" in window.message, timeout=WAIT_MS)
    window.open_source(str(video))
    qtbot.waitUntil(lambda: window.last_update is not None, timeout=WAIT_MS)
    assert "no bundled model" in window.message  # still said once the video plays
    drag(qtbot, window.view, Box(40, 100, 40, 50))
    qtbot.waitUntil(lambda: "because the model could not be loaded" in window.message, timeout=WAIT_MS)
    assert window.last_update.result.state is TrackState.IDLE and window.worker.running


def test_a_model_running_on_a_fallback_backend_says_so_and_still_tracks(qtbot, video):
    def fallback():
        session = FakeSession()
        note = "backend auto: ONNX Runtime unavailable, running eager"
        session.tracker = SimpleNamespace(network=SimpleNamespace(note=note))
        return session

    window = make_window(qtbot, fallback, at_frame_rate)
    qtbot.waitUntil(lambda: "running eager" in window.message, timeout=WAIT_MS)
    window.open_source(str(video))
    qtbot.waitUntil(lambda: window.last_update is not None, timeout=WAIT_MS)
    assert "playing" in window.message and "running eager" in window.message
    drag(qtbot, window.view, Box(40, 100, 40, 50))
    qtbot.waitUntil(lambda: window.last_update.result.state is TrackState.TRACKING, timeout=WAIT_MS)


def test_open_shortcuts_ask_and_open_file_url_and_camera(qtbot, monkeypatch, video):
    asked: list[str] = []

    def only_files(spec: str):
        asked.append(spec)
        if spec != str(video):
            raise InputError(f"cannot open {spec}; check it")
        return open_source(spec)

    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args, **kwargs: (str(video), ""))
    monkeypatch.setattr(QInputDialog, "getText", lambda *args, **kwargs: ("rtsp://cam.local/live", True))
    monkeypatch.setattr(QInputDialog, "getInt", lambda *args, **kwargs: (3, True))
    window = make_window(qtbot, FakeSession, only_files)
    ctrl = Qt.KeyboardModifier.ControlModifier
    qtbot.keyClick(window, Qt.Key.Key_O, ctrl)
    qtbot.waitUntil(lambda: window.last_update is not None, timeout=WAIT_MS)
    assert window.windowTitle().startswith("square.avi")
    qtbot.keyClick(window, Qt.Key.Key_U, ctrl)
    qtbot.waitUntil(lambda: window.message == "cannot open rtsp://cam.local/live; check it", timeout=WAIT_MS)
    qtbot.keyClick(window, Qt.Key.Key_C, ctrl | Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: window.message == "cannot open 3; check it", timeout=WAIT_MS)
    assert asked == [str(video), "rtsp://cam.local/live", "3"]
