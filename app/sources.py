"""Frame sources: one capture thread per source, feeding the tracking loop.

Two delivery policies, chosen by the kind of source:

- files and image folders deliver every frame in order through a small bounded queue; the capture thread
  waits when the queue is full, so nothing is dropped (``realtime=True`` paces delivery at the file's rate);
- webcams and stream URLs keep only the newest frame in a one-slot buffer: a frame nobody took before the next
  one arrived is replaced and counted as dropped, so the tracker always works on the present. A live source
  that stops delivering is reopened with exponential back-off.

Every frame gets its index (0-based, in capture order) and its capture time on the monotonic clock.
"""

from __future__ import annotations

import collections
import contextlib
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tracker.errors import InputError, first_line
from tracker.types import Frame

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
LIVE_SCHEMES = ("rtsp", "rtsps", "http", "https")
FILE_QUEUE_FRAMES = 8  # frames a file source reads ahead; small, so memory stays flat for long videos
FOLDER_FPS = 30.0  # pace of an image folder in realtime mode (folders carry no frame rate)
BACKOFF_FIRST_S = 0.5  # first wait before reopening a live source; doubles up to BACKOFF_MAX_S
BACKOFF_MAX_S = 8.0
OPEN_TIMEOUT_MS = 5000  # an unreachable stream URL fails after this instead of hanging
READ_TIMEOUT_MS = 5000
RATE_WINDOW_S = 1.0  # capture fps is measured over about this much recent time
JOIN_TIMEOUT_S = 10.0
# Containers without a frame index report duration x fps, which can be off by a frame or two; fewer frames than
# that are reported as a damaged or truncated file.
FRAME_COUNT_SLACK = 2

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")

CaptureFactory = Callable[[Any], Any]


@dataclass(frozen=True)
class SourceStats:
    """A snapshot of a source for the status bar and the summary."""

    captured: int  # frames read from the device/file
    dropped: int  # live frames replaced before anyone took them (newest-frame policy)
    fps: float  # capture rate measured over the last second or so
    status: str  # "starting" | "running" | "reconnecting" | "ended" | "failed"
    message: str = ""  # one line for the user (e.g. why it failed, "reconnecting in 2.0 s")
    reconnects: int = 0  # times a live source was reopened after it stopped delivering
    incomplete: bool = False  # a file or folder ended with frames it could not read (truncated, damaged)


