"""The window's tracking worker: one thread that owns the frame source, the session and the recorder.

The GUI thread never runs inference. It sends the worker small command values (a box was drawn, pause, step,
reset, a query, open a source, start or stop recording) through a bounded queue, and the worker answers with
Qt signals, which Qt delivers in the GUI thread:

- ``frame_ready(FrameUpdate)``: the frame, its ``SessionResult`` and the figures for the status bar;
- ``notice(str)`` / ``failed(str)``: one line for the user (information / something went wrong);
- ``source_opened(SourceInfo)``, ``session_ready(int, str)`` / ``session_failed(str)``,
  ``recording_changed(bool, str)``.

The GUI acknowledges each displayed update with ``frame_shown()``. While an update still waits to be shown,
the worker keeps tracking (and recording) every frame but holds back the newest picture, sending it once the
GUI is free; frames replaced while held back count as skipped display frames. So a slow GUI never builds a
backlog of images, and the last frame of a file is always shown.

Results are recorded one frame late on purpose: a box drawn on the newest frame replaces that frame's result
before it is written, so the results file keeps exactly one line per frame (line n is frame n).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PyQt6.QtCore import QObject, pyqtSignal

from app.record import Recorder, check_outputs_apart
from app.render import Trail, draw_result, info_line
from app.sources import FrameSource, SourceStats, open_source
from tracker.config import TrackConfig
from tracker.errors import TrackerError, first_line
from tracker.types import Box, Frame, SessionResult, TrackState

COMMAND_QUEUE_SIZE = 32  # user intents are rare; a full queue means the worker is stuck, not busy
READ_TIMEOUT_S = 0.1  # how long one source read may block before commands are looked at again
IDLE_WAIT_S = 0.1  # wait for a command when there is nothing to read (paused, no source, source ended)
STEP_READ_TIMEOUT_S = 2.0  # a single step waits this long for the next frame
JOIN_TIMEOUT_S = 10.0
TRACK_FPS_SMOOTHING = 0.1  # weight of the newest step in the tracking-speed average
GROUNDING_MISSING = "text grounding needs the grounding model, which is not installed yet"

SessionFactory = Callable[[], Any]  # returns a tracker.session.Session (or anything with start/step/reset)
SourceFactory = Callable[[str], FrameSource]
GrounderFactory = Callable[[], Any]  # returns a tracker.grounding.Grounder


# -- commands: what the GUI asks for ------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordTarget:
    """Where to record: a results file (.txt or .jsonl) and/or an annotated video; either may be None."""

    results: Path | None = None
    video: Path | None = None


@dataclass(frozen=True)
class OpenSource:
    """Replace the current source. ``init_box`` (frame pixels) starts tracking on its first frame; ``record``
    starts recording from its first frame; ``max_frames`` ends the source after that many frames. Opening a
    source ends any recording of the previous one."""

    spec: str
    init_box: Box | None = None
    record: RecordTarget | None = None
    max_frames: int | None = None


@dataclass(frozen=True)
class SetTarget:
    """Follow the object in ``box`` (frame pixels of the newest frame) from the newest frame on."""

    box: Box


@dataclass(frozen=True)
class ResetTarget:
    """Stop following anything."""


@dataclass(frozen=True)
class SetPaused:
    paused: bool


@dataclass(frozen=True)
class StepOnce:
    """Track exactly one more frame and stay paused."""


@dataclass(frozen=True)
class SetQuery:
    text: str


@dataclass(frozen=True)
class StartRecording:
    target: RecordTarget


@dataclass(frozen=True)
class StopRecording:
    """Finish the current recording (results and video are complete when ``recording_changed`` arrives)."""


Command = OpenSource | SetTarget | ResetTarget | SetPaused | StepOnce | SetQuery | StartRecording | StopRecording


# -- answers: what the worker reports ----------------------------------------------------------------------


@dataclass(frozen=True)
class FrameUpdate:
    """One processed frame for display. Rates are per second; ``dropped`` counts frames the source dropped
    plus frames tracked but not displayed because the GUI was still busy with the previous one."""

    frame: Frame
    result: SessionResult
    capture_fps: float
    track_fps: float
    dropped: int
    source_status: str
    paused: bool = False  # the worker is paused on this frame


@dataclass(frozen=True)
class SourceInfo:
    description: str
    is_live: bool
    nominal_fps: float | None
    frame_count: int | None = None  # frames in a file or folder when known


def default_source_factory(spec: str) -> FrameSource:
    """Files play at their own frame rate in the window (``realtime``), like a player would."""
    return open_source(spec, realtime=True)


class TrackingWorker(QObject):
    """Owns the source, the session and the recorder in one thread; see the module docstring."""

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
        self._grounder_factory = grounder_factory
        self._source_factory = source_factory
        self._commands: queue.Queue[Command] = queue.Queue(maxsize=COMMAND_QUEUE_SIZE)
        self._stop = threading.Event()
        self._shown = threading.Event()  # set when the GUI has displayed the last update sent
        self._shown.set()
        self._thread: threading.Thread | None = None
        # Everything below belongs to the worker thread.
        self._session: Any | None = None
        self._source: FrameSource | None = None
        self._source_spec: str | None = None  # what the user opened, so recording never overwrites it
        self._source_ended = False
        self._last_status = ""
        self._paused = False
        self._init_box: Box | None = None
        self._latest: Frame | None = None
        self._pending: SessionResult | None = None  # newest result, written when the next frame comes
        self._last_recorded = -1  # frame index of the last result written to the current recorder
        self._recorder: Recorder | None = None
        self._record_target: RecordTarget | None = None
        self._video_trail: Trail | None = None
        self._skipped_display = 0
        self._held_back = False  # the newest frame was not sent because the GUI was busy
        self._step_ms: float | None = None
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
        """Stop the thread, closing source and recorder; True when the thread has ended. Idempotent."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            return not thread.is_alive()
        return True

    @property
    def frames_processed(self) -> int:
        """Frames read from the sources and given to the session so far (displayed or not)."""
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
            self._session = self._session_factory()
        except Exception as err:  # the window stays usable (frames still show); tracking is unavailable
            self.session_failed.emit(f"tracking is unavailable, the model did not load: {first_line(err)}")
            return
        track_cfg = getattr(self._session, "cfg", None)
        trail = track_cfg.trail_length if isinstance(track_cfg, TrackConfig) else TrackConfig().trail_length
        self._video_trail = Trail(trail)
        self.session_ready.emit(trail, _model_note(self._session))

    def _wants_frames(self) -> bool:
        return self._source is not None and not self._paused and not self._source_ended

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
            case SetTarget(box=box):
                self._set_target(box)
            case ResetTarget():
                self._reset_target()
            case SetPaused(paused=paused):
                self._set_paused(paused)
            case StepOnce():
                self._step_once()
            case SetQuery(text=text):
                self._set_query(text)
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
        if self._init_box is not None and self._session is not None:
            box, self._init_box = self._init_box, None
            result = self._start_session(frame, box)
        else:
            result = self._step_session(frame)
        self._processed += 1
        self._show(frame, result, force_display)
        self._source_frames += 1
        if self._max_frames is not None and self._source_frames >= self._max_frames:
            self._on_source_ended(f"stopped after {self._max_frames} frames (--max-frames)")

    def _step_session(self, frame: Frame) -> SessionResult:
        if self._session is None:
            return _idle_result(frame)
        try:
            result = self._session.step(frame)
        except Exception as err:  # a tracker failure stops tracking, not the video
            self._session.reset()
            self.failed.emit(f"tracking stopped: {first_line(err)}")
            result = _idle_result(frame)
        self._update_speed(result)
        return result

    def _start_session(self, frame: Frame, box: Box) -> SessionResult:
        try:
            return self._session.start(frame, box)
        except Exception as err:  # e.g. InputError for a box outside the frame
            self._session.reset()
            self.failed.emit(f"cannot track that box: {first_line(err)}")
            return _idle_result(frame)

    def _show(self, frame: Frame, result: SessionResult, force_display: bool) -> None:
        """Keep the result as the newest (recording the previous one) and send it to the GUI if it is free."""
        if self._pending is not None and self._pending.frame_index != result.frame_index:
            self._record(self._pending)
        self._latest, self._pending = frame, result
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
        if self._latest is not None and self._pending is not None:
            self._send_display(self._latest, self._pending)

    def _send_display(self, frame: Frame, result: SessionResult) -> None:
        self._held_back = False
        self._shown.clear()
        self.frame_ready.emit(self._update_for(frame, result))

    def _update_speed(self, result: SessionResult) -> None:
        """Average time of the session's steps (a start, which only crops a template, does not count)."""
        if result.state is TrackState.IDLE or result.elapsed_ms <= 0:
            self._step_ms = None
        elif self._step_ms is None:
            self._step_ms = result.elapsed_ms
        else:
            self._step_ms += TRACK_FPS_SMOOTHING * (result.elapsed_ms - self._step_ms)

    def _update_for(self, frame: Frame, result: SessionResult) -> FrameUpdate:
        stats = self._source.stats() if self._source is not None else None
        if stats is not None:
            self._report_status(stats)
        return FrameUpdate(
            frame=frame,
            result=result,
            capture_fps=stats.fps if stats is not None else 0.0,
            track_fps=1000.0 / self._step_ms if self._step_ms else 0.0,
            dropped=(stats.dropped if stats is not None else 0) + self._skipped_display,
            source_status=stats.status if stats is not None else "",
            paused=self._paused,
        )

    def _report_status(self, stats: SourceStats) -> None:
        """Tell the user when a live source starts reconnecting and when it is back."""
        if stats.status == self._last_status:
            return
        self._last_status = stats.status
        if stats.message and stats.status in ("reconnecting", "running"):
            self.notice.emit(stats.message)

    def _on_source_ended(self, reason: str | None = None) -> None:
        self._source_ended = True
        if self._pending is not None:
            self._record(self._pending)  # the file is done: its results are complete now
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
        if self._session is not None:
            self._session.reset()
        self._init_box = None
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
        self._init_box = command.init_box
        count = getattr(source, "frame_count", None)
        self.source_opened.emit(SourceInfo(source.description, source.is_live, source.nominal_fps, count))
        if command.record is not None:
            self._start_recording(command.record)

    def _set_target(self, box: Box) -> None:
        if self._session is None:
            self.failed.emit("tracking is unavailable because the model could not be loaded")
            return
        if self._latest is None:
            self._init_box = box  # nothing shown yet: start on the first frame that arrives
            return
        # The box was drawn on what the user sees, which is the newest frame (or the paused one).
        self._show(self._latest, self._start_session(self._latest, box), force_display=True)

    def _reset_target(self) -> None:
        self._init_box = None
        if self._session is None:
            return
        self._session.reset()
        if self._latest is not None:
            self._show(self._latest, self._step_session(self._latest), force_display=True)

    def _set_paused(self, paused: bool) -> None:
        self._paused = paused
        if paused and self._latest is not None and self._pending is not None:
            # The display may be a frame or two behind: show the frame the worker stopped on.
            self._send_display(self._latest, self._pending)

    def _step_once(self) -> None:
        self._paused = True
        if self._source is None:
            return
        if self._source_ended:
            self.notice.emit(f"end of {self._source.description}: no more frames to step to")
            return
        self._read_and_track(STEP_READ_TIMEOUT_S, force_display=True)

    def _set_query(self, text: str) -> None:
        set_query = getattr(self._session, "set_query", None)
        if callable(set_query) and getattr(self._session, "grounder", True) is None:
            self._load_grounder()
        # A session without a grounder (the grounding model is not installed) cannot take queries.
        if not callable(set_query) or getattr(self._session, "grounder", True) is None:
            self.notice.emit(GROUNDING_MISSING)
            return
        try:
            query = set_query(text)
        except TrackerError as err:
            self.failed.emit(str(err))
            return
        self.notice.emit(f'looking for "{query or text}"')

    def _load_grounder(self) -> None:
        """Build the grounding model on the first query, here in the worker: it takes seconds to load."""
        if self._grounder_factory is None:
            return
        self.notice.emit("loading the grounding model…")
        try:
            self._session.grounder = self._grounder_factory()
        except TrackerError as err:
            self.failed.emit(f"text grounding is unavailable: {err}")
            self._grounder_factory = None

    # -- recording -------------------------------------------------------------------------------------------

    def _start_recording(self, target: RecordTarget) -> None:
        self._stop_recording()
        fps = (self._source.nominal_fps if self._source is not None else None) or 0.0
        try:
            check_outputs_apart([target.results, target.video], self._source_spec)
            self._recorder = Recorder(target.results, target.video, fps=fps)
        except TrackerError as err:
            self.failed.emit(str(err))
            return
        self._record_target = target
        self._last_recorded = -1
        if self._video_trail is not None:
            self._video_trail.clear()
        where = " and ".join(str(p) for p in (target.results, target.video) if p is not None)
        self.recording_changed.emit(True, f"recording to {where}")

    def _stop_recording(self) -> None:
        if self._recorder is None:
            return
        if self._pending is not None:
            self._record(self._pending)
        recorder, self._recorder = self._recorder, None
        recorder.close()
        target, self._record_target = self._record_target, None
        if recorder.error:
            self.recording_changed.emit(False, recorder.error)
            return
        written = [str(p) for p in (target.results, target.video) if p is not None]
        self.recording_changed.emit(False, f"saved {recorder.results_written} frames to {' and '.join(written)}")

    def _record(self, result: SessionResult) -> None:
        # A frame is written once: a re-target on a frame already written (e.g. the last frame of an ended
        # file) changes the display, not the file.
        if self._recorder is None or result.frame_index <= self._last_recorded:
            return
        self._last_recorded = result.frame_index
        annotated = None
        if self._record_target.video is not None and self._latest is not None:
            if self._video_trail is not None:
                self._video_trail.add(result)
            image = self._latest.image if self._latest.index == result.frame_index else None
            if image is not None:
                track_fps = 1000.0 / self._step_ms if self._step_ms else 0.0
                stats = self._source.stats() if self._source is not None else None
                info = info_line(
                    stats.fps if stats else 0.0,
                    track_fps,
                    (time.monotonic() - self._latest.timestamp) * 1e3,
                    (stats.dropped if stats else 0) + self._skipped_display,
                )
                annotated = draw_result(image, result, self._video_trail, info)
        self._recorder.write(result, annotated)
        if self._recorder.error:
            message = self._recorder.error
            self._recorder.close()
            self._recorder = self._record_target = None
            self.recording_changed.emit(False, message)

    # -- shutdown --------------------------------------------------------------------------------------------

    def _close_source(self) -> None:
        source, self._source = self._source, None
        if self._pending is not None:
            self._record(self._pending)
        self._latest = self._pending = None
        self._held_back = False
        self._source_ended = False
        self._last_status = ""
        self._source_spec = None
        if source is not None:
            source.close()

    def _shutdown(self) -> None:
        """Runs in the worker thread as it ends: results complete, files closed, capture thread joined."""
        with contextlib.suppress(Exception):
            if self._pending is not None:
                self._record(self._pending)
        if self._recorder is not None:
            self._recorder.close()
            self._recorder = None
        source, self._source = self._source, None
        if source is not None:
            source.close()


def _model_note(session: object) -> str:
    """Why the model runs on another backend than the one asked for (e.g. ONNX Runtime would not load), or ''."""
    network = getattr(getattr(session, "tracker", None), "network", None)
    return getattr(network, "note", None) or ""


def _idle_result(frame: Frame) -> SessionResult:
    return SessionResult(frame.index, frame.timestamp, None, 0.0, TrackState.IDLE)
