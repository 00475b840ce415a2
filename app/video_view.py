"""The video view: the newest frame with its overlays, letterboxed, and the box the user drags on it.

Coordinates: the view shows the frame letterboxed inside the widget (``Viewport``); boxes leave the view in frame
pixels, whatever the widget size. While a box is being dragged the picture holds still: frames handed to the view
meanwhile wait, so the box is drawn on one frame, the one the window then starts tracking on. A drag with Shift held
(at the press or at the release) adds a target instead of replacing them.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
from PyQt6.QtCore import QPointF, QRectF, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QFont, QImage, QMouseEvent, QPainter, QPaintEvent, QPen, QResizeEvent
from PyQt6.QtWidgets import QSizePolicy, QWidget

from app.render import TrailView, draw_result
from tracker.types import Box, SessionResult

MIN_BOX_PIXELS = 4.0  # a drag smaller than this (frame pixels) is a click, not a box
BACKGROUND = QColor(16, 18, 22)
ACCENT = QColor(255, 196, 0)


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
    """A trail seen at display scale: ``draw_result`` only asks a trail for its segments."""

    def __init__(self, trail: TrailView, scale: float) -> None:
        self._trail = trail
        self._scale = scale

    def segments_for(self, target_id: int | None) -> list[list[tuple[int, int]]]:
        scale = self._scale
        return [[(round(x * scale), round(y * scale)) for x, y in run] for run in self._trail.segments_for(target_id)]


def _scaled_box(box: Box | None, scale: float) -> Box | None:
    return None if box is None else Box(box.x * scale, box.y * scale, box.w * scale, box.h * scale)


def _scaled_result(result: SessionResult, scale: float) -> SessionResult:
    targets = tuple(
        dataclasses.replace(t, box=_scaled_box(t.box, scale), last_seen=_scaled_box(t.last_seen, scale))
        for t in result.targets
    )
    return dataclasses.replace(
        result,
        box=_scaled_box(result.box, scale),
        last_seen=_scaled_box(result.last_seen, scale),
        targets=targets,
    )


# -- the video view ------------------------------------------------------------------------------------------


class VideoView(QWidget):
    """Shows the newest frame with its overlays, letterboxed; a left-button drag draws a box.

    Pressing the button holds the picture (``drag_started``); ``box_drawn(Box)`` is emitted on release with the box
    in frame pixels of the held frame (``box_added(Box)`` instead when Shift was held), ``drag_cancelled`` when the
    drag ends without a box (a click, Esc, a resize).
    """

    box_drawn = pyqtSignal(object)
    box_added = pyqtSignal(object)
    drag_started = pyqtSignal()
    drag_cancelled = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(320, 240)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self._frame: np.ndarray | None = None  # BGR, frame pixels
        self._result: SessionResult | None = None
        self._trail: TrailView | None = None
        self._image: QImage | None = None  # the overlays drawn at display size
        self._pixels: np.ndarray | None = None  # keeps the QImage's memory alive
        self._drag_start: tuple[float, float] | None = None  # widget pixels
        self._drag_end: tuple[float, float] | None = None
        self._drag_adds = False  # Shift was held when the drag began
        self._waiting: tuple[np.ndarray, SessionResult, TrailView | None] | None = None  # newer content while held
        self._placeholder = "No video"
        self._placeholder_is_error = False

    # -- content --

    def show_frame(self, image_bgr: np.ndarray, result: SessionResult, trail: TrailView | None) -> None:
        """Show this frame, or, while a box is being dragged, keep it until the drag ends."""
        if self.dragging:
            self._waiting = (image_bgr, result, trail)
            return
        self._frame, self._result, self._trail = image_bgr, result, trail
        self._render()
        self.update()

    def clear(self) -> None:
        self._waiting = None
        self.cancel_drag()
        self._frame = self._result = self._trail = None
        self._image = self._pixels = None
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
    def frame_index(self) -> int | None:
        """Index of the frame on display (the held one while dragging)."""
        return self._result.frame_index if self._result is not None else None

    @property
    def dragging(self) -> bool:
        return self._drag_start is not None

    def cancel_drag(self) -> None:
        """End a drag without a box; the picture moves on."""
        was_dragging = self.dragging
        self._end_drag()
        self.unsetCursor()
        if self._waiting is not None:
            self.show_frame(*self._waiting)
        if was_dragging:
            self.drag_cancelled.emit()

    def _end_drag(self) -> None:
        self._drag_start = self._drag_end = None
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
        canvas = draw_result(resized, _scaled_result(self._result, scale), trail)
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
        added = "+ " if self._drag_adds else ""  # Shift: a further target, not a replacement
        painter.drawText(band.bottomLeft() + QPointF(2, 16), f"{added}{box.w:.0f} × {box.h:.0f}")

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
        self._drag_adds = _shift_held(event)
        self.update()
        self.drag_started.emit()

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
        if box.w < MIN_BOX_PIXELS or box.h < MIN_BOX_PIXELS:
            self.cancel_drag()
            return
        adds = self._drag_adds or _shift_held(event)
        # The held picture stays until the answer for the box arrives: what waited is older than that.
        self._waiting = None
        self._end_drag()
        (self.box_added if adds else self.box_drawn).emit(box)


def _shift_held(event: QMouseEvent) -> bool:
    return bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
