"""Files and image folders: every frame, in order.

Frames go through a small bounded queue; the capture thread waits when it is full, so nothing is dropped
(``realtime=True`` paces delivery at the file's rate, as a player would).
"""

from __future__ import annotations

import queue
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from app.frame_source import FrameSource
from tracker.errors import first_line
from tracker.types import Frame

FILE_QUEUE_FRAMES = 8  # frames a file source reads ahead; small, so memory stays flat for long videos
FOLDER_FPS = 30.0  # pace of an image folder in realtime mode (folders carry no frame rate)
# Containers without a frame index report duration x fps, which can be off by a frame or two; fewer frames than
# that are reported as a damaged or truncated file.
FRAME_COUNT_SLACK = 2


class OrderedSource(FrameSource):
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


class VideoFileSource(OrderedSource):
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


class FolderSource(OrderedSource):
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
