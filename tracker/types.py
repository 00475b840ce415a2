"""Values that cross module lines: boxes in frame pixels, frames, and per-frame results."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

import numpy as np


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in frame pixels: top-left corner (x, y), width w and height h."""

    x: float
    y: float
    w: float
    h: float

    @classmethod
    def from_xywh(cls, values) -> Box:
        x, y, w, h = (float(v) for v in values)
        return cls(x, y, w, h)

    @classmethod
    def from_xyxy(cls, x1: float, y1: float, x2: float, y2: float) -> Box:
        return cls(float(x1), float(y1), float(x2 - x1), float(y2 - y1))

    def as_list(self) -> list[float]:
        return [self.x, self.y, self.w, self.h]

    @property
    def cx(self) -> float:
        return self.x + 0.5 * self.w

    @property
    def cy(self) -> float:
        return self.y + 0.5 * self.h

    @property
    def area(self) -> float:
        return max(self.w, 0.0) * max(self.h, 0.0)

    def is_finite(self) -> bool:
        return all(math.isfinite(v) for v in (self.x, self.y, self.w, self.h))

    def iou(self, other: Box) -> float:
        ix = max(0.0, min(self.x + self.w, other.x + other.w) - max(self.x, other.x))
        iy = max(0.0, min(self.y + self.h, other.y + other.h) - max(self.y, other.y))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0


@dataclass(frozen=True, eq=False)
class Frame:
    """One captured picture: its index in the source, capture time (seconds, monotonic clock) and BGR pixels."""

    index: int
    timestamp: float
    image: np.ndarray


class TrackState(str, Enum):
    """What the session is doing with its target; shown to the user on every frame."""

    IDLE = "idle"
    GROUNDING = "grounding"
    TRACKING = "tracking"
    LOST = "lost"
    RECOVERED = "recovered"


@dataclass(frozen=True)
class TrackResult:
    """The tracker's answer for one frame.

    ``box`` is in frame pixels; ``score`` is, from a ``SingleTracker``, the peak of the raw score map (0..1, the
    network's confidence that the target centre is in the search region) and, from a ``tracker.target.Target``,
    the target's presence (0..1, calibrated: ``tracker.presence``); ``elapsed_ms`` is the wall time of the whole
    tracker step. ``lost``:
    the tracker reports the target absent from this frame (a ``tracker.target.Target`` in state LOST); ``box`` is
    then only the tracker's guess, where its own step went: the session and the results files report no box, and
    benchmarks of leaving and returning count the frame as "no box"; the evaluator's AUC, which needs a box on
    every frame, scores the guess.
    """

    box: Box
    score: float
    elapsed_ms: float
    lost: bool = False


@dataclass(frozen=True)
class Candidate:
    """One grounded match for a text query, in frame pixels."""

    box: Box
    score: float
    track_id: int | None = None


@dataclass(frozen=True)
class GroundingResult:
    """The grounder's answer for one frame: candidates (best first), presence probability and online events."""

    candidates: tuple[Candidate, ...]
    presence: float
    events: tuple[str, ...] = field(default_factory=tuple)
    elapsed_ms: float = 0.0


@dataclass(frozen=True)
class TargetResult:
    """One followed target of a session (several boxes, or several matches of a query): its identity, box in
    frame pixels (None while it is lost), the box tracker's score, its own state, and ``last_seen``, the last box
    it was tracked at (the same as ``box`` unless lost)."""

    target_id: int
    box: Box | None
    score: float
    state: TrackState
    last_seen: Box | None = None


@dataclass(frozen=True)
class SessionResult:
    """What the session reports for one frame, for every sink (window, renderer, recorder).

    ``box`` is the current estimate in frame pixels (None when idle, and while the target is lost: there is no
    measurement; ``last_seen`` then keeps where it was last tracked); ``score`` is the tracker's confidence for
    this frame; ``elapsed_ms`` the time the session spent on it. ``box``/``target_id``/``state`` are the primary
    target's (the first; while grounding: the best candidate and the presence as ``score``), ``targets`` every
    followed target (box-started or matched by a query), and ``grounding`` the grounder's answer on the frames
    where it ran.
    """

    frame_index: int
    timestamp: float
    box: Box | None
    score: float
    state: TrackState
    elapsed_ms: float = 0.0
    target_id: int | None = None
    query: str | None = None
    targets: tuple[TargetResult, ...] = ()
    grounding: GroundingResult | None = None
    last_seen: Box | None = None
