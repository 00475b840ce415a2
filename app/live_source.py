"""Webcams and stream URLs: the newest frame only, reconnecting with back-off.

A one-slot buffer holds the newest frame: a frame nobody took before the next one arrived is replaced and counted
as dropped, so the tracker always works on the present. A source that stops delivering is reopened with
exponential back-off.
"""

from __future__ import annotations

import threading
from typing import Any

import cv2
import numpy as np

from app.frame_source import CaptureFactory, FrameSource, reopen_capture
from tracker.types import Frame

BACKOFF_FIRST_S = 0.5  # first wait before reopening a live source; doubles up to BACKOFF_MAX_S
BACKOFF_MAX_S = 8.0


class LiveSource(FrameSource):
    """A webcam or stream; see the module docstring."""

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
            capture = reopen_capture(self._factory, self._target)
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
