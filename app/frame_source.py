"""What every frame source shares: the capture thread, counters, status and the capture helpers.

The kinds of source live beside this module (``app.file_sources``, ``app.live_source``); ``app.sources.open_source``
picks one. Every frame gets its index (0-based, in capture order) and its capture time on the monotonic clock.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from tracker.errors import first_line
from tracker.types import Frame

RATE_WINDOW_S = 1.0  # capture fps is measured over about this much recent time
JOIN_TIMEOUT_S = 10.0

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


# ------------------------------------------------------------------------------------------------------------
# Captures


def create_capture(factory: CaptureFactory, target: Any) -> Any | None:
    """``factory(target)``, or None when the backend raised instead of returning a closed capture."""
    try:
        return factory(target)
    except (cv2.error, OSError):
        return None


def reopen_capture(factory: CaptureFactory, target: Any) -> Any | None:
    """A reopened capture, or None if it is still not there."""
    capture = create_capture(factory, target)
    if capture is not None and capture.isOpened():
        return capture
    release_quietly(capture)
    return None


def release_quietly(capture: Any | None) -> None:
    """Release a capture that is being given up on; its own errors change nothing then."""
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
