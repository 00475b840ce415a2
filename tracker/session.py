"""The state machine the app drives: idle -> tracking <-> lost -> recovered -> tracking.

The session owns one ``SingleTracker`` and labels each step with a state from its confidence; it never draws and
never knows about windows. Thresholds come from the config's ``TRACK`` section.
"""

from __future__ import annotations

import time

from tracker.config import TrackConfig
from tracker.single import SingleTracker
from tracker.types import Box, Frame, SessionResult, TrackState


class Session:
    """Drive with ``start(frame, box)`` (any time, also to re-target), ``step(frame)`` and ``reset()``."""

    def __init__(self, tracker: SingleTracker, track_cfg: TrackConfig | None = None) -> None:
        self.tracker = tracker
        self.cfg = track_cfg or tracker.cfg.track
        self.state = TrackState.IDLE
        self.target_id: int | None = None
        self._next_id = 1
        self._weak = 0
        self._strong = 0

    def start(self, frame: Frame, box: Box) -> SessionResult:
        """Follow the target in ``box`` (frame pixels) from this frame on; the result reports the box as given."""
        begin = time.perf_counter()
        self.tracker.init(frame.image, box)
        self.state = TrackState.TRACKING
        self.target_id = self._next_id
        self._next_id += 1
        self._weak = self._strong = 0
        return self._result(frame, self.tracker.state, 1.0, begin)

    def step(self, frame: Frame) -> SessionResult:
        begin = time.perf_counter()
        if self.state is TrackState.IDLE:
            return self._result(frame, None, 0.0, begin)
        result = self.tracker.update(frame.image)
        self.state = self._next_state(result.score)
        return self._result(frame, result.box, result.score, begin)

    def reset(self) -> None:
        self.state = TrackState.IDLE
        self.target_id = None
        self._weak = self._strong = 0

    def _next_state(self, score: float) -> TrackState:
        weak = score < self.cfg.lost_score
        self._weak = self._weak + 1 if weak else 0
        self._strong = self._strong + 1 if score >= self.cfg.recover_score else 0
        if self.state in (TrackState.TRACKING, TrackState.RECOVERED):
            return TrackState.LOST if self._weak >= self.cfg.lost_frames else TrackState.TRACKING
        if self.state is TrackState.LOST and self._strong >= self.cfg.recover_frames:
            return TrackState.RECOVERED
        return self.state

    def _result(self, frame: Frame, box: Box | None, score: float, begin: float) -> SessionResult:
        return SessionResult(
            frame_index=frame.index,
            timestamp=frame.timestamp,
            box=box,
            score=score,
            state=self.state,
            elapsed_ms=(time.perf_counter() - begin) * 1e3,
            target_id=self.target_id,
        )
