"""Command line: the flags (``app.arguments``), then the window or the headless loop; exit codes, one-line errors.

Exit codes: 0 done; 1 unexpected failure (a bug: run with --debug); 2 a problem with the input, model or an
output file, or no window can open (the printed line says what to do); 128 + signal number when stopped by SIGINT
(130) or SIGTERM (143).
"""

from __future__ import annotations

import collections
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tqdm import tqdm

from app.arguments import options_from_args, parse_args
from app.frame_source import FrameSource, SourceStats
from app.options import AppOptions, build_session
from app.record import Recorder, check_output_path, check_outputs_apart, check_video_path
from app.render import Trails, draw_result, info_line
from app.sources import open_source
from app.window_check import window_problem
from tracker.errors import InputError, TrackerError, first_line
from tracker.session import Session
from tracker.types import Box, Frame, SessionResult

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_ERROR = 2
# A live source that gives no first frame for this long is reported instead of waited on forever.
FIRST_FRAME_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 0.5  # how long one read waits, so a stop request is seen promptly
RECENT_STEPS = 30  # the speed drawn on video frames is the mean over this many recent steps


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: the process arguments), run, and return the exit code."""
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    _quiet_video_backends(args.debug)
    try:
        options = options_from_args(args)
        if options.config is not None and options.weights is None:
            print(
                f"warning: --config {options.config} without --weights gives random weights (tests only); "
                "pass --weights FILE to track for real",
                file=sys.stderr,
            )
        if not args.no_gui:
            return _run_window(options)
        return run_headless(options)
    except _Interrupted as stop:
        print(f"stopped by {signal.Signals(stop.signum).name} before tracking started", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt:
        print("stopped by SIGINT", file=sys.stderr)
        return 128 + signal.SIGINT
    except TrackerError as err:
        _report(f"error: {first_line(err)}", args.debug)
        return EXIT_ERROR
    except Exception as err:
        _report(
            f"error: unexpected {type(err).__name__}: {first_line(err)}; run with --debug for details",
            args.debug,
        )
        return EXIT_UNEXPECTED


def _run_window(options: AppOptions) -> int:
    problem = window_problem()  # asked first: Qt aborts the whole process when it cannot open a window
    if problem is not None:
        raise InputError(problem)
    try:
        from app.window import run_gui  # imported here so headless runs never load Qt
    except ImportError as err:
        raise InputError(f"the window cannot start ({first_line(err)}); use --no-gui") from None
    return run_gui(options)


# ------------------------------------------------------------------------------------------------------------
# Headless


@dataclass
class RunProgress:
    """What the headless loop has done so far. Constant size: a run may last days on a live camera."""

    frames: int = 0
    step_count: int = 0  # tracker steps timed (every frame but the first, which initialises)
    step_ms_total: float = 0.0
    recent_ms: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=RECENT_STEPS))
    started: float = field(default_factory=time.perf_counter)

    def add_step(self, elapsed_ms: float) -> None:
        self.step_count += 1
        self.step_ms_total += elapsed_ms
        self.recent_ms.append(elapsed_ms)

    @property
    def tracker_fps(self) -> float:
        """Mean tracker speed over the whole run (steps per second of tracker time)."""
        return 1000.0 * self.step_count / self.step_ms_total if self.step_ms_total > 0 else 0.0

    @property
    def recent_tracker_fps(self) -> float:
        total = sum(self.recent_ms)
        return 1000.0 * len(self.recent_ms) / total if total > 0 else 0.0


def run_headless(options: AppOptions) -> int:
    """Track from the first frame's ``--init-box`` to the end of the source (or --max-frames, or a signal)."""
    if options.init_box is not None and options.query:
        raise InputError("give --init-box or --query, not both: a box starts tracking at once, a query looks first")
    if options.init_box is None and not options.query:
        raise InputError('--no-gui needs --init-box x,y,w,h (the target on the first frame) or --query "the red car"')
    # Cheap checks first, so a typo in an output path does not cost a model load.
    if options.save_results is not None:
        check_output_path(options.save_results, "results")
    if options.save_video is not None:
        check_video_path(options.save_video)
    check_outputs_apart([options.save_results, options.save_video], options.source)
    stop = _StopRequest()
    source = recorder = None
    progress = RunProgress()
    try:
        # Handled from the start: a stop while a stream URL is being opened or the model loads ends cleanly too.
        with _signals_handled(stop):
            source = open_source(options.source or "webcam", realtime=False)
            session = build_session(options)
            if session.tracker.network.note:
                print(f"note: {session.tracker.network.note}", file=sys.stderr)
            recorder = Recorder(
                options.save_results,
                options.save_video,
                source.nominal_fps or 30.0,
                multi=len(options.init_boxes) > 1,
                note=lambda text: print(f"note: {text}", file=sys.stderr),
            )
            stop.tracking = True  # from here a signal finishes the current frame, then the loop stops
            track_source(source, session, recorder, options, stop=stop, progress=progress)
    finally:
        if recorder is not None:
            recorder.close()
        if source is not None:
            source.close()
    source_state = source.stats()
    print(_summary(progress, options, stop.signum, source, source_state), file=sys.stderr)
    if source_state.status == "failed" or source_state.incomplete:
        print(f"warning: {source_state.message}", file=sys.stderr)
    if recorder.error:
        print(f"error: {recorder.error}", file=sys.stderr)
        return EXIT_ERROR
    return 128 + stop.signum if stop.signum else EXIT_OK


