"""The Qt main window: the video view, the controls, the status bar, and the worker that does the tracking.

This module wires them together and turns what the user asks for into commands for ``app.worker.TrackingWorker``,
which owns the source, the model and the recording in its own thread. The parts live beside it: the video view and
its box drawing (``app.video_view``), the actions, toolbar, menus and dialogs (``app.controls``) and the status bar
(``app.status_bar``). ``run_gui`` is the entry point from the command line.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from PyQt6.QtCore import QTimer
from PyQt6.QtGui import QCloseEvent, QColor, QDragEnterEvent, QDropEvent, QPalette
from PyQt6.QtWidgets import QApplication, QLineEdit, QMainWindow

from app.commands import (
    AddTarget,
    Command,
    FrameUpdate,
    HoldFrames,
    OpenSource,
    RecordTarget,
    ReleaseFrames,
    ResetTarget,
    SetPaused,
    SetQuery,
    SetTarget,
    SourceInfo,
    StartRecording,
    StepOnce,
    StopRecording,
)
from app.controls import Controls
from app.options import AppOptions, build_session
from app.render import Trails
from app.status_bar import StatusBar
from app.video_view import VideoView
from app.worker import GrounderFactory, SessionFactory, SourceFactory, TrackingWorker, default_source_factory
from tracker import build_grounder
from tracker.config import TrackConfig
from tracker.types import Box, Frame

APP_NAME = "OSTrack Live"
RECORDINGS_DIR = Path("recordings")
SIGNAL_POLL_MS = 200  # how often Python gets a chance to handle Ctrl+C while Qt runs the event loop
HOLD_NOTICE = "picture held while you draw; release to track what is in the box (Esc cancels)"


class MainWindow(QMainWindow):
    """Video, controls and status; a ``TrackingWorker`` does the work. See the module docstring."""

    def __init__(
        self,
        session_factory: SessionFactory,
        source_factory: SourceFactory = default_source_factory,
        recordings_dir: Path = RECORDINGS_DIR,
        grounder_factory: GrounderFactory | None = None,
    ) -> None:
        super().__init__()
        self.setWindowTitle(APP_NAME)
        self.resize(1180, 760)
        self.setAcceptDrops(True)
        self.recordings_dir = Path(recordings_dir)
        self.paused = False
        self.recording = False
        self.last_update: FrameUpdate | None = None
        self.latency_ms: float | None = None
        self._resumed_at = 0.0  # monotonic time play last resumed after a pause
        self._source: SourceInfo | None = None
        self._model_error: str | None = None
        self._model_note = ""  # how the model runs when that is not what was asked for (a backend fallback)
        self._trail = Trails(TrackConfig().trail_length)
        self._held: Frame | None = None  # the frame on display when the user started drawing a box
        self._closed = False

        self.view = VideoView(self)
        self.view.set_placeholder("Open a video (Ctrl+O), a stream URL (Ctrl+U) or a camera (Ctrl+Shift+C)")
        self.view.drag_started.connect(self._hold_picture)
        self.view.box_drawn.connect(self._target_drawn)
        self.view.box_added.connect(self._target_added)
        self.view.drag_cancelled.connect(self._release_picture)
        self.setCentralWidget(self.view)
        self.query_edit = QLineEdit(self)
        self.query_edit.setPlaceholderText("Describe the target, e.g. “the person walking across the road”")
        self.query_edit.setClearButtonEnabled(True)
        self.query_edit.setMinimumWidth(260)
        self.controls = Controls(self, self.query_edit)
        self.status = StatusBar(self)
        self.setStatusBar(self.status)

        self.worker = TrackingWorker(session_factory, source_factory, parent=self, grounder_factory=grounder_factory)
        self.worker.frame_ready.connect(self._on_frame)
        self.worker.notice.connect(self.show_notice)
        self.worker.failed.connect(self.show_error)
        self.worker.source_opened.connect(self._on_source_opened)
        self.worker.session_ready.connect(self._on_session_ready)
        self.worker.session_failed.connect(self._on_session_failed)
        self.worker.recording_changed.connect(self._on_recording_changed)
        self.worker.start()
        self.view.setFocus()

    # -- what the user asks for ------------------------------------------------------------------------------

    def open_source(
        self,
        spec: str,
        init_box: Box | None = None,
        record: RecordTarget | None = None,
        max_frames: int | None = None,
        more_boxes: tuple[Box, ...] = (),
    ) -> None:
        """Play ``spec`` (file, image folder, camera index, URL); the worker opens it and reports back. ``init_box``
        starts tracking on its first frame, where each of ``more_boxes`` is added as a further target."""
        self.show_notice(f"opening {spec}…")
        self._send(OpenSource(spec, init_box, record, max_frames, more_boxes))

    def set_target(self, box: Box, drawn_on: Frame | None = None) -> None:
        """Follow the object in ``box`` (frame pixels of ``drawn_on``, default the newest frame) from that frame
        on; also used to re-target."""
        self._send(SetTarget(box, drawn_on))
        self.show_notice(
            f"target {box.w:.0f}×{box.h:.0f} at {box.x:.0f},{box.y:.0f}; drag again to re-target, Shift+drag to add one"
        )

    def add_target(self, box: Box, drawn_on: Frame | None = None) -> None:
        """Follow the object in ``box`` too, beside the targets followed already (each gets its own id)."""
        self._send(AddTarget(box, drawn_on))
        self.show_notice(f"target added: {box.w:.0f}×{box.h:.0f} at {box.x:.0f},{box.y:.0f}")

    def toggle_pause(self) -> None:
        self.set_paused(not self.paused)

    def set_paused(self, paused: bool) -> None:
        if self.paused and not paused:
            self._resumed_at = time.monotonic()
        self.paused = paused
        self._send(SetPaused(paused))
        self.controls.show_paused(paused)

    def step(self) -> None:
        """One frame forward; pauses first when playing (like a video player's frame step)."""
        self.paused = True
        self.controls.show_paused(True)
        self._send(StepOnce())

    def reset(self) -> None:
        self._trail.clear()
        self._send(ResetTarget())
        self.show_notice("tracking reset; drag a box to follow something")

    def escape(self) -> None:
        """Esc cancels a box being drawn, leaves the query field, or else stops tracking."""
        if self.view.dragging:
            self.view.cancel_drag()
        elif self.query_edit.hasFocus():
            self.view.setFocus()
        else:
            self.reset()

    def submit_query(self, text: str | None = None) -> None:
        query = (self.query_edit.text() if text is None else text).strip()
        if not query:
            self.show_notice("type what to look for, then press Enter")
            return
        self._send(SetQuery(query))

    def start_recording(self, target: RecordTarget | None = None) -> None:
        """Record results (and annotated video) from the newest frame on; default paths in ``recordings/``."""
        self._send(StartRecording(target or self.default_record_target()))

    def stop_recording(self) -> None:
        self._send(StopRecording())

    def toggle_recording(self) -> None:
        if self.recording:
            self.stop_recording()
        else:
            self.start_recording()
        self.controls.record.setChecked(self.recording)  # the worker confirms with recording_changed

    def default_record_target(self) -> RecordTarget:
        """``recordings/<time>_<source>.txt`` and ``.mp4``; the folder is created when missing."""
        self.recordings_dir.mkdir(parents=True, exist_ok=True)
        stem = datetime.now().strftime("%Y%m%d-%H%M%S")
        if self._source is not None:
            name = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(self._source.description).stem)
            stem = f"{stem}_{name.strip('_')[:40]}"
        return RecordTarget(self.recordings_dir / f"{stem}.txt", self.recordings_dir / f"{stem}.mp4")

    # -- drawing on a moving picture -------------------------------------------------------------------------

    def _hold_picture(self) -> None:
        """The user pressed on the video: the view holds its picture, the worker keeps what arrives meanwhile."""
        self._held = self.last_update.frame if self.last_update is not None else None
        self._send(HoldFrames())
        self.show_notice(HOLD_NOTICE)

    def _target_drawn(self, box: Box) -> None:
        held, self._held = self._held, None
        self.set_target(box, held)

    def _target_added(self, box: Box) -> None:
        held, self._held = self._held, None
        self.add_target(box, held)

    def _release_picture(self) -> None:
        self._held = None
        self._send(ReleaseFrames())
        if self.message == HOLD_NOTICE:
            self.show_notice("no box drawn; drag across the object to draw one")

    # -- messages shown to the user --------------------------------------------------------------------------

    def show_notice(self, text: str) -> None:
        self.status.show_notice(text)

    def show_error(self, text: str) -> None:
        self.status.show_error(text)
        if self.view.frame_size is None:
            self.view.set_placeholder(text, is_error=True)

    @property
    def message(self) -> str:
        return self.status.message

    # -- what the worker reports -----------------------------------------------------------------------------

    def _on_frame(self, update: FrameUpdate) -> None:
        self.last_update = update
        self._trail.add(update.result)
        self.view.show_frame(update.frame.image, update.result, self._trail)
        self.latency_ms = None if self.paused else self._latency_ms(update.frame.timestamp)
        self.status.show_figures(update, self.latency_ms, self._source.frame_count if self._source else None)
        self.worker.frame_shown()

    def _on_source_opened(self, info: SourceInfo) -> None:
        self._source = info
        self._trail.clear()
        self.view.clear()
        self.view.set_placeholder(f"waiting for frames from {info.description}…")
        self.paused = False
        self.controls.show_paused(False)
        self.setWindowTitle(f"{info.description} — {APP_NAME}")
        kind = "live" if info.is_live else (f"{info.nominal_fps:.0f} fps" if info.nominal_fps else "file")
        if self._model_error is not None:  # still true for every source: keep saying it
            self.show_error(f"playing {info.description} ({kind}); {self._model_error}")
        else:
            note = f" (note: {self._model_note})" if self._model_note else ""
            self.show_notice(f"playing {info.description} ({kind}); drag a box around the object to follow{note}")

    def _on_session_ready(self, trail_length: int, note: str) -> None:
        self._trail = Trails(trail_length)
        self._model_note = note
        if note:
            self.show_notice(f"note: {note}")

    def _on_session_failed(self, text: str) -> None:
        self._model_error = text
        self.show_error(text)

    def _on_recording_changed(self, recording: bool, text: str) -> None:
        self.recording = recording
        self.controls.record.setChecked(recording)
        self.status.show_recording(recording, text)

    def _latency_ms(self, captured: float) -> float:
        """Capture to display, in ms. Time spent paused is not latency: a file's frames read before a pause
        count from the moment play resumed."""
        return (time.monotonic() - max(captured, self._resumed_at)) * 1e3

    # -- helpers ---------------------------------------------------------------------------------------------

    def _send(self, command: Command) -> None:
        if not self.worker.send(command):
            self.show_error("the tracker is busy and did not take that; try again in a moment")

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        for url in event.mimeData().urls():
            if url.isLocalFile():
                self.open_source(url.toLocalFile())
                return

    def closeEvent(self, event: QCloseEvent) -> None:
        """Stop the worker (which closes the recording and joins the capture thread) before the window goes."""
        if not self._closed:
            self._closed = True
            if not self.worker.stop():
                print(f"{APP_NAME}: the tracking thread did not stop in time", file=sys.stderr)
        event.accept()


