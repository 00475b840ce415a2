"""The window under bad input and faults (offscreen, driven like a user): every problem is a message in the
window, which stays usable; nothing is printed as a traceback, and nothing recorded is lost."""

from __future__ import annotations

import hashlib
import math
import os
import signal
import threading
import time

import cv2
import pytest
import torch
from PyQt6.QtCore import Qt, QTimer
from PyQt6.QtWidgets import QApplication

from app import live_source
from app.commands import RecordTarget
from app.options import AppOptions
from app.session_driver import GROUNDING_MISSING
from app.sources import open_source
from app.window import MainWindow, run_gui
from tests.helpers import ROOT
from tests.test_reliability_common import (
    FakeCamera,
    one_torch_thread,  # noqa: F401 (an autouse fixture)
    scene,
    write_video,
)
from tracker import Box, Session, TrackState, build_grounder, build_tracker
from tracker.models.ostrack import OSTrack

WAIT_MS = 30_000  # generous for a shared machine; waits end as soon as the condition holds
GROUNDING_TINY = ROOT / "tests" / "data" / "grounding_tiny.yaml"


@pytest.fixture
def clip(tmp_path):
    return write_video(tmp_path / "clip.avi", 150)  # six seconds at 25 fps: long enough to act on while it plays


def make_window(qtbot, session_factory, source_factory=lambda spec: open_source(spec, realtime=True)):
    window = MainWindow(session_factory, source_factory)
    qtbot.addWidget(window)  # closed at teardown, which stops the worker
    window.show()
    qtbot.waitExposed(window)
    return window


def no_traceback(capfd) -> None:
    assert "Traceback" not in capfd.readouterr().err


# -- sources that cannot be used -----------------------------------------------------------------------------


def test_unusable_sources_are_messages_and_a_good_one_still_opens(qtbot, tmp_path, clip, capfd):
    whole = write_video(tmp_path / "whole.mp4", 10)
    data = whole.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty").mkdir()
    window = make_window(qtbot, lambda: None)
    cases = {
        str(tmp_path / "cut.mp4"): f"cannot open {tmp_path / 'cut.mp4'} as a video",
        str(tmp_path / "empty"): "has no images",
        "gopher://127.0.0.1/x": "unsupported URL scheme 'gopher://'",
        "rtsp://127.0.0.1:9/x": "cannot open rtsp://127.0.0.1:9/x; check the address",
        "57": "cannot open webcam 57",
    }
    for spec, expected in cases.items():
        window.open_source(spec)
        qtbot.waitUntil(lambda expected=expected: expected in window.message, timeout=WAIT_MS)
        assert "\n" not in window.message and window.worker.running
    window.open_source(str(clip))
    qtbot.waitUntil(lambda: window.last_update is not None, timeout=WAIT_MS)
    no_traceback(capfd)


# -- the query field -----------------------------------------------------------------------------------------


def type_query(qtbot, window, text: str) -> None:
    window.query_edit.setFocus()
    window.query_edit.setText(text)  # typing 10,000 keys one by one would only test Qt
    qtbot.keyClick(window.query_edit, Qt.Key.Key_Return)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "type what to look for, then press Enter"),
        (" \t ", "type what to look for, then press Enter"),
        ("boat " * 2000, GROUNDING_MISSING),
        ("белая лодка 白い船", GROUNDING_MISSING),
    ],
    ids=["empty", "whitespace", "10000 characters", "non-Latin"],
)
def test_queries_without_a_grounding_model(qtbot, micro, clip, text, expected):
    window = make_window(qtbot, lambda: Session(build_tracker(None, micro, device="cpu")))
    window.open_source(str(clip))
    qtbot.waitUntil(lambda: window.last_update is not None, timeout=WAIT_MS)
    width = window.width()
    type_query(qtbot, window, text)
    qtbot.waitUntil(lambda: window.message == expected, timeout=WAIT_MS)
    assert window.worker.running and window.width() == width


def grounding_session(micro):
    torch.manual_seed(0)
    tracker = build_tracker(None, micro, device="cpu")
    return Session(tracker, grounder=build_grounder(GROUNDING_TINY, device="cpu"))


@pytest.mark.parametrize("text", ["boat " * 2000, "белая лодка 白い船"], ids=["10000 characters", "non-Latin"])
def test_long_and_non_latin_queries_with_a_grounder(qtbot, micro, clip, text):
    window = make_window(qtbot, lambda: grounding_session(micro))
    window.open_source(str(clip))
    qtbot.waitUntil(lambda: window.last_update is not None, timeout=WAIT_MS)
    width = window.width()
    type_query(qtbot, window, text)
    used = " ".join(text.split())
    qtbot.waitUntil(lambda: window.message == f'looking for "{used}"', timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.last_update.result.query == used, timeout=WAIT_MS)
    start = window.last_update.frame.index
    qtbot.waitUntil(lambda: window.last_update.frame.index >= start + 3, timeout=WAIT_MS)  # frames go on
    assert window.last_update.result.state in (TrackState.GROUNDING, TrackState.TRACKING, TrackState.LOST)
    assert window.worker.running and window.width() == width  # a long message does not stretch the window


# -- faults while tracking -----------------------------------------------------------------------------------