class FrameSource:
    """What every source shares: the capture thread, counters and status. ``open_source`` makes one."""

    is_live: bool = False
    nominal_fps: float | None = None
    description: str = ""
    frame_count: int | None = None  # frames in a file or folder when known (progress bars); None for live

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._captured = 0
        self._dropped = 0
        self._reconnects = 0
        self._status = "starting"
        self._message = ""
        self._incomplete = False
        self._rate = _RateMeter(RATE_WINDOW_S)

    # -- public interface ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the capture thread (once)."""
        if self._thread is not None or self._closed:
            return
        self._thread = threading.Thread(target=self._run_guarded, name=f"capture {self.description}", daemon=True)
        self._thread.start()

    def read(self, timeout: float = 0.5) -> Frame | None:
        raise NotImplementedError

    @property
    def ended(self) -> bool:
        raise NotImplementedError

    def stats(self) -> SourceStats:
        with self._lock:
            return SourceStats(
                captured=self._captured,
                dropped=self._dropped,
                fps=self._rate.rate(),
                status=self._status,
                message=self._message,
                reconnects=self._reconnects,
                incomplete=self._incomplete,
            )

    def close(self) -> None:
        """Stop the capture thread and wait for it; release the device. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake_readers()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT_S)
        if thread is None:
            self._release()  # the thread never ran, so nobody else will release the device

    def __enter__(self) -> FrameSource:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- for subclasses --------------------------------------------------------------------------------------

    def _run(self) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError

    def _wake_readers(self) -> None:
        """Let a reader blocked in ``read`` see that the source stopped."""

    def _crashed(self, message: str) -> None:
        """The capture thread died of an unexpected error: report it and let readers see the end."""
        self._set_status("failed", message)

    def _run_guarded(self) -> None:
        try:
            self._run()
        except Exception as err:  # a capture backend failing in an unexpected way must not kill silently
            self._crashed(f"capture stopped: {first_line(err)}")
        finally:
            self._release()
            self._wake_readers()

    def _set_status(self, status: str, message: str = "") -> None:
        with self._lock:
            self._status = status
            self._message = message

    def _new_frame(self, image: np.ndarray) -> Frame:
        """Stamp a captured picture with the next index and the capture time."""
        now = time.monotonic()
        with self._lock:
            index = self._captured
            self._captured += 1
            self._rate.tick(now)
        return Frame(index=index, timestamp=now, image=_as_bgr(image))


# ------------------------------------------------------------------------------------------------------------
# Files and folders: every frame, in order


class _OrderedSource(FrameSource):
    """Delivers every picture of a finite source in order; kinds differ only in ``_next_image``."""

    def __init__(self, first_image: np.ndarray, realtime: bool) -> None:
        super().__init__()
        self._pending_first: np.ndarray | None = first_image
        self._queue: queue.Queue[Frame | None] = queue.Queue(maxsize=FILE_QUEUE_FRAMES)
        self._realtime = realtime
        self._exhausted = False  # the reader has taken the end marker

    def read(self, timeout: float = 0.5) -> Frame | None:
        if self._exhausted:
            return None
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is None:
            self._exhausted = True
        return item

    @property
    def ended(self) -> bool:
        return self._exhausted

    def _next_image(self) -> np.ndarray | None:
        raise NotImplementedError

    def _run(self) -> None:
        self._set_status("running")
        period = 1.0 / (self.nominal_fps or FOLDER_FPS)
        due = time.monotonic()
        while not self._stop.is_set():
            try:
                image = self._pending_first if self._pending_first is not None else self._next_image()
            except (cv2.error, OSError) as err:
                # A file that breaks half-way ends the source with what was read; the status says why.
                self._set_status("failed", f"reading {self.description} failed: {first_line(err)}")
                break
            self._pending_first = None
            if image is None:
                self._set_status("ended", self._end_message())
                break
            if self._realtime:
                due = self._wait_until(due) + period
            if not self._put(self._new_frame(image)):
                return
        self._put(None)

    def _end_message(self) -> str:
        return f"end of {self.description}"

    def _wait_until(self, due: float) -> float:
        """Sleep until ``due``; when the consumer fell behind, restart the clock instead of bursting."""
        now = time.monotonic()
        if due > now:
            self._stop.wait(due - now)
            return due
        return now

    def _put(self, item: Frame | None) -> bool:
        """Queue an item, waiting while the queue is full (files never drop); False once closed."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _wake_readers(self) -> None:
        if self._stop.is_set():
            self._exhausted = True

    def _crashed(self, message: str) -> None:
        super()._crashed(message)
        self._put(None)  # the frames already queued are still delivered, then the end


class _VideoFileSource(_OrderedSource):
    def __init__(self, path: Path, capture: Any, first_image: np.ndarray, realtime: bool) -> None:
        super().__init__(first_image, realtime)
        self._capture = capture
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.nominal_fps = fps if 0 < fps < 1000 else None
        self.frame_count = count if count > 0 else None
        self.description = path.name

    def _next_image(self) -> np.ndarray | None:
        ok, image = self._capture.read()
        return image if ok and image is not None else None

    def _end_message(self) -> str:
        read = self.stats().captured
        if self.frame_count is None or read + FRAME_COUNT_SLACK >= self.frame_count:
            return super()._end_message()
        # The container promised more frames than could be decoded: a cut-off download or a damaged file.
        self._incomplete = True
        return (
            f"{self.description} ended after {read} of the {self.frame_count} frames its header announces; "
            "the file may be truncated or damaged"
        )

    def _release(self) -> None:
        self._capture.release()


class _FolderSource(_OrderedSource):
    def __init__(self, path: Path, files: list[Path], first_image: np.ndarray, realtime: bool) -> None:
        super().__init__(first_image, realtime)
        self._files = files
        self._next = 1  # the first image was read when the source was opened
        self._skipped: list[str] = []
        self.frame_count = len(files)
        self.description = f"{path.name}/ ({len(files)} images)" if path.is_dir() else path.name

    def _next_image(self) -> np.ndarray | None:
        while self._next < len(self._files):
            path = self._files[self._next]
            self._next += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                return image
            # An unreadable picture in the middle of a folder is skipped, not fatal; the summary says so.
            self._skipped.append(path.name)
        return None

    def _end_message(self) -> str:
        if not self._skipped:
            return super()._end_message()
        skipped = len(self._skipped)
        self._incomplete = True
        return f"end of {self.description}; skipped {skipped} unreadable images ({self._skipped[0]}, ...)"

    def _release(self) -> None:
        pass


