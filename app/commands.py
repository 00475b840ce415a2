"""What the window and its tracking worker tell each other: commands one way, frame updates and source facts back.

The GUI thread sends commands through the worker's queue (``TrackingWorker.send``); the worker answers with Qt
signals carrying ``FrameUpdate`` and ``SourceInfo``. All values are immutable, so both threads may hold them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tracker.types import Box, Frame, SessionResult

# -- commands: what the GUI asks for ------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordTarget:
    """Where to record: a results file (.txt or .jsonl) and/or an annotated video; either may be None."""

    results: Path | None = None
    video: Path | None = None


@dataclass(frozen=True)
class OpenSource:
    """Replace the current source. ``init_box`` (frame pixels) starts tracking on its first frame, and each of
    ``more_boxes`` is added there as a further target; ``record`` starts recording from its first frame;
    ``max_frames`` ends the source after that many frames. Opening a source ends any recording of the previous
    one."""

    spec: str
    init_box: Box | None = None
    record: RecordTarget | None = None
    max_frames: int | None = None
    more_boxes: tuple[Box, ...] = ()


@dataclass(frozen=True)
class HoldFrames:
    """The user started drawing on the picture on display: track nothing new until ``SetTarget`` or
    ``ReleaseFrames``, keeping what arrives meanwhile (a file's frames; a live source keeps its newest)."""


@dataclass(frozen=True)
class ReleaseFrames:
    """The drawing was cancelled: go on with the current target through the frames kept meanwhile."""


@dataclass(frozen=True)
class SetTarget:
    """Follow the object in ``box`` (frame pixels of ``frame``) from ``frame`` on, then catch up through the frames
    after it; without ``frame``, from the newest frame. Ends a hold."""

    box: Box
    frame: Frame | None = None


@dataclass(frozen=True)
class AddTarget:
    """Follow the object in ``box`` (frame pixels of ``frame``) as one more target, beside those followed already
    (a Shift+drag); with nothing followed yet it is the same as ``SetTarget``. Ends a hold."""

    box: Box
    frame: Frame | None = None


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


Command = (
    OpenSource
    | HoldFrames
    | ReleaseFrames
    | SetTarget
    | AddTarget
    | ResetTarget
    | SetPaused
    | StepOnce
    | SetQuery
    | StartRecording
    | StopRecording
)


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
