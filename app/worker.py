"""The window's tracking worker: one thread that owns the frame source, the session and the recording.

The GUI thread never runs inference. It sends the worker small command values (``app.commands``: a box was
drawn or added, pause, step, reset, a query, open a source, start or stop recording) through a bounded queue, and
the worker answers with Qt signals, which Qt delivers in the GUI thread:

- ``frame_ready(FrameUpdate)``: the frame, its ``SessionResult`` and the figures for the status bar;
- ``notice(str)`` / ``failed(str)``: one line for the user (information / something went wrong);
- ``source_opened(SourceInfo)``, ``session_ready(int, str)`` / ``session_failed(str)``,
  ``recording_changed(bool, str)``.

The GUI acknowledges each displayed update with ``frame_shown()``. While an update still waits to be shown,
the worker keeps tracking (and recording) every frame but holds back the newest picture, sending it once the
GUI is free; frames replaced while held back count as skipped display frames. So a slow GUI never builds a
backlog of images, and the last frame of a file is always shown.

Drawing on a moving picture: while the user drags a box the window holds its picture (``HoldFrames``) and the
worker tracks nothing new. A file's frames keep arriving and are kept; a live source keeps only its newest frame
itself. The box then starts tracking on the held picture, and the worker catches up through every frame it has
after that one. Results are recorded a few frames late (``app.kept_frames``), so they follow the box too. A box
added with Shift (``AddTarget``) joins the targets already followed on the newest frame they were tracked on
instead, so none of them steps through a frame twice, and the frames kept meanwhile are caught up.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from PyQt6.QtCore import QObject, pyqtSignal

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
from app.frame_source import FrameSource, SourceStats
from app.kept_frames import HeldFrames, Tracked, TrackLog
from app.record import check_outputs_apart
from app.render import info_line
from app.session_driver import SessionDriver
from app.sources import open_source
from tracker.errors import TrackerError, first_line
from tracker.types import Box, Frame, SessionResult, TrackState

COMMAND_QUEUE_SIZE = 32  # user intents are rare; a full queue means the worker is stuck, not busy
READ_TIMEOUT_S = 0.1  # how long one source read may block before commands are looked at again
IDLE_WAIT_S = 0.1  # wait for a command when there is nothing to read (paused, no source, source ended)
STEP_READ_TIMEOUT_S = 2.0  # a single step waits this long for the next frame
JOIN_TIMEOUT_S = 10.0

SessionFactory = Callable[[], Any]  # returns a tracker.session.Session (or anything with start/step/reset)
SourceFactory = Callable[[str], FrameSource]
GrounderFactory = Callable[[], Any]  # returns a tracker.grounding.Grounder


def default_source_factory(spec: str) -> FrameSource:
    """Files play at their own frame rate in the window (``realtime``), like a player would."""
    return open_source(spec, realtime=True)


class TrackingWorker(QObject):
    """Owns the source, the session and the recording in one thread; see the module docstring."""

    frame_ready = pyqtSignal(object)  # FrameUpdate
    notice = pyqtSignal(str)
    failed = pyqtSignal(str)
    source_opened = pyqtSignal(object)  # SourceInfo
    session_ready = pyqtSignal(int, str)  # trail length from the session's config; a note on how the model runs, or ''
    session_failed = pyqtSignal(str)  # the model could not be built: frames still show, tracking cannot start
    recording_changed = pyqtSignal(bool, str)  # recording now?, one line saying where

    def __init__(
        self,
        session_factory: SessionFactory,
        source_factory: SourceFactory = default_source_factory,
        parent: QObject | None = None,
        grounder_factory: GrounderFactory | None = None,
    ) -> None:
        super().__init__(parent)
        self._session_factory = session_factory
        self._source_factory = source_factory
        self._commands: queue.Queue[Command] = queue.Queue(maxsize=COMMAND_QUEUE_SIZE)
        self._stop = threading.Event()
        self._shown = threading.Event()  # set when the GUI has displayed the last update sent
        self._shown.set()
        self._thread: threading.Thread | None = None
        # Everything below belongs to the worker thread.
        self._grounder_factory = grounder_factory
        self._tracking = SessionDriver(None, None, self.notice.emit, self.failed.emit)  # until the model loads
        self._source: FrameSource | None = None
        self._source_spec: str | None = None  # what the user opened, so recording never overwrites it
        self._source_ended = False
        self._last_status = ""
        self._paused = False
        self._init_boxes: tuple[Box, ...] = ()  # to start on the next frame: the first, then the others added
        self._log = TrackLog(self._info_line, lambda why: self.recording_changed.emit(False, why), self.notice.emit)
        self._recent = self._log.recent
        self._held = HeldFrames()  # active while the user draws on the picture on display
        self._skipped_display = 0
        self._held_back = False  # the newest frame was not sent because the GUI was busy
        self._processed = 0
        self._source_frames = 0  # frames taken from the current source
        self._max_frames: int | None = None

    # -- called from the GUI thread --------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tracking worker", daemon=True)
            self._thread.start()

    def send(self, command: Command) -> bool:
        """Queue a command; False (and nothing queued) when the worker is not keeping up or has stopped."""
        if self._stop.is_set():
            return False
        try:
            self._commands.put_nowait(command)
        except queue.Full:
            return False
        return True

    def frame_shown(self) -> None:
        """The GUI displayed the last update: the next processed frame may be sent."""
        self._shown.set()

    def stop(self, timeout: float = JOIN_TIMEOUT_S) -> bool:
        """Stop the thread, closing source and recording; True when the thread has ended. Idempotent."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            return not thread.is_alive()
        return True

    @property
    def frames_processed(self) -> int:
        """Frames read from the sources for the session so far (displayed or not)."""
        return self._processed

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the worker thread -----------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._build_session()
            while not self._stop.is_set():
                try:
                    self._iterate()
                except Exception as err:  # one bad frame or command must not kill the worker silently
                    self.failed.emit(f"worker error: {first_line(err)}")
                    self._stop.wait(IDLE_WAIT_S)
        finally:
            self._shutdown()

    def _iterate(self) -> None:
        self._send_held_back()
        if not self._wants_frames():
            self._wait_for_command()
            return
        self._drain_commands()
        if self._wants_frames():  # a command may have paused or replaced the source
            self._read_and_track(READ_TIMEOUT_S, force_display=False)

    def _build_session(self) -> None:
        # Built before any source is read, so a box given up front (--init-box) applies to the first frame.
        self.notice.emit("loading the model…")
        try:
            session = self._session_factory()
        except Exception as err:  # the window stays usable (frames still show); tracking is unavailable
            self.session_failed.emit(f"tracking is unavailable, the model did not load: {first_line(err)}")
            return
        self._tracking = SessionDriver(session, self._grounder_factory, self.notice.emit, self.failed.emit)
        self.session_ready.emit(self._tracking.trail_length, self._tracking.model_note)

    def _wants_frames(self) -> bool:
        if self._source is None or self._paused or self._source_ended:
            return False
        if self._held.active:  # a live source keeps its newest frame itself; a file's are kept here, to a budget
            return not self._source.is_live and not self._held.full
        return True

    def _wait_for_command(self) -> None:
        try:
            command = self._commands.get(timeout=IDLE_WAIT_S)
        except queue.Empty:
            return
        self._handle(command)
        self._drain_commands()

    def _drain_commands(self) -> None:
        while not self._stop.is_set():
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            self._handle(command)

    def _handle(self, command: Command) -> None:
        match command:
            case OpenSource():
                self._open(command)
            case HoldFrames():
                self._held.active = True
            case ReleaseFrames():
                self._catch_up([], self._held.release())
            case SetTarget(box=box, frame=frame):
                self._set_target(box, frame)
            case AddTarget(box=box, frame=frame):
                self._add_target(box, frame)
            case ResetTarget():
                self._reset_target()
            case SetPaused(paused=paused):
                self._set_paused(paused)
            case StepOnce():
                self._step_once()
            case SetQuery(text=text):
                self._tracking.set_query(text)
            case StartRecording(target=target):
                self._start_recording(target)
            case StopRecording():
                self._stop_recording()

    # -- frames ----------------------------------------------------------------------------------------------

    def _read_and_track(self, timeout: float, force_display: bool) -> None:
        frame = self._source.read(timeout=timeout)
        if frame is None:
            if self._source.ended:
                self._on_source_ended()
            else:
                self._report_status(self._source.stats())  # e.g. a camera that stopped: say it is reconnecting
            return
        self._processed += 1
        self._source_frames += 1
        if self._held.active:
            self._held.keep(frame)
        elif self._init_boxes and self._tracking.available:
            boxes, self._init_boxes = self._init_boxes, ()
            self._show(frame, self._start_all(frame, boxes), force_display)
        else:
            self._show(frame, self._tracking.step(frame), force_display)
        if self._max_frames is not None and self._source_frames >= self._max_frames:
            self._on_source_ended(f"stopped after {self._max_frames} frames (--max-frames)")

    def _catch_up(self, tracked_before: list[Frame], held: list[Frame]) -> None:
        """Track again the frames tracked before (after a new start), then the frames held; show the last."""
        frames = tracked_before + held
        for i, frame in enumerate(frames):
            self._show(frame, self._tracking.step(frame), force_display=i == len(frames) - 1)
        if self._source_ended:
            self._log.flush()  # the file ended while the user drew: its results are complete now

    def _show(self, frame: Frame, result: SessionResult, force_display: bool) -> None:
        """Keep the result as the newest (recording one that leaves the recent frames) and send it to the GUI if
        it is free."""
        self._log.add(Tracked(frame, result, (time.monotonic() - frame.timestamp) * 1e3))
        if not force_display and not self._shown.is_set():
            if self._held_back:
                self._skipped_display += 1  # the frame held back before this one will never be shown
            self._held_back = True
            return
        self._send_display(frame, result)

    def _send_held_back(self) -> None:
        """Show the newest frame once the GUI is free, even if no newer frame comes (end of file, stall)."""
        if not (self._held_back and self._shown.is_set()):
            return
        newest = self._recent.newest
        if newest is not None:
            self._send_display(newest.frame, newest.result)

    def _send_display(self, frame: Frame, result: SessionResult) -> None:
        self._held_back = False
        self._shown.clear()
        self.frame_ready.emit(self._update_for(frame, result))

    def _update_for(self, frame: Frame, result: SessionResult) -> FrameUpdate:
        stats = self._source.stats() if self._source is not None else None
        if stats is not None:
            self._report_status(stats)
        return FrameUpdate(
            frame=frame,
            result=result,
            capture_fps=stats.fps if stats is not None else 0.0,
            track_fps=self._tracking.track_fps,
            dropped=self._dropped(stats),
            source_status=stats.status if stats is not None else "",
            paused=self._paused,
        )

    def _dropped(self, stats: SourceStats | None) -> int:
        return (stats.dropped if stats is not None else 0) + self._skipped_display

    def _report_status(self, stats: SourceStats) -> None:
        """Tell the user when a live source starts reconnecting and when it is back."""
        if stats.status == self._last_status:
            return
        self._last_status = stats.status
        if stats.message and stats.status in ("reconnecting", "running"):
            self.notice.emit(stats.message)

    def _on_source_ended(self, reason: str | None = None) -> None:
        self._source_ended = True
        if not self._held.active:
            self._log.flush()  # the file is done: its results are complete now
        stats = self._source.stats()
        if reason is not None:
            self.notice.emit(reason)
        elif stats.status == "failed":
            self.failed.emit(stats.message or f"{self._source.description} failed")
        else:
            self.notice.emit(stats.message or f"end of {self._source.description}")

    # -- user intents ----------------------------------------------------------------------------------------

    def _open(self, command: OpenSource) -> None:
        self._stop_recording()
        self._close_source()
        self._tracking.reset()
        self._init_boxes = ()
        try:
            source = self._source_factory(command.spec)
            source.start()
        except TrackerError as err:
            self.failed.emit(str(err))
            return
        except Exception as err:  # an OS or decoder surprise: the window stays usable, say what happened
            self.failed.emit(f"cannot open {command.spec}: {first_line(err)}")
            return
        self._source = source
        self._source_spec = command.spec
        self._paused = False
        self._skipped_display = 0
        self._source_frames = 0
        self._max_frames = command.max_frames
        self._init_boxes = (command.init_box, *command.more_boxes) if command.init_box is not None else ()
        count = getattr(source, "frame_count", None)
        self.source_opened.emit(SourceInfo(source.description, source.is_live, source.nominal_fps, count))
        if command.record is not None:
            self._start_recording(command.record)

    def _set_target(self, box: Box, drawn_on: Frame | None) -> None:
        """Start on the frame the box was drawn on (default: the newest), then catch up through the later ones."""
        held = self._held.release()
        newest = self._recent.newest
        start = drawn_on or (newest.frame if newest is not None else None)
        if not self._tracking.available:
            self.failed.emit("tracking is unavailable because the model could not be loaded")
            self._catch_up([], held)
            return
        if start is None:
            self._init_boxes = (box,)  # nothing shown yet: start on the first frame that arrives
            return
        again = self._recent.frames_after(start.index)
        result = self._tracking.start(start, box)
        self._show(start, result, force_display=not (again or held))
        self._catch_up(again, held)
        if result.state is not TrackState.IDLE and drawn_on is not None:
            caught_up = f"; caught up {len(again) + len(held)} frames" if again or held else ""
            self.notice.emit(f"tracking from the frame you drew on (frame {start.index + 1}){caught_up}")

    def _add_target(self, box: Box, drawn_on: Frame | None) -> None:
        """One more target. The others are tracked up to the newest frame already, so it starts there (the box was
        drawn on that frame, or on one a display lag before it) and only the frames kept while drawing are caught
        up: no target is stepped twice through a frame. With nothing followed yet, a start like ``SetTarget``."""
        newest = self._recent.newest
        if not self._tracking.available or newest is None or newest.result.state is TrackState.IDLE:
            self._set_target(box, drawn_on)
            return
        held = self._held.release()
        result = self._tracking.add_target(newest.frame, box)
        if result is not None:
            self._show(newest.frame, result, force_display=not held)
        self._catch_up([], held)

    def _start_all(self, frame: Frame, boxes: tuple[Box, ...]) -> SessionResult:
        """Start on ``frame`` with the first box and add the others there as further targets."""
        result = self._tracking.start(frame, boxes[0])
        for box in boxes[1:]:
            if result.state is TrackState.IDLE:  # the start failed (and said why): nothing to add to
                break
            result = self._tracking.add_target(frame, box) or result
        return result

    def _reset_target(self) -> None:
        self._init_boxes = ()
        if not self._tracking.available:
            return
        self._tracking.reset()
        newest = self._recent.newest
        if newest is not None:
            self._show(newest.frame, self._tracking.step(newest.frame), force_display=True)

    def _set_paused(self, paused: bool) -> None:
        self._paused = paused
        newest = self._recent.newest
        if paused and newest is not None:
            # The display may be a frame or two behind: show the frame the worker stopped on.
            self._send_display(newest.frame, newest.result)

    def _step_once(self) -> None:
        self._paused = True
        if self._source is None:
            return
        if self._source_ended:
            self.notice.emit(f"end of {self._source.description}: no more frames to step to")
            return
        self._read_and_track(STEP_READ_TIMEOUT_S, force_display=True)

    # -- recording -------------------------------------------------------------------------------------------

    def _start_recording(self, target: RecordTarget) -> None:
        self._stop_recording()
        fps = (self._source.nominal_fps if self._source is not None else None) or 0.0
        try:
            check_outputs_apart([target.results, target.video], self._source_spec)
            where = self._log.start(target, fps, self._tracking.trail_length)
        except TrackerError as err:
            self.failed.emit(str(err))
            return
        self.recording_changed.emit(True, f"recording to {where}")

    def _stop_recording(self) -> None:
        summary = self._log.stop()
        if summary is not None:
            self.recording_changed.emit(False, summary)

    def _info_line(self, tracked: Tracked) -> str:
        stats = self._source.stats() if self._source is not None else None
        track_fps = self._tracking.track_fps
        return info_line(stats.fps if stats else 0.0, track_fps, tracked.latency_ms, self._dropped(stats))

    # -- shutdown --------------------------------------------------------------------------------------------

    def _close_source(self) -> None:
        source, self._source = self._source, None
        self._log.flush()
        self._recent.clear()
        self._held.release()
        self._held_back = False
        self._source_ended = False
        self._last_status = ""
        self._source_spec = None
        if source is not None:
            source.close()

    def _shutdown(self) -> None:
        """Runs in the worker thread as it ends: results complete, files closed, capture thread joined."""
        with contextlib.suppress(Exception):
            self._log.stop()
        source, self._source = self._source, None
        if source is not None:
            source.close()