# ------------------------------------------------------------------------------------------------------------
# Webcams and streams: the newest frame only, reconnect with back-off


class _LiveSource(FrameSource):
    is_live = True

    def __init__(self, target: Any, capture: Any, factory: CaptureFactory, reconnect: bool, description: str) -> None:
        super().__init__()
        self._target = target
        self._capture: Any | None = capture
        self._factory = factory
        self._reconnect = reconnect
        self._slot: Frame | None = None
        self._slot_ready = threading.Condition(self._lock)
        self._failed = False
        self.description = description
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.nominal_fps = fps if 0 < fps < 1000 else None

    def read(self, timeout: float = 0.5) -> Frame | None:
        with self._slot_ready:
            if self._slot is None and not (self._failed or self._stop.is_set()):
                self._slot_ready.wait(timeout)
            if self._stop.is_set():
                return None  # closed: nothing more comes out, not even a frame left in the slot
            frame, self._slot = self._slot, None
            return frame

    @property
    def ended(self) -> bool:
        with self._lock:
            return self._stop.is_set() or (self._failed and self._slot is None)

    def _run(self) -> None:
        self._set_status("running")
        wait = BACKOFF_FIRST_S
        while not self._stop.is_set():
            ok, image = self._read_capture()
            if ok:
                self._offer(self._new_frame(image))
                wait = BACKOFF_FIRST_S  # frames flow again: the next outage starts with a short wait
                continue
            if not self._reconnect:
                self._fail(f"{self.description} stopped delivering frames")
                return
            next_wait = self._reopen_with_backoff(wait)
            if next_wait is None:
                return
            wait = next_wait

    def _read_capture(self) -> tuple[bool, np.ndarray | None]:
        try:
            ok, image = self._capture.read()
        except cv2.error:
            return False, None
        return bool(ok) and image is not None, image

    def _offer(self, frame: Frame) -> None:
        """Put the frame in the one-slot buffer; a frame still there was never taken and counts as dropped."""
        with self._slot_ready:
            if self._slot is not None:
                self._dropped += 1
            self._slot = frame
            self._slot_ready.notify_all()

    def _reopen_with_backoff(self, wait: float) -> float | None:
        """Release and reopen until the device is back; returns the wait to use if it fails again soon, or
        None if the source was closed meanwhile. Waits double from ``wait`` up to ``BACKOFF_MAX_S``."""
        self._release()
        reason = f"{self.description} stopped delivering frames"
        while True:
            self._set_status("reconnecting", f"{reason}; reconnecting in {wait:.1f} s")
            if self._stop.wait(wait):
                return None
            capture = _try_open(self._factory, self._target)
            wait = min(wait * 2, BACKOFF_MAX_S)
            if capture is not None:
                self._capture = capture
                with self._lock:
                    self._reconnects += 1
                self._set_status("running", f"reconnected to {self.description}")
                return wait
            reason = f"cannot reopen {self.description}"

    def _crashed(self, message: str) -> None:
        self._fail(message)

    def _fail(self, message: str) -> None:
        with self._slot_ready:
            self._failed = True
            self._status = "failed"
            self._message = message
            self._slot_ready.notify_all()

    def _release(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()

    def _wake_readers(self) -> None:
        with self._slot_ready:
            self._slot_ready.notify_all()


# ------------------------------------------------------------------------------------------------------------
# Opening


def open_source(
    spec: str,
    *,
    realtime: bool = False,
    capture_factory: CaptureFactory | None = None,
    reconnect: bool = True,
) -> FrameSource:
    """Open a source: ``"webcam"`` (index 0), a webcam index (``"1"``), a video file, a folder of images
    (sorted by name) or an rtsp/rtsps/http/https URL. Raises ``InputError`` with one line when it cannot be
    used. Call ``start()`` (or use it as a context manager) to begin capturing."""
    text = str(spec).strip()
    factory = capture_factory or default_capture
    if text.lower() == "webcam" or (text.isascii() and text.isdigit()):
        index = 0 if text.lower() == "webcam" else int(text)
        return _open_live(index, factory, reconnect, f"webcam {index}", "check that a camera is connected and free")
    scheme = _SCHEME.match(text)
    if scheme:
        if scheme.group(1).lower() not in LIVE_SCHEMES:
            raise InputError(
                f"unsupported URL scheme '{scheme.group(1)}://' in source {text}; use rtsp://, rtsps://, "
                "http:// or https:// (or a local file path without a scheme)"
            )
        return _open_live(text, factory, reconnect, _redacted(text), "check the address and that the stream is up")
    path = Path(text).expanduser()
    if not path.exists():
        raise InputError(
            f"source {text} does not exist; give a video file, an image folder, a webcam index or an rtsp/http URL"
        )
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return _open_folder(path, realtime)
    return _open_video(path, factory, realtime)


def default_capture(target: Any) -> Any:
    """``cv2.VideoCapture`` for a device index, file or URL; URLs get open/read timeouts: never a hang."""
    if isinstance(target, str) and _SCHEME.match(target):
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            OPEN_TIMEOUT_MS,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            READ_TIMEOUT_MS,
        ]
        return cv2.VideoCapture(target, cv2.CAP_ANY, params)
    return cv2.VideoCapture(target)


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name (natural order for zero-padded numbering)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _open_folder(path: Path, realtime: bool) -> FrameSource:
    files = list_images(path) if path.is_dir() else [path]
    if not files:
        suffixes = ", ".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES))
        raise InputError(f"folder {path} has no images ({suffixes}); give a folder of frames or a video file")
    first = cv2.imread(str(files[0]), cv2.IMREAD_COLOR)
    if first is None:
        raise InputError(f"cannot read image {files[0]}; it is damaged or not an image")
    return _FolderSource(path, files, first, realtime)


