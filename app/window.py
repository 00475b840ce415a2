"""The Qt main window: the video with box drawing, the query field, the controls and the status bar.

This module only draws and forwards what the user asks for; ``app.worker.TrackingWorker`` owns the source, the
model and the recorder in its own thread. Coordinates: the view shows the frame letterboxed inside the widget
(``Viewport``); boxes leave the view in frame pixels, whatever the widget size.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
from PyQt6.QtCore import QPointF, QRectF, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import (
    QAction,
    QCloseEvent,
    QColor,
    QDragEnterEvent,
    QDropEvent,
    QFont,
    QImage,
    QKeySequence,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPalette,
    QPen,
    QResizeEvent,
)
from PyQt6.QtWidgets import (
    QApplication,
    QFileDialog,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QSizePolicy,
    QStyle,
    QToolBar,
    QWidget,
)

from app.options import AppOptions, build_session
from app.render import STATE_COLOURS, Trail, draw_result
from app.worker import (
    FrameUpdate,
    GrounderFactory,
    OpenSource,
    RecordTarget,
    ResetTarget,
    SessionFactory,
    SetPaused,
    SetQuery,
    SetTarget,
    SourceFactory,
    SourceInfo,
    StartRecording,
    StepOnce,
    StopRecording,
    TrackingWorker,
    default_source_factory,
)
from tracker import build_grounder
from tracker.config import TrackConfig
from tracker.types import Box, SessionResult, TrackState

APP_NAME = "OSTrack Live"
MIN_BOX_PIXELS = 4.0  # a drag smaller than this (frame pixels) is a click, not a box
RECORDINGS_DIR = Path("recordings")
VIDEO_FILTER = "Videos and images (*.mp4 *.avi *.mov *.mkv *.m4v *.webm *.mpg *.mpeg *.jpg *.jpeg *.png);;All files (*)"
RESULTS_FILTER = "Results text (*.txt);;Results JSON lines (*.jsonl)"
BACKGROUND = QColor(16, 18, 22)
ACCENT = QColor(255, 196, 0)
ERROR_STYLE = "color: #ff6b6b;"
SIGNAL_POLL_MS = 200  # how often Python gets a chance to handle Ctrl+C while Qt runs the event loop


# -- coordinates ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Viewport:
    """Where a frame sits inside a widget when scaled to fit with its aspect ratio kept (letterbox).

    ``scale`` is widget pixels per frame pixel; ``left``/``top`` is the frame's top-left corner in widget
    pixels.
    """

    frame_w: int
    frame_h: int
    scale: float
    left: float
    top: float

    @classmethod
    def fit(cls, frame_w: int, frame_h: int, widget_w: float, widget_h: float) -> Viewport:
        scale = min(widget_w / frame_w, widget_h / frame_h) if frame_w > 0 and frame_h > 0 else 0.0
        scale = max(scale, 1e-6)
        return cls(frame_w, frame_h, scale, (widget_w - frame_w * scale) / 2, (widget_h - frame_h * scale) / 2)

    @property
    def width(self) -> float:
        """Displayed frame width in widget pixels."""
        return self.frame_w * self.scale

    @property
    def height(self) -> float:
        return self.frame_h * self.scale

    def contains(self, wx: float, wy: float) -> bool:
        return self.left <= wx <= self.left + self.width and self.top <= wy <= self.top + self.height

    def to_frame(self, wx: float, wy: float) -> tuple[float, float]:
        """Widget pixels -> frame pixels, clamped to the frame."""
        fx = (wx - self.left) / self.scale
        fy = (wy - self.top) / self.scale
        return min(max(fx, 0.0), float(self.frame_w)), min(max(fy, 0.0), float(self.frame_h))

    def to_widget(self, fx: float, fy: float) -> tuple[float, float]:
        """Frame pixels -> widget pixels."""
        return self.left + fx * self.scale, self.top + fy * self.scale

    def clamp(self, wx: float, wy: float) -> tuple[float, float]:
        """The nearest widget point on the displayed frame."""
        return (
            min(max(wx, self.left), self.left + self.width),
            min(max(wy, self.top), self.top + self.height),
        )


class _ScaledTrail:
    """A trail seen at display scale: ``draw_result`` only asks a trail for its points."""

    def __init__(self, trail: Trail, scale: float) -> None:
        self._trail = trail
        self._scale = scale

    def points(self) -> list[tuple[int, int]]:
        return [(round(x * self._scale), round(y * self._scale)) for x, y in self._trail.points()]


def _scaled_result(result: SessionResult, scale: float) -> SessionResult:
    if result.box is None:
        return result
    box = result.box
    return dataclasses.replace(result, box=Box(box.x * scale, box.y * scale, box.w * scale, box.h * scale))


# -- the video view ------------------------------------------------------------------------------------------


class VideoView(QWidget):
    """Shows the newest frame with its overlays, letterboxed; a left-button drag draws a box.

    ``box_drawn(Box)`` is emitted on release with the box in frame pixels of the frame on display.
    """

    box_drawn = pyqtSignal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(320, 240)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self._frame: np.ndarray | None = None  # BGR, frame pixels
        self._result: SessionResult | None = None
        self._trail: Trail | None = None
        self._image: QImage | None = None  # the overlays drawn at display size
        self._pixels: np.ndarray | None = None  # keeps the QImage's memory alive
        self._drag_start: tuple[float, float] | None = None  # widget pixels
        self._drag_end: tuple[float, float] | None = None
        self._placeholder = "No video"
        self._placeholder_is_error = False

    # -- content --

    def show_frame(self, image_bgr: np.ndarray, result: SessionResult, trail: Trail | None) -> None:
        self._frame, self._result, self._trail = image_bgr, result, trail
        self._render()
        self.update()

    def clear(self) -> None:
        self._frame = self._result = self._trail = None
        self._image = self._pixels = None
        self.cancel_drag()
        self.update()

    def set_placeholder(self, text: str, is_error: bool = False) -> None:
        """What to show while there is no frame (a hint, or why the source did not open)."""
        self._placeholder, self._placeholder_is_error = text, is_error
        self.update()

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """(width, height) of the frame on display, in frame pixels."""
        if self._frame is None:
            return None
        return self._frame.shape[1], self._frame.shape[0]

    def viewport(self) -> Viewport | None:
        size = self.frame_size
        if size is None:
            return None
        return Viewport.fit(size[0], size[1], self.width(), self.height())

    @property
    def dragging(self) -> bool:
        return self._drag_start is not None

    def cancel_drag(self) -> None:
        self._drag_start = self._drag_end = None
        self.unsetCursor()
        self.update()

    def _render(self) -> None:
        """Draw the overlays at the size the frame is displayed at, so lines and text stay sharp."""
        viewport = self.viewport()
        if viewport is None or self._result is None:
            return
        ratio = self.devicePixelRatioF()
        width = max(1, round(viewport.width * ratio))
        height = max(1, round(viewport.height * ratio))
        scale = width / viewport.frame_w
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(self._frame, (width, height), interpolation=interpolation)
        trail = _ScaledTrail(self._trail, scale) if self._trail is not None else None
        canvas = draw_result(resized, _scaled_result(self._result, scale), trail)  # type: ignore[arg-type]
        self._pixels = np.ascontiguousarray(canvas)
        image = QImage(self._pixels.data, width, height, self._pixels.strides[0], QImage.Format.Format_BGR888)
        image.setDevicePixelRatio(ratio)
        self._image = image

    # -- Qt events --

    def resizeEvent(self, event: QResizeEvent) -> None:
        self._render()
        self.cancel_drag()  # a band drawn for the old size would map to the wrong place
        super().resizeEvent(event)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), BACKGROUND)
        viewport = self.viewport()
        if viewport is None or self._image is None:
            self._paint_placeholder(painter)
        else:
            painter.drawImage(QPointF(viewport.left, viewport.top), self._image)
            if self._drag_start is not None and self._drag_end is not None:
                self._paint_band(painter, viewport)
        painter.end()

    def _paint_placeholder(self, painter: QPainter) -> None:
        painter.setPen(QColor("#ff6b6b") if self._placeholder_is_error else QColor(170, 176, 186))
        font = QFont(self.font())
        font.setPointSizeF(font.pointSizeF() * 1.2)
        painter.setFont(font)
        area = QRectF(self.rect()).adjusted(40, 40, -40, -40)
        painter.drawText(area, int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap), self._placeholder)

    def _paint_band(self, painter: QPainter, viewport: Viewport) -> None:
        (x1, y1), (x2, y2) = self._drag_start, self._drag_end
        band = QRectF(QPointF(min(x1, x2), min(y1, y2)), QPointF(max(x1, x2), max(y1, y2)))
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        fill = QColor(ACCENT)
        fill.setAlpha(48)
        painter.fillRect(band, fill)
        pen = QPen(ACCENT, 2, Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.drawRect(band)
        box = self._band_box(viewport)
        painter.setPen(ACCENT)
        painter.drawText(band.bottomLeft() + QPointF(2, 16), f"{box.w:.0f} × {box.h:.0f}")

    def _band_box(self, viewport: Viewport) -> Box:
        fx1, fy1 = viewport.to_frame(*self._drag_start)
        fx2, fy2 = viewport.to_frame(*self._drag_end)
        return Box.from_xyxy(min(fx1, fx2), min(fy1, fy2), max(fx1, fx2), max(fy1, fy2))

    def mousePressEvent(self, event: QMouseEvent) -> None:
        viewport = self.viewport()
        point = event.position()
        if event.button() != Qt.MouseButton.LeftButton or viewport is None:
            super().mousePressEvent(event)
            return
        if not viewport.contains(point.x(), point.y()):
            return
        self.setFocus()
        self._drag_start = self._drag_end = (point.x(), point.y())
        self.update()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        viewport = self.viewport()
        point = event.position()
        if viewport is not None:
            inside = viewport.contains(point.x(), point.y())
            self.setCursor(Qt.CursorShape.CrossCursor if inside or self.dragging else Qt.CursorShape.ArrowCursor)
        if self._drag_start is None or viewport is None:
            return
        self._drag_end = viewport.clamp(point.x(), point.y())
        self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        viewport = self.viewport()
        if event.button() != Qt.MouseButton.LeftButton or self._drag_start is None or viewport is None:
            return
        point = event.position()
        self._drag_end = viewport.clamp(point.x(), point.y())
        box = self._band_box(viewport)
        self._drag_start = self._drag_end = None
        self.update()
        if box.w >= MIN_BOX_PIXELS and box.h >= MIN_BOX_PIXELS:
            self.box_drawn.emit(box)


# -- the status bar ------------------------------------------------------------------------------------------


class _StatusField(QLabel):
    """A fixed-width figure in the status bar, so the bar does not jump as numbers change."""

    def __init__(self, template: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumWidth(self.fontMetrics().horizontalAdvance(template) + 12)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)


class _ElidedLabel(QLabel):
    """A one-line message that ends in "…" when it does not fit; the whole text is in its tooltip."""

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        rect = self.contentsRect()
        text = self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight, rect.width())
        alignment = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        self.style().drawItemText(
            painter, rect, int(alignment), self.palette(), self.isEnabled(), text, QPalette.ColorRole.WindowText
        )
        painter.end()


def _state_style(state: TrackState) -> str:
    blue, green, red = STATE_COLOURS.get(state, STATE_COLOURS[TrackState.IDLE])
    text = "#111" if (red * 299 + green * 587 + blue * 114) / 1000 > 140 else "#fff"
    return f"background: rgb({red},{green},{blue}); color: {text}; border-radius: 4px; padding: 1px 8px;"


# -- the main window -----------------------------------------------------------------------------------------


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
        self._trail = Trail(TrackConfig().trail_length)
        self._closed = False

        self.view = VideoView(self)
        self.view.set_placeholder("Open a video (Ctrl+O), a stream URL (Ctrl+U) or a camera (Ctrl+Shift+C)")
        self.view.box_drawn.connect(self.set_target)
        self.setCentralWidget(self.view)
        self._build_actions()
        self._build_toolbar()
        self._build_menus()
        self._build_status_bar()

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

    # -- building --------------------------------------------------------------------------------------------

    def _action(
        self, text: str, slot: Callable[[], object], shortcuts: tuple[str, ...] = (), icon: str | None = None
    ) -> QAction:
        action = QAction(text, self)
        if icon is not None:
            action.setIcon(self.style().standardIcon(getattr(QStyle.StandardPixmap, icon)))
        if shortcuts:
            action.setShortcuts([QKeySequence(s) for s in shortcuts])
            action.setToolTip(f"{text} ({shortcuts[0]})")
        action.triggered.connect(lambda _checked=False: slot())
        self.addAction(action)  # shortcuts work even when the menu bar is hidden
        return action

    def _build_actions(self) -> None:
        self.open_file_action = self._action("Open file…", self.ask_open_file, ("Ctrl+O",), "SP_DialogOpenButton")
        self.open_folder_action = self._action("Open image folder…", self.ask_open_folder, (), "SP_DirOpenIcon")
        self.open_url_action = self._action("Open URL…", self.ask_open_url, ("Ctrl+U",), "SP_DriveNetIcon")
        self.camera_action = self._action("Camera…", self.ask_camera, ("Ctrl+Shift+C",), "SP_ComputerIcon")
        self.pause_action = self._action("Pause", self.toggle_pause, ("Space",), "SP_MediaPause")
        self.step_action = self._action("Step", self.step, ("S", "Right"), "SP_MediaSkipForward")
        self.reset_action = self._action("Reset", self.reset, ("R",), "SP_BrowserReload")
        self.escape_action = self._action("Stop tracking", self.escape, ("Esc",), "SP_BrowserStop")
        self.record_action = self._action("Record", self.toggle_recording, ("Ctrl+R",), "SP_DialogSaveButton")
        self.record_action.setCheckable(True)
        self.record_as_action = self._action("Record to…", self.ask_record_paths)
        self.quit_action = self._action("Quit", self.close, ("Ctrl+Q",))
        self.shortcuts_action = self._action("Keyboard shortcuts", self.show_shortcuts, ("F1",))

    def _build_toolbar(self) -> None:
        bar = QToolBar("Controls", self)
        bar.setMovable(False)
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for action in (self.open_file_action, self.open_url_action, self.camera_action):
            bar.addAction(action)
        bar.addSeparator()
        for action in (self.pause_action, self.step_action, self.reset_action):
            bar.addAction(action)
        bar.addSeparator()
        bar.addAction(self.record_action)
        bar.addSeparator()
        self.query_edit = QLineEdit(self)
        self.query_edit.setPlaceholderText("Describe the target, e.g. “the person walking across the road”")
        self.query_edit.setClearButtonEnabled(True)
        self.query_edit.setMinimumWidth(260)
        self.query_edit.returnPressed.connect(self.submit_query)
        bar.addWidget(self.query_edit)
        self.find_action = QAction("Find", self)
        self.find_action.triggered.connect(lambda _checked=False: self.submit_query())
        bar.addAction(self.find_action)
        for button in bar.findChildren(QWidget):
            if button is not self.query_edit:
                button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # Space must pause, not press a focused button
        self.addToolBar(bar)

    def _build_menus(self) -> None:
        menus = self.menuBar()
        file_menu = menus.addMenu("&File")
        for action in (
            self.open_file_action,
            self.open_folder_action,
            self.open_url_action,
            self.camera_action,
        ):
            file_menu.addAction(action)
        file_menu.addSeparator()
        file_menu.addAction(self.record_action)
        file_menu.addAction(self.record_as_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        track_menu = menus.addMenu("&Tracking")
        for action in (self.pause_action, self.step_action, self.reset_action, self.escape_action):
            track_menu.addAction(action)
        help_menu = menus.addMenu("&Help")
        help_menu.addAction(self.shortcuts_action)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.message_label = _ElidedLabel("Drag a box around the object to follow", self)
        self.message_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        bar.addWidget(self.message_label, 1)
        self.frame_label = _StatusField("frame 000/000 (paused)", self)
        self.capture_label = _StatusField("capture 00.0 fps", self)
        self.track_label = _StatusField("track 00.0 fps", self)
        self.latency_label = _StatusField("latency 000 ms", self)
        self.dropped_label = _StatusField("dropped 000", self)
        self.score_label = _StatusField("score 0.00", self)
        self.state_label = _StatusField("RECOVERED", self)
        self.record_label = QLabel("● REC", self)
        self.record_label.setStyleSheet("color: #ff4040; font-weight: bold; padding: 0 6px;")
        self.record_label.hide()
        for label in (
            self.frame_label,
            self.capture_label,
            self.track_label,
            self.latency_label,
            self.dropped_label,
            self.score_label,
            self.state_label,
            self.record_label,
        ):
            bar.addPermanentWidget(label)
        self._show_stats(None)

    # -- what the user asks for ------------------------------------------------------------------------------

    def open_source(
        self,
        spec: str,
        init_box: Box | None = None,
        record: RecordTarget | None = None,
        max_frames: int | None = None,
    ) -> None:
        """Play ``spec`` (file, image folder, camera index, URL); the worker opens it and reports back."""
        self.show_notice(f"opening {spec}…")
        self._send(OpenSource(spec, init_box, record, max_frames))

    def set_target(self, box: Box) -> None:
        """Follow the object in ``box`` (frame pixels) from the newest frame; also used to re-target."""
        self._send(SetTarget(box))
        self.show_notice(f"target {box.w:.0f}×{box.h:.0f} at {box.x:.0f},{box.y:.0f}; drag again to re-target")

    def toggle_pause(self) -> None:
        self.set_paused(not self.paused)

    def set_paused(self, paused: bool) -> None:
        if self.paused and not paused:
            self._resumed_at = time.monotonic()
        self.paused = paused
        self._send(SetPaused(paused))
        self._sync_pause_action()

    def step(self) -> None:
        """One frame forward; pauses first when playing (like a video player's frame step)."""
        self.paused = True
        self._sync_pause_action()
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
        self.record_action.setChecked(self.recording)  # the worker confirms with recording_changed

    def default_record_target(self) -> RecordTarget:
        """``recordings/<time>_<source>.txt`` and ``.mp4``; the folder is created when missing."""
        self.recordings_dir.mkdir(parents=True, exist_ok=True)
        stem = datetime.now().strftime("%Y%m%d-%H%M%S")
        if self._source is not None:
            name = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(self._source.description).stem)
            stem = f"{stem}_{name.strip('_')[:40]}"
        return RecordTarget(self.recordings_dir / f"{stem}.txt", self.recordings_dir / f"{stem}.mp4")

    # -- dialogs ---------------------------------------------------------------------------------------------

    def ask_open_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open video", "", VIDEO_FILTER)
        if path:
            self.open_source(path)

    def ask_open_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open image folder")
        if path:
            self.open_source(path)

    def ask_open_url(self) -> None:
        url, ok = QInputDialog.getText(self, "Open stream", "rtsp:// or http(s):// address:")
        if ok and url.strip():
            self.open_source(url.strip())

    def ask_camera(self) -> None:
        index, ok = QInputDialog.getInt(self, "Open camera", "Camera index:", 0, 0, 9)
        if ok:
            self.open_source(str(index))

    def ask_record_paths(self) -> None:
        default = str(self.default_record_target().results)
        path, _ = QFileDialog.getSaveFileName(self, "Record results to", default, RESULTS_FILTER)
        if path:
            results = Path(path)
            self.start_recording(RecordTarget(results, results.with_suffix(".mp4")))

    def show_shortcuts(self) -> None:
        lines = [
            "Drag on the video: choose the target (drag again to re-target)",
            "Space: pause / resume",
            "S or Right: one frame forward",
            "R: reset tracking        Esc: cancel drag / stop tracking",
            "Ctrl+O file   Ctrl+U URL   Ctrl+Shift+C camera",
            "Ctrl+R: record on/off (recordings/ folder)",
            "Ctrl+Q: quit",
        ]
        QMessageBox.information(self, "Keyboard shortcuts", "\n".join(lines))

    # -- messages shown to the user --------------------------------------------------------------------------

    def show_notice(self, text: str) -> None:
        self.message_label.setStyleSheet("")
        self.message_label.setText(text)
        self.message_label.setToolTip(text)

    def show_error(self, text: str) -> None:
        self.message_label.setStyleSheet(ERROR_STYLE)
        self.message_label.setText(text)
        self.message_label.setToolTip(text)
        if self.view.frame_size is None:
            self.view.set_placeholder(text, is_error=True)

    @property
    def message(self) -> str:
        return self.message_label.text()

    # -- what the worker reports -----------------------------------------------------------------------------

    def _on_frame(self, update: FrameUpdate) -> None:
        self.last_update = update
        self._trail.add(update.result)
        self.view.show_frame(update.frame.image, update.result, self._trail)
        self.latency_ms = None if self.paused else self._latency_ms(update.frame.timestamp)
        self._show_stats(update)
        self.worker.frame_shown()

    def _on_source_opened(self, info: SourceInfo) -> None:
        self._source = info
        self._trail.clear()
        self.view.clear()
        self.view.set_placeholder(f"waiting for frames from {info.description}…")
        self.paused = False
        self._sync_pause_action()
        self.setWindowTitle(f"{info.description} — {APP_NAME}")
        kind = "live" if info.is_live else (f"{info.nominal_fps:.0f} fps" if info.nominal_fps else "file")
        if self._model_error is not None:  # still true for every source: keep saying it
            self.show_error(f"playing {info.description} ({kind}); {self._model_error}")
        else:
            note = f" (note: {self._model_note})" if self._model_note else ""
            self.show_notice(f"playing {info.description} ({kind}); drag a box around the object to follow{note}")

    def _on_session_ready(self, trail_length: int, note: str) -> None:
        self._trail = Trail(trail_length)
        self._model_note = note
        if note:
            self.show_notice(f"note: {note}")

    def _on_session_failed(self, text: str) -> None:
        self._model_error = text
        self.show_error(text)

    def _on_recording_changed(self, recording: bool, text: str) -> None:
        self.recording = recording
        self.record_action.setChecked(recording)
        self.record_label.setVisible(recording)
        self.record_label.setToolTip(text)
        self.show_notice(text)

    def _show_stats(self, update: FrameUpdate | None) -> None:
        result = update.result if update is not None else None
        state = result.state if result is not None else TrackState.IDLE
        capture = update.capture_fps if update is not None else 0.0
        track = update.track_fps if update is not None else 0.0
        self.frame_label.setText(self._frame_text(update))
        self.capture_label.setText(f"capture {capture:.1f} fps" if capture > 0 else "capture – fps")
        self.track_label.setText(f"track {track:.1f} fps" if track > 0 else "track – fps")
        latency = self.latency_ms
        self.latency_label.setText(f"latency {latency:.0f} ms" if latency is not None else "latency – ms")
        self.dropped_label.setText(f"dropped {update.dropped if update is not None else 0}")
        tracked = result is not None and state is not TrackState.IDLE
        self.score_label.setText(f"score {result.score:.2f}" if tracked else "score –")
        self.state_label.setText(state.value.upper())
        self.state_label.setStyleSheet(_state_style(state))

    def _latency_ms(self, captured: float) -> float:
        """Capture to display, in ms. Time spent paused is not latency: a file's frames read before a pause
        count from the moment play resumed."""
        return (time.monotonic() - max(captured, self._resumed_at)) * 1e3

    def _frame_text(self, update: FrameUpdate | None) -> str:
        if update is None:
            return "frame –"
        count = self._source.frame_count if self._source is not None else None
        text = f"frame {update.frame.index + 1}" + (f"/{count}" if count else "")
        return f"{text} (paused)" if update.paused else text

    # -- helpers ---------------------------------------------------------------------------------------------

    def _send(self, command: object) -> None:
        if not self.worker.send(command):
            self.show_error("the tracker is busy and did not take that; try again in a moment")

    def _sync_pause_action(self) -> None:
        self.pause_action.setText("Play" if self.paused else "Pause")
        icon = "SP_MediaPlay" if self.paused else "SP_MediaPause"
        self.pause_action.setIcon(self.style().standardIcon(getattr(QStyle.StandardPixmap, icon)))

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        for url in event.mimeData().urls():
            if url.isLocalFile():
                self.open_source(url.toLocalFile())
                return

    def closeEvent(self, event: QCloseEvent) -> None:
        """Stop the worker (which closes the recorder and joins the capture thread) before the window goes."""
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
        grounder_factory=lambda: build_grounder(device=options.device),
    )
    window.show()
    record = None
    if options.save_results is not None or options.save_video is not None:
        record = RecordTarget(options.save_results, options.save_video)
    window.open_source(
        options.source or "webcam", init_box=options.init_box, record=record, max_frames=options.max_frames
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
