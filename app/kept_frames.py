"""What the window's worker keeps of the frames: the recent tracked ones, the ones that arrive while the user draws,
and the recording they end up in.

The picture on display may be a few frames older than the newest one tracked, and a box drawn on it must still
replace the results of that frame and of every frame after it. So the worker keeps its newest tracked frames a
little while (``RecentFrames``) and records a frame only once ``RECORD_DELAY_FRAMES`` newer ones were tracked, or
when the recording, the source or the worker ends (``TrackLog``). While the user draws, a file's frames that arrive
are kept untracked (``HeldFrames``) so the tracker can catch up through them from the drawn box.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from app.commands import RecordTarget
from app.record import Recorder
from app.render import Trails, draw_result
from tracker.types import Frame, SessionResult

RECORD_DELAY_FRAMES = 8  # how far the display may lag the worker and a drawn box still rewrite the results
HOLD_BUDGET_BYTES = 256 * 2**20  # a file's frames kept while the user draws; beyond this the file waits


@dataclass(frozen=True)
class Tracked:
    """A frame, its result, and capture-to-result time (ms) for the recorded video's info line."""

    frame: Frame
    result: SessionResult
    latency_ms: float


class RecentFrames:
    """The newest tracked frames, oldest first, at most ``size``."""

    def __init__(self, size: int = RECORD_DELAY_FRAMES) -> None:
        self._entries: collections.deque[Tracked] = collections.deque()
        self._size = size

    def add(self, tracked: Tracked) -> Tracked | None:
        """Keep ``tracked``; what was kept for its frame and later frames goes (they are being tracked again).
        Returns the oldest entry when it leaves to make room: it is final and may be recorded."""
        index = tracked.frame.index
        while self._entries and self._entries[-1].frame.index >= index:
            self._entries.pop()
        self._entries.append(tracked)
        return self._entries.popleft() if len(self._entries) > self._size else None

    @property
    def newest(self) -> Tracked | None:
        return self._entries[-1] if self._entries else None

    def frames_after(self, index: int) -> list[Frame]:
        """The frames kept that came after frame ``index``, oldest first."""
        return [entry.frame for entry in self._entries if entry.frame.index > index]

    def clear(self) -> None:
        self._entries.clear()

    def __iter__(self) -> Iterator[Tracked]:
        return iter(self._entries)


class HeldFrames:
    """A file's frames read while the user draws, oldest first, not tracked yet."""

    def __init__(self) -> None:
        self.active = False
        self._frames: list[Frame] = []
        self._bytes = 0

    @property
    def full(self) -> bool:
        return self._bytes >= HOLD_BUDGET_BYTES

    def keep(self, frame: Frame) -> None:
        self._frames.append(frame)
        self._bytes += frame.image.nbytes

    def release(self) -> list[Frame]:
        """End the hold; the frames kept, to be tracked now."""
        frames, self._frames, self._bytes, self.active = self._frames, [], 0, False
        return frames


class Recording:
    """Results and annotated video from frame ``first_index`` on, each frame written once, in order: a frame
    tracked again after it was written (a box drawn on an older picture) changes the display, not the files.

    ``info`` gives the line drawn at the top of a recorded video frame; ``notice`` is told when a one-target results
    text file leaves out targets added later. Raises ``RecordingError`` when a path cannot be written."""

    def __init__(
        self,
        target: RecordTarget,
        fps: float,
        trail_length: int,
        first_index: int,
        info: Callable[[Tracked], str],
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self.target = target
        self._recorder = Recorder(target.results, target.video, fps=fps, note=notice)
        self._trail = Trails(trail_length)
        self._info = info
        self._last_written = first_index - 1

    @property
    def error(self) -> str | None:
        """Why recording stopped (one line), or None while everything is being written."""
        return self._recorder.error

    def describe(self) -> str:
        """Where the recording goes, e.g. ``out.txt and out.mp4``."""
        return " and ".join(str(p) for p in (self.target.results, self.target.video) if p is not None)

    def write(self, tracked: Tracked) -> None:
        if tracked.frame.index <= self._last_written:
            return
        self._last_written = tracked.frame.index
        annotated = None
        if self.target.video is not None:
            self._trail.add(tracked.result)
            annotated = draw_result(tracked.frame.image, tracked.result, self._trail, self._info(tracked))
        self._recorder.write(tracked.result, annotated)

    def close(self) -> str:
        """Finish the files; one line saying what was saved where, or why recording stopped."""
        self._recorder.close()
        if self._recorder.error:
            return self._recorder.error
        return f"saved {self._recorder.results_written} frames to {self.describe()}"


class TrackLog:
    """The recent tracked frames and the recording they go to once final.

    ``info`` gives a recorded video frame's info line; ``stopped`` is told why when writing fails and the
    recording stops on its own (tracking goes on); ``notice`` hears what the recording has to say meanwhile."""

    def __init__(
        self,
        info: Callable[[Tracked], str],
        stopped: Callable[[str], None],
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self.recent = RecentFrames()
        self._recording: Recording | None = None
        self._info = info
        self._stopped = stopped
        self._notice = notice

    def add(self, tracked: Tracked) -> None:
        final = self.recent.add(tracked)
        if final is not None:
            self._write(final)

    def flush(self) -> None:
        """Write every recent frame not written yet (a frame is written once, however often it is tracked)."""
        for tracked in self.recent:
            self._write(tracked)

    def start(self, target: RecordTarget, fps: float, trail_length: int) -> str:
        """Record from the newest frame on; returns where to. ``RecordingError`` when a path cannot be written."""
        newest = self.recent.newest
        first = newest.frame.index if newest is not None else 0
        self._recording = Recording(target, fps, trail_length, first, self._info, self._notice)
        return self._recording.describe()

    def stop(self) -> str | None:
        """Finish the recording: one line on what was saved, or None when nothing was being recorded."""
        if self._recording is None:
            return None
        self.flush()
        recording, self._recording = self._recording, None
        return recording.close()

    def _write(self, tracked: Tracked) -> None:
        if self._recording is None:
            return
        self._recording.write(tracked)
        if self._recording.error:  # e.g. the disk is full
            recording, self._recording = self._recording, None
            self._stopped(recording.close())