def _open_video(path: Path, factory: CaptureFactory, realtime: bool) -> FrameSource:
    # Absolute, so FFmpeg reads a file: a relative name such as 'concat:a.mp4|b.mp4' or 'http:x' would otherwise
    # be taken as one of its protocols, and paths are never URLs here.
    capture = _try_create(factory, str(path.absolute()))
    if capture is None or not capture.isOpened():
        _release_quietly(capture)
        raise InputError(f"cannot open {path} as a video; check that it is a video file OpenCV can decode")
    ok, first = capture.read()
    if not ok or first is None:
        _release_quietly(capture)
        raise InputError(f"{path} contains no readable frame; check that it is a complete video file")
    return _VideoFileSource(path, capture, first, realtime)


def _open_live(target: Any, factory: CaptureFactory, reconnect: bool, description: str, hint: str) -> FrameSource:
    capture = _try_create(factory, target)
    if capture is None or not capture.isOpened():
        _release_quietly(capture)
        raise InputError(f"cannot open {description}; {hint}")
    return _LiveSource(target, capture, factory, reconnect, description)


def _try_create(factory: CaptureFactory, target: Any) -> Any | None:
    try:
        return factory(target)
    except (cv2.error, OSError):
        return None


def _try_open(factory: CaptureFactory, target: Any) -> Any | None:
    """A reopened capture, or None if it is still not there."""
    capture = _try_create(factory, target)
    if capture is not None and capture.isOpened():
        return capture
    _release_quietly(capture)
    return None


def _release_quietly(capture: Any | None) -> None:
    if capture is not None:
        with contextlib.suppress(cv2.error):
            capture.release()


def _as_bgr(image: np.ndarray) -> np.ndarray:
    """Three-channel BGR uint8, as every sink expects (grayscale and BGRA inputs are converted)."""
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def _redacted(url: str) -> str:
    """The URL without user:password, for titles and messages."""
    return re.sub(r"://[^/@]*@", "://", url)




class _RateMeter:
    """Events per second over a sliding time window."""

    def __init__(self, window_s: float) -> None:
        self._window = window_s
        self._times: collections.deque[float] = collections.deque()

    def tick(self, now: float) -> None:
        self._times.append(now)
        while self._times and now - self._times[0] > self._window:
            self._times.popleft()

    def rate(self) -> float:
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        if time.monotonic() - self._times[-1] > self._window:
            return 0.0  # nothing arrived lately: the source is stalled
        return (len(self._times) - 1) / span if span > 0 else 0.0
