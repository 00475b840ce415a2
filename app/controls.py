"""The window's controls: actions with their keyboard shortcuts, the toolbar (with the query field), the menus, and
the dialogs the actions open.

Each action ends in one of the window's intents (``ControlledWindow``). The actions are added to the window itself,
so their shortcuts work even with the menu bar hidden.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from PyQt6.QtCore import Qt
from PyQt6.QtGui import QAction, QIcon, QKeySequence
from PyQt6.QtWidgets import (
    QFileDialog,
    QInputDialog,
    QLineEdit,
    QMenuBar,
    QMessageBox,
    QStyle,
    QToolBar,
    QWidget,
)

from app.commands import RecordTarget

VIDEO_FILTER = "Videos and images (*.mp4 *.avi *.mov *.mkv *.m4v *.webm *.mpg *.mpeg *.jpg *.jpeg *.png);;All files (*)"
RESULTS_FILTER = "Results text (*.txt);;Results JSON lines (*.jsonl)"
SHORTCUTS = (
    "Drag on the video: choose the target (drag again to re-target)",
    "Shift+drag: follow one more target (each has its own id and colour)",
    "Space: pause / resume",
    "S or Right: one frame forward",
    "R: reset tracking        Esc: cancel drag / stop tracking",
    "Ctrl+O file   Ctrl+U URL   Ctrl+Shift+C camera",
    "Ctrl+R: record on/off (recordings/ folder)",
    "Ctrl+Q: quit",
)


class ControlledWindow(Protocol):
    """What the controls need of the main window: a ``QMainWindow`` (parent of the actions, toolbar and dialogs)
    with these intents."""

    def open_source(self, spec: str) -> None: ...
    def toggle_pause(self) -> None: ...
    def step(self) -> None: ...
    def reset(self) -> None: ...
    def escape(self) -> None: ...
    def toggle_recording(self) -> None: ...
    def start_recording(self, target: RecordTarget | None = None) -> None: ...
    def default_record_target(self) -> RecordTarget: ...
    def submit_query(self) -> None: ...
    def close(self) -> bool: ...


class Controls:
    """Builds the actions, toolbar and menus of ``window`` around its ``query_edit``; see the module docstring."""

    def __init__(self, window: ControlledWindow, query_edit: QLineEdit) -> None:
        self._window = window
        self.open_file = self._action("Open file…", self._ask_file, ("Ctrl+O",), "SP_DialogOpenButton")
        self.open_folder = self._action("Open image folder…", self._ask_folder, (), "SP_DirOpenIcon")
        self.open_url = self._action("Open URL…", self._ask_url, ("Ctrl+U",), "SP_DriveNetIcon")
        self.camera = self._action("Camera…", self._ask_camera, ("Ctrl+Shift+C",), "SP_ComputerIcon")
        self.pause = self._action("Pause", window.toggle_pause, ("Space",), "SP_MediaPause")
        self.step = self._action("Step", window.step, ("S", "Right"), "SP_MediaSkipForward")
        self.reset = self._action("Reset", window.reset, ("R",), "SP_BrowserReload")
        self.escape = self._action("Stop tracking", window.escape, ("Esc",), "SP_BrowserStop")
        self.record = self._action("Record", window.toggle_recording, ("Ctrl+R",), "SP_DialogSaveButton")
        self.record.setCheckable(True)
        self.record_as = self._action("Record to…", self._ask_record_paths)
        self.quit = self._action("Quit", window.close, ("Ctrl+Q",))
        self.shortcuts = self._action("Keyboard shortcuts", self._show_shortcuts, ("F1",))
        self.find = QAction("Find", window)
        self.find.triggered.connect(lambda _checked=False: window.submit_query())
        query_edit.returnPressed.connect(window.submit_query)
        window.addToolBar(self._toolbar(query_edit))
        self._fill_menus(window.menuBar())

    def show_paused(self, paused: bool) -> None:
        """The pause action offers what a click would do next."""
        self.pause.setText("Play" if paused else "Pause")
        self.pause.setIcon(self._icon("SP_MediaPlay" if paused else "SP_MediaPause"))

    # -- building --------------------------------------------------------------------------------------------

    def _action(
        self, text: str, slot: Callable[[], object], shortcuts: tuple[str, ...] = (), icon: str | None = None
    ) -> QAction:
        action = QAction(text, self._window)
        if icon is not None:
            action.setIcon(self._icon(icon))
        if shortcuts:
            action.setShortcuts([QKeySequence(s) for s in shortcuts])
            action.setToolTip(f"{text} ({shortcuts[0]})")
        action.triggered.connect(lambda _checked=False: slot())
        self._window.addAction(action)  # shortcuts work even when the menu bar is hidden
        return action

    def _icon(self, name: str) -> QIcon:
        return self._window.style().standardIcon(getattr(QStyle.StandardPixmap, name))

    def _toolbar(self, query_edit: QLineEdit) -> QToolBar:
        bar = QToolBar("Controls", self._window)
        bar.setMovable(False)
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for group in ((self.open_file, self.open_url, self.camera), (self.pause, self.step, self.reset)):
            for action in group:
                bar.addAction(action)
            bar.addSeparator()
        bar.addAction(self.record)
        bar.addSeparator()
        bar.addWidget(query_edit)
        bar.addAction(self.find)
        for button in bar.findChildren(QWidget):
            if button is not query_edit:
                button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # Space must pause, not press a focused button
        return bar

    def _fill_menus(self, menus: QMenuBar) -> None:
        file_menu = menus.addMenu("&File")
        for action in (self.open_file, self.open_folder, self.open_url, self.camera):
            file_menu.addAction(action)
        file_menu.addSeparator()
        file_menu.addAction(self.record)
        file_menu.addAction(self.record_as)
        file_menu.addSeparator()
        file_menu.addAction(self.quit)
        track_menu = menus.addMenu("&Tracking")
        for action in (self.pause, self.step, self.reset, self.escape):
            track_menu.addAction(action)
        help_menu = menus.addMenu("&Help")
        help_menu.addAction(self.shortcuts)

    # -- dialogs ---------------------------------------------------------------------------------------------

    def _ask_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self._window, "Open video", "", VIDEO_FILTER)
        if path:
            self._window.open_source(path)

    def _ask_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self._window, "Open image folder")
        if path:
            self._window.open_source(path)

    def _ask_url(self) -> None:
        url, ok = QInputDialog.getText(self._window, "Open stream", "rtsp:// or http(s):// address:")
        if ok and url.strip():
            self._window.open_source(url.strip())

    def _ask_camera(self) -> None:
        index, ok = QInputDialog.getInt(self._window, "Open camera", "Camera index:", 0, 0, 9)
        if ok:
            self._window.open_source(str(index))

    def _ask_record_paths(self) -> None:
        default = str(self._window.default_record_target().results)
        path, _ = QFileDialog.getSaveFileName(self._window, "Record results to", default, RESULTS_FILTER)
        if path:
            results = Path(path)
            self._window.start_recording(RecordTarget(results, results.with_suffix(".mp4")))

    def _show_shortcuts(self) -> None:
        QMessageBox.information(self._window, "Keyboard shortcuts", "\n".join(SHORTCUTS))