def test_out_of_memory_stops_tracking_with_a_message_and_the_video_plays_on(qtbot, micro, clip, monkeypatch, capfd):
    original = OSTrack.forward_embedded
    steps = []

    def forward(self, *args, **kwargs):
        steps.append(1)
        if len(steps) == 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(OSTrack, "forward_embedded", forward)
    window = make_window(qtbot, lambda: Session(build_tracker(None, micro, device="cpu", backend="eager")))
    window.open_source(str(clip))
    qtbot.waitUntil(lambda: window.last_update is not None, timeout=WAIT_MS)
    window.set_target(Box(20, 40, 30, 30))
    expected = "tracking stopped: the computer ran out of memory while tracking; close other programs"
    qtbot.waitUntil(lambda: window.message == expected, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.last_update.result.state is TrackState.IDLE, timeout=WAIT_MS)
    shown = window.last_update.frame.index
    qtbot.waitUntil(lambda: window.last_update.frame.index > shown, timeout=WAIT_MS)  # the video plays on
    window.set_target(Box(20, 40, 30, 30))  # and tracking can start again
    qtbot.waitUntil(lambda: window.last_update.result.state is TrackState.TRACKING, timeout=WAIT_MS)
    no_traceback(capfd)


def test_camera_outage_in_the_window(qtbot, monkeypatch):
    monkeypatch.setattr(live_source, "BACKOFF_FIRST_S", 0.05)
    monkeypatch.setattr(live_source, "BACKOFF_MAX_S", 0.2)
    camera = FakeCamera(period_s=0.02)
    window = make_window(qtbot, lambda: None, lambda spec: open_source(spec, capture_factory=camera.factory))
    window.open_source("webcam")
    qtbot.waitUntil(lambda: window.last_update is not None, timeout=WAIT_MS)
    camera.plugged.clear()
    qtbot.waitUntil(lambda: "webcam 0; reconnecting in" in window.message, timeout=WAIT_MS)
    before = window.last_update.frame.index
    camera.plugged.set()
    qtbot.waitUntil(lambda: window.message == "reconnected to webcam 0", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.last_update.frame.index > before + 3, timeout=WAIT_MS)
    assert window.worker.running
    camera.size = (64, 48)  # and the camera switches to a smaller mode
    qtbot.waitUntil(lambda: window.view.frame_size == (64, 48), timeout=WAIT_MS)
    assert window.worker.running


def test_recording_onto_the_video_being_played_is_refused(qtbot, tmp_path, clip):
    before = hashlib.sha256(clip.read_bytes()).hexdigest()
    window = make_window(qtbot, lambda: None)
    window.open_source(str(clip))
    qtbot.waitUntil(lambda: window.last_update is not None, timeout=WAIT_MS)
    window.start_recording(RecordTarget(tmp_path / "clip.txt", clip))  # "Record to…" clip.txt -> video clip.avi
    qtbot.waitUntil(lambda: "is the source being tracked" in window.message, timeout=WAIT_MS)
    assert not window.recording and window.worker.running
    window.close()
    assert hashlib.sha256(clip.read_bytes()).hexdigest() == before
    assert not (tmp_path / "clip.txt").exists()


def test_image_folder_of_changing_sizes_plays_through(qtbot, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    sizes = [(160, 120), (80, 60), (640, 480), (33, 17)]
    for i, size in enumerate(sizes):
        cv2.imwrite(str(folder / f"{i:04d}.png"), scene(i, size))
    window = make_window(qtbot, lambda: None, lambda spec: open_source(spec))
    window.open_source(str(folder))
    qtbot.waitUntil(lambda: window.message.startswith("end of"), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.last_update.frame.index == 3, timeout=WAIT_MS)
    assert window.view.frame_size == (33, 17) and window.worker.running


# -- signals -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_closes_the_window_with_complete_files_and_the_cli_exit_code(qtbot, tmp_path, micro, sig, code):
    clip = write_video(tmp_path / "clip.avi", 150)
    results, video = tmp_path / "boxes.txt", tmp_path / "tracked.mp4"
    options = AppOptions(
        source=str(clip),
        init_box=Box(20, 40, 30, 30),
        weights=str(micro),
        device="cpu",
        save_results=results,
        save_video=video,
    )
    deadline = time.monotonic() + 60

    def signal_once_tracking() -> None:
        windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        update = windows[0].last_update if windows else None
        if update is not None and update.frame.index >= 5:
            os.kill(os.getpid(), sig)  # as Ctrl+C in the terminal, or `kill` from another program
        elif windows and time.monotonic() > deadline:
            windows[0].close()  # never reached frame 5: end the test (it then fails on the exit code)
        else:
            QTimer.singleShot(50, signal_once_tracking)

    def escaped(signum, frame):
        raise AssertionError("the signal reached the test runner: the window had no handler installed")

    previous = signal.signal(signal.SIGTERM, escaped)
    try:
        QTimer.singleShot(50, signal_once_tracking)
        assert run_gui(options) == code
    finally:
        signal.signal(signal.SIGTERM, previous)
    rows = [[float(v) for v in line.split(",")] for line in results.read_text().splitlines()]
    assert len(rows) >= 6 and rows[0] == [20, 40, 30, 30]
    # A row is a box, or all NaN on a frame the target was reported lost: never half-written.
    assert all(len(row) == 4 and (all(map(math.isfinite, row)) or all(map(math.isnan, row))) for row in rows)
    capture = cv2.VideoCapture(str(video))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == len(rows)  # finalised, one picture per line
    capture.release()
    assert not [t for t in threading.enumerate() if t.name == "tracking worker" or t.name.startswith("capture ")]
