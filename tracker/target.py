"""One followed target: its box tracker, its state from the tracker's score with hysteresis, and re-detection
while it is lost.

A target's score is its presence (``tracker.presence``: the score-map peak and the box's colours, calibrated).
States: tracking -> lost after ``TRACK.LOST_FRAMES`` steps in a row score below ``TRACK.LOST_SCORE``; lost ->
recovered once it is found again (re-detection: ``tracker.redetect``; without it, the tracker's own step scoring
``TRACK.RECOVER_SCORE`` for ``TRACK.RECOVER_FRAMES`` steps); recovered -> tracking on the next step that is not
weak.
While lost there is no measurement: results carry ``lost=True`` (their box is the tracker's own guess, which the
session does not report) and the tracker is put back on the last box it was tracked at when it is lost, so that
the weak steps before the loss do not drag the search onto the background.

``update_targets`` steps several targets in one batched forward; ``Target.update`` is the same for one, with the
evaluator's ``init``/``update`` contract.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tracker.config import TrackConfig
from tracker.preprocess import to_bgr_uint8
from tracker.presence import TargetPresence
from tracker.redetect import Redetector
from tracker.single import SingleTracker, update_together
from tracker.types import Box, TrackResult, TrackState


class Target:
    """A ``SingleTracker`` with honest states. ``state``, ``score`` and ``last_seen`` (the last box it was tracked
    at) describe the latest step."""

    def __init__(self, tracker: SingleTracker, target_id: int = 0, track_cfg: TrackConfig | None = None) -> None:
        self.tracker = tracker
        self.target_id = target_id
        self.cfg = track_cfg or tracker.cfg.track
        self.redetector = Redetector(tracker, self.presence, self.cfg) if self.cfg.redetect.enabled else None
        self.judge: TargetPresence | None = None
        self.state = TrackState.IDLE
        self.score = 0.0
        self.last_seen: Box | None = None
        self._box: Box | None = None  # the latest step's box
        self._weak = 0
        self._strong = 0

    @property
    def searching(self) -> bool:
        """Whether the next step is a re-detection step rather than a tracking step."""
        return self.state is TrackState.LOST and self.redetector is not None

    @property
    def box(self) -> Box | None:
        """The latest step's box, None while lost."""
        return None if self.state in (TrackState.LOST, TrackState.IDLE) else self._box

    def init(self, frame_bgr: np.ndarray, box: Box) -> None:
        image = to_bgr_uint8(frame_bgr)
        self.tracker.init(image, box)
        self.judge = TargetPresence(image, self.tracker.state, self.cfg.presence)
        if self.redetector is not None:
            self.redetector.prepare()  # a static backend builds its re-detection batch now, not mid-stream
        self.state, self.score, self.last_seen = TrackState.TRACKING, 1.0, self.tracker.state
        self._box = self.last_seen
        self._weak = self._strong = 0

    def update(self, frame_bgr: np.ndarray) -> TrackResult:
        return update_targets([self], frame_bgr)[0]

    def presence(self, image_bgr: np.ndarray, box: Box, peak: float) -> float:
        """The calibrated probability that the target is at ``box``, found there with score-map ``peak``."""
        return self.judge.at(image_bgr, box, peak)

    def observe(self, image_bgr: np.ndarray, raw: TrackResult) -> TrackResult:
        """Label a tracking step's result with its presence and the state it leads to."""
        score = self.judge.step(image_bgr, raw.box, raw.score, self.cfg.recover_score)
        step = TrackResult(raw.box, score, raw.elapsed_ms)
        self.score, self._box = step.score, step.box
        weak = step.score < self.cfg.lost_score
        self._weak = self._weak + 1 if weak else 0
        self._strong = self._strong + 1 if step.score >= self.cfg.recover_score else 0
        if self.state is TrackState.LOST:  # no re-detection: the tracker's own step must find it again
            if self._strong < self.cfg.recover_frames:
                return self._lost(step)
            self.state, self.last_seen = TrackState.RECOVERED, step.box
            return step
        if self._weak >= self.cfg.lost_frames:
            self._lose(image_bgr)
            return self._lost(step)
        if not weak:
            self.state, self.last_seen = TrackState.TRACKING, step.box
        return step

    def search(self, image_bgr: np.ndarray) -> TrackResult:
        """A lost step with re-detection: found again, or still lost (with the tracker's own guess)."""
        step = self.redetector.step(image_bgr)
        self.score, self._box = step.guess.score, step.guess.box
        if step.found is None:
            return step.guess
        found = step.found
        self.tracker.move_to(image_bgr, found.box)
        self.state, self.last_seen, self._box, self._weak = TrackState.RECOVERED, found.box, found.box, 0
        self.score = found.score
        return TrackResult(found.box, found.score, step.guess.elapsed_ms)

    def _lose(self, image_bgr: np.ndarray) -> None:
        self.state = TrackState.LOST
        self._strong = 0
        self.tracker.move_to(image_bgr, self.last_seen)
        if self.redetector is not None:
            frame_size = (image_bgr.shape[1], image_bgr.shape[0])
            # The colours at init: a running average learnt up to the loss may have taken in the background.
            self.redetector.start(self.last_seen, frame_size, self.judge.colour.initial)

    @staticmethod
    def _lost(step: TrackResult) -> TrackResult:
        return dataclasses.replace(step, lost=True)


def update_targets(targets: list[Target], frame_bgr: np.ndarray) -> list[TrackResult]:
    """Every target into this frame: the followed ones in one batched forward (their trackers share a network),
    then each lost one's re-detection step."""
    image = to_bgr_uint8(frame_bgr)
    stepping = [t for t in targets if not t.searching]
    steps = dict(zip(map(id, stepping), update_together([t.tracker for t in stepping], image), strict=True))
    return [t.observe(image, steps[id(t)]) if id(t) in steps else t.search(image) for t in targets]