def track_source(
    source: FrameSource,
    session: Session,
    recorder: Recorder,
    options: AppOptions,
    *,
    stop: _StopRequest | None = None,
    progress: RunProgress | None = None,
    on_result: Callable[[Frame, SessionResult], None] | None = None,
) -> RunProgress:
    """The headless loop: start ``source``, init on its first frame with ``options.init_boxes``, step every
    frame after it and record each result (and the annotated frame when ``options.save_video``), until the
    source ends, ``options.max_frames`` frames were read, or ``stop.signum`` is set. ``on_result``
    (benchmarks) sees every frame and its result after it was recorded."""
    stop = stop or _StopRequest()
    progress = progress or RunProgress()
    source.start()
    first = _first_frame(source, stop)
    if first is None:
        return progress
    progress.started = time.perf_counter()  # the summary's time is tracking time, not model loading
    trail = Trails(session.cfg.trail_length) if options.save_video else None
    total = source.frame_count
    if options.max_frames is not None and total is not None:
        total = min(total, options.max_frames)
    # disable=None: the bar shows on a terminal and stays out of logs and pipes.
    with tqdm(total=total, unit="frame", file=sys.stderr, disable=None, dynamic_ncols=True) as bar:
        result = _begin(session, first, options)
        _record(recorder, first, result, trail, source, progress, on_result)
        bar.update(1)
        while not stop.signum and (options.max_frames is None or progress.frames < options.max_frames):
            frame = source.read(READ_TIMEOUT_S)
            if frame is None:
                if source.ended:
                    break
                continue
            result = session.step(frame)
            progress.add_step(result.elapsed_ms)
            _record(recorder, frame, result, trail, source, progress, on_result)
            bar.update(1)
    return progress


def _begin(session: Session, first: Frame, options: AppOptions) -> SessionResult:
    """The first frame's result: tracking from every ``--init-box`` (the first starts the session, each further one
    is added as a target), else looking for ``--query`` (no box given)."""
    if options.init_box is None:
        session.set_query(options.query)
        return session.step(first)
    result = session.start(first, options.init_box)
    _warn_if_clipped(options.init_box, result.box, first)
    for box in options.more_boxes:
        known = {t.target_id for t in result.targets}
        try:
            result = session.add_target(first, box)
        except InputError as err:
            raise InputError(f"--init-box {_box_text(box)}: {first_line(err)}") from None
        added = [t for t in result.targets if t.target_id not in known]
        _warn_if_clipped(box, added[-1].box if added else box, first)
    return result