# -- entry point ---------------------------------------------------------------------------------------------


def apply_dark_theme(app: QApplication) -> None:
    """Fusion with a dark palette: video reads best on a dark frame."""
    app.setStyle("Fusion")
    palette = QPalette()
    colours = {
        QPalette.ColorRole.Window: QColor(37, 40, 46),
        QPalette.ColorRole.WindowText: QColor(224, 226, 230),
        QPalette.ColorRole.Base: QColor(26, 28, 33),
        QPalette.ColorRole.AlternateBase: QColor(44, 47, 54),
        QPalette.ColorRole.Text: QColor(224, 226, 230),
        QPalette.ColorRole.Button: QColor(48, 52, 60),
        QPalette.ColorRole.ButtonText: QColor(224, 226, 230),
        QPalette.ColorRole.Highlight: QColor(66, 133, 244),
        QPalette.ColorRole.HighlightedText: QColor(255, 255, 255),
        QPalette.ColorRole.ToolTipBase: QColor(48, 52, 60),
        QPalette.ColorRole.ToolTipText: QColor(224, 226, 230),
        QPalette.ColorRole.PlaceholderText: QColor(130, 136, 146),
    }
    for role, colour in colours.items():
        palette.setColor(role, colour)
    app.setPalette(palette)


def run_gui(options: AppOptions) -> int:
    """Show the window for ``options`` and run until it is closed; 0 on a normal close, 128 + the signal number
    when SIGINT (130) or SIGTERM (143) closed it, as for the command line.

    Errors opening the source or loading the model are shown in the window, which stays usable.
    """
    app = QApplication.instance()
    if app is None:
        app = QApplication([sys.argv[0] if sys.argv else APP_NAME])
        app.setApplicationName(APP_NAME)
        apply_dark_theme(app)
    # The grounding model loads on the first query (in the worker), so box tracking is ready at once.
    window = MainWindow(
        session_factory=lambda: build_session(options),
        grounder_factory=lambda: build_grounder(weights=options.grounding_weights, device=options.device),
    )
    window.show()
    record = None
    if options.save_results is not None or options.save_video is not None:
        record = RecordTarget(options.save_results, options.save_video)
    window.open_source(
        options.source or "webcam",
        init_box=options.init_box,
        record=record,
        max_frames=options.max_frames,
        more_boxes=options.more_boxes,
    )
    if options.query:
        window.query_edit.setText(options.query)
        window.submit_query()
    received: list[int] = []
    with _closing_on_signals(window, received):
        app.exec()
    window.close()  # no-op after a normal close; stops the worker if the loop ended another way
    return 128 + received[0] if received else 0


@contextlib.contextmanager
def _closing_on_signals(window: MainWindow, received: list[int]) -> Iterator[None]:
    """Ctrl+C / SIGTERM close the window cleanly (results flushed, threads joined) instead of killing it; the
    signals that arrived are appended to ``received``."""
    if threading.current_thread() is not threading.main_thread():  # embedded use: the host handles signals
        yield
        return

    def close(signum: int, _frame: object) -> None:
        received.append(int(signum))
        window.close()

    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum in previous:
        signal.signal(signum, close)
    # Python runs signal handlers only between bytecodes; a timer gives it the chance while Qt's loop runs.
    timer = QTimer(window)
    timer.timeout.connect(lambda: None)
    timer.start(SIGNAL_POLL_MS)
    try:
        yield
    finally:
        timer.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
