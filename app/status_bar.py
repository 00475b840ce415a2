"""The status bar: one line of news for the user, and the figures of the frame on display (index, capture and
tracking rates, latency, drops, score and the primary target's state in its colour, and with several targets how
many are in which state), plus the recording mark."""

from __future__ import annotations

from PyQt6.QtCore import Qt
from PyQt6.QtGui import QPainter, QPaintEvent, QPalette
from PyQt6.QtWidgets import QLabel, QSizePolicy, QStatusBar, QWidget

from app.commands import FrameUpdate
from app.render import STATE_COLOURS
from app.targets import summary
from tracker.types import TrackState

ERROR_STYLE = "color: #ff6b6b;"


class StatusBar(QStatusBar):
    """The message on the left, fixed-width figures on the right; see the module docstring."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.message_label = _ElidedLabel("Drag a box around the object to follow", self)
        self.message_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.addWidget(self.message_label, 1)
        self.frame_label = _StatusField("frame 000/000 (paused)", self)
        self.capture_label = _StatusField("capture 00.0 fps", self)
        self.track_label = _StatusField("track 00.0 fps", self)
        self.latency_label = _StatusField("latency 000 ms", self)
        self.dropped_label = _StatusField("dropped 000", self)
        self.score_label = _StatusField("score 0.00", self)
        self.state_label = _StatusField("RECOVERED", self)
        self.targets_label = _StatusField("8 targets: 8 tracking", self)
        self.targets_label.hide()
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
            self.targets_label,
            self.record_label,
        ):
            self.addPermanentWidget(label)
        self.show_figures(None, None, None)

    @property
    def message(self) -> str:
        return self.message_label.text()

    def show_notice(self, text: str) -> None:
        self._show_message(text, "")

    def show_error(self, text: str) -> None:
        self._show_message(text, ERROR_STYLE)

    def show_recording(self, recording: bool, text: str) -> None:
        self.record_label.setVisible(recording)
        self.record_label.setToolTip(text)
        self.show_notice(text)

    def show_figures(self, update: FrameUpdate | None, latency_ms: float | None, frame_count: int | None) -> None:
        """The figures of ``update`` (None: nothing shown yet); ``frame_count`` is the source's length if known."""
        result = update.result if update is not None else None
        state = result.state if result is not None else TrackState.IDLE
        capture = update.capture_fps if update is not None else 0.0
        track = update.track_fps if update is not None else 0.0
        self.frame_label.setText(_frame_text(update, frame_count))
        self.capture_label.setText(f"capture {capture:.1f} fps" if capture > 0 else "capture – fps")
        self.track_label.setText(f"track {track:.1f} fps" if track > 0 else "track – fps")
        self.latency_label.setText(f"latency {latency_ms:.0f} ms" if latency_ms is not None else "latency – ms")
        self.dropped_label.setText(f"dropped {update.dropped if update is not None else 0}")
        tracked = result is not None and state is not TrackState.IDLE
        self.score_label.setText(f"score {result.score:.2f}" if tracked else "score –")
        self.state_label.setText(state.value.upper())
        self.state_label.setStyleSheet(_state_style(state))
        targets = summary(result) if result is not None else ""
        self.targets_label.setText(targets)
        self.targets_label.setVisible(bool(targets))

    def _show_message(self, text: str, style: str) -> None:
        self.message_label.setStyleSheet(style)
        self.message_label.setText(text)
        self.message_label.setToolTip(text)


def _frame_text(update: FrameUpdate | None, frame_count: int | None) -> str:
    if update is None:
        return "frame –"
    text = f"frame {update.frame.index + 1}" + (f"/{frame_count}" if frame_count else "")
    return f"{text} (paused)" if update.paused else text


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