def _warn_if_clipped(given: Box, followed: Box | None, first: Frame) -> None:
    """The session follows the part of a box inside the frame: say so when that is not the box given."""
    if followed is None or followed == given:
        return
    print(
        f"warning: --init-box {_box_text(given)} is larger than the {first.image.shape[1]}x{first.image.shape[0]} "
        f"frame; following the part inside it, {_box_text(followed)}",
        file=sys.stderr,
    )


def _first_frame(source: FrameSource, stop: _StopRequest) -> Frame | None:
    """The first frame, or None if a stop was requested meanwhile; an error if none comes."""
    deadline = time.monotonic() + FIRST_FRAME_TIMEOUT_S
    while not stop.signum:
        frame = source.read(READ_TIMEOUT_S)
        if frame is not None:
            return frame
        if source.ended or time.monotonic() > deadline:
            reason = source.stats().message or "no frame arrived"
            raise InputError(f"{source.description} gave no frame ({reason}); check the source")
    return None


def _record(
    recorder: Recorder,
    frame: Frame,
    result: SessionResult,
    trail: Trails | None,
    source: FrameSource,
    progress: RunProgress,
    on_result: Callable[[Frame, SessionResult], None] | None,
) -> None:
    annotated = None
    if recorder.video_path is not None and trail is not None:
        trail.add(result)
        stats = source.stats()
        latency_ms = (time.monotonic() - frame.timestamp) * 1000.0
        info = info_line(stats.fps, progress.recent_tracker_fps, latency_ms, stats.dropped)
        annotated = draw_result(frame.image, result, trail, info)
    recorder.write(result, annotated)
    progress.frames += 1
    if on_result is not None:
        on_result(frame, result)


def _box_text(box: Box) -> str:
    return ",".join(f"{v:g}" for v in box.as_list())


def _summary(
    progress: RunProgress, options: AppOptions, signum: int | None, source: FrameSource, stats: SourceStats
) -> str:
    wall = time.perf_counter() - progress.started
    head = f"stopped by {signal.Signals(signum).name} after" if signum else "tracked"
    parts = [
        f"{head} {progress.frames} frames in {wall:.1f} s",
        f"mean tracker {progress.tracker_fps:.1f} fps",
    ]
    if source.is_live:
        # A live source skips frames the tracker had no time for, and may have come back after an outage.
        parts.append(f"{stats.dropped} camera frames dropped, {stats.reconnects} reconnects")
    if options.save_results is not None:
        parts.append(f"results: {options.save_results}")
    if options.save_video is not None:
        parts.append(f"video: {options.save_video}")
    return "; ".join(parts)


# ------------------------------------------------------------------------------------------------------------
# Signals and messages


class _Interrupted(BaseException):
    """Raised by the signal handler before tracking starts. A BaseException, like KeyboardInterrupt, so that no
    ``except Exception`` on the way (a loader turning any failure into "the file is damaged") can swallow it."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by signal {signum}")
        self.signum = int(signum)


class _StopRequest:
    """SIGINT/SIGTERM handler. Before tracking starts it aborts at once (nothing is recorded yet); while
    tracking it only raises a flag, so the frame in hand is finished and recorded before the loop ends."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.tracking = False

    def __call__(self, signum: int, _frame: object) -> None:
        if self.signum is not None:
            return  # a second signal while stopping must not cut the clean-up short
        self.signum = int(signum)
        if not self.tracking:
            raise _Interrupted(signum)


@contextmanager
def _signals_handled(handler: _StopRequest) -> Iterator[None]:
    """Route SIGINT and SIGTERM to ``handler`` (main thread only, as Python requires); restore after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _quiet_video_backends(debug: bool) -> None:
    """OpenCV and FFmpeg print their own warnings to stderr; users get our one-line errors instead."""
    if debug:
        return
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # read when FFmpeg is first used: AV_LOG_QUIET
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def _report(line: str, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    print(line, file=sys.stderr)
