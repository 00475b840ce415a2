"""The state machine the app drives: idle -> tracking <-> lost -> recovered -> tracking.

Box mode: ``start(frame, box)`` follows one target, ``add_target(frame, box)`` more (up to
``TRACK.MAX_TARGETS``); each is a ``tracker.target.Target`` (its state from its score with hysteresis, and
re-detection while lost), and all of them step in one batched forward. The first target is the primary: its box,
score and state are the result's own. The session never draws and never knows about windows.

Grounding mode (with a ``Grounder``): ``set_query(text)`` -> grounding; once the query's object is present for a
few frames the box tracker takes over from the best grounded box (tracking). Grounding re-checks every few frames
and whenever the tracker weakens, re-targets a drifted tracker, and turns further matches into further targets
whose identities are kept by assignment (``lap``). Every step uses only the current and earlier frames.
Thresholds for this mode come from the grounder's ``GROUNDING`` section.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tracker.config import TrackConfig
from tracker.errors import InputError
from tracker.grounding import Grounder, GroundingStep, association_cost, linear_assignment
from tracker.preprocess import to_bgr_uint8
from tracker.presence import TargetPresence
from tracker.single import SingleTracker, update_together
from tracker.target import Target, update_targets
from tracker.types import (
    Box,
    Candidate,
    Frame,
    GroundingResult,
    SessionResult,
    TargetResult,
    TrackResult,
    TrackState,
)

DUPLICATE_IOU = 0.5  # grounded candidates overlapping a better one this much are the same object


@dataclass(eq=False)
class _Target:
    """One followed target in grounding mode: its own box tracker (sharing the model), its grounded appearance
    and its colours at (re)initialisation, for its presence."""

    target_id: int
    tracker: SingleTracker
    box: Box
    appearance: np.ndarray
    presence: TargetPresence
    last_seen: Box | None = None  # the last box it was tracked at with confidence
    score: float = 1.0
    state: TrackState = TrackState.TRACKING
    weak: int = 0


class Session:
    """Drive with ``start(frame, box)`` (any time, also to re-target), ``step(frame)`` and ``reset()``."""

    def __init__(
        self,
        tracker: SingleTracker,
        track_cfg: TrackConfig | None = None,
        grounder: Grounder | None = None,
        new_tracker: Callable[[], SingleTracker] | None = None,
    ) -> None:
        """``grounder`` enables text queries; ``new_tracker`` makes the box tracker of each further target of a
        query (default: another ``SingleTracker`` sharing ``tracker``'s model)."""
        self.tracker = tracker
        self.cfg = track_cfg or tracker.cfg.track
        self.grounder = grounder
        self._new_tracker = new_tracker or (
            lambda: SingleTracker(tracker.model, tracker.cfg, tracker.device, network=tracker.network)
        )
        self.state = TrackState.IDLE
        self.target_id: int | None = None
        self.query: str | None = None
        self.targets: list[_Target] = []  # grounding mode's
        self.box_targets: list[Target] = []  # box mode's, primary first
        self._next_id = 1
        self._weak = 0
        self._strong = 0
        self._seen = 0
        self._since_check = 0
        self._rejected: deque[np.ndarray] = deque(maxlen=grounder.gcfg.rejected_memory if grounder else 0)

    def start(self, frame: Frame, box: Box) -> SessionResult:
        """Follow the target in ``box`` (frame pixels) from this frame on, and no other; the result reports the box
        as given."""
        begin = time.perf_counter()
        target = self._box_target(frame, box, self.tracker)  # a bad box raises here and changes nothing
        self.query = None
        self.targets = []
        self.box_targets = [target]
        return self._box_result(frame, begin)

    def add_target(self, frame: Frame, box: Box) -> SessionResult:
        """Follow one more target, in ``box``, beside those already followed (idle: the same as ``start``)."""
        if self.query is not None:
            raise InputError("a box adds a target to box tracking; clear the text query first, or drag without shift")
        if not self.box_targets:
            return self.start(frame, box)
        if len(self.box_targets) >= self.cfg.max_targets:
            raise InputError(
                f"already following {self.cfg.max_targets} targets, the most at once "
                "(TRACK.MAX_TARGETS); drag without shift to start over"
            )
        begin = time.perf_counter()
        self.box_targets.append(self._box_target(frame, box, self._new_tracker()))
        return self._box_result(frame, begin)

    def step(self, frame: Frame) -> SessionResult:
        begin = time.perf_counter()
        if self.state is TrackState.IDLE:
            return self._result(frame, None, 0.0, begin)
        if self.query is not None:
            return self._step_grounding(frame, begin)
        update_targets(self.box_targets, frame.image)
        return self._box_result(frame, begin)

    def reset(self) -> None:
        self.state = TrackState.IDLE
        self.target_id = None
        self.query = None
        self.targets = []
        self.box_targets = []
        self._weak = self._strong = 0

    # --------------------------------------------------------------------------------------------------------
    # Box mode

    def _box_target(self, frame: Frame, box: Box, tracker: SingleTracker) -> Target:
        target = Target(tracker, self._next_id, self.cfg)
        target.init(frame.image, box)  # validates the box first
        self._next_id += 1
        return target

    def _box_result(self, frame: Frame, begin: float) -> SessionResult:
        primary = self.box_targets[0]
        self.state, self.target_id = primary.state, primary.target_id
        targets = tuple(TargetResult(t.target_id, t.box, t.score, t.state, t.last_seen) for t in self.box_targets)
        return dataclasses.replace(
            self._result(frame, primary.box, primary.score, begin), targets=targets, last_seen=primary.last_seen
        )

    # --------------------------------------------------------------------------------------------------------
    # Grounding mode

    def set_query(self, text: str) -> str:
        """Look for what ``text`` describes from the next frame on (state grounding); returns the query as used.
        Replaces any current target. InputError for an unusable query or a session without a grounder."""
        if self.grounder is None:
            raise InputError("text queries need a grounding model; start the app with grounding enabled")
        self.query = self.grounder.set_query(text)
        self.targets = []
        self._rejected.clear()
        self.target_id = None
        self.state = TrackState.GROUNDING
        self._weak = self._strong = self._seen = self._since_check = 0
        return self.query

    def _step_grounding(self, frame: Frame, begin: float) -> SessionResult:
        if self.state is TrackState.GROUNDING:
            return self._search(frame, begin)
        primary = self._update_targets(frame)
        self._since_check += 1
        weak = primary.score < self.cfg.lost_score
        grounding = None
        if weak or self.state is TrackState.LOST or self._since_check >= self.grounder.gcfg.recheck_interval:
            grounding = self._recheck(frame)
            primary = self.targets[0]
        if grounding is None or self.state is not TrackState.RECOVERED:
            self.state = self._next_state(primary.score)
        return self._grounding_result(frame, primary.box, primary.score, begin, grounding)

    def _search(self, frame: Frame, begin: float) -> SessionResult:
        """Grounding state: run the grounder; hand over to the box tracker once the object is seen long enough."""
        step = self.grounder.ground(frame.image)
        result = step.result
        g = self.grounder.gcfg
        seen = result.presence >= g.presence_on and bool(result.candidates)
        self._seen = self._seen + 1 if seen else 0
        best = result.candidates[0].box if result.candidates else None
        if self._seen >= g.handoff_frames:
            self._hand_over(frame, step)
            primary = self.targets[0]
            return self._grounding_result(frame, primary.box, primary.score, begin, result)
        return self._grounding_result(frame, best, result.presence, begin, result)

    def _hand_over(self, frame: Frame, step: GroundingStep) -> None:
        self.targets = []
        kept = self._distinct(step.result.candidates, self.grounder.gcfg.max_targets)
        for index in kept:
            self._add_target(frame, step.result.candidates[index].box, step.embeddings[index])
        self._reject(step, kept)
        self.target_id = self.targets[0].target_id
        self.state = TrackState.TRACKING
        self._weak = self._strong = self._since_check = 0

    def _distinct(self, candidates: tuple[Candidate, ...], limit: int | None = None) -> list[int]:
        """Indices of the candidates that are separate objects worth following (best first, at most ``limit``):
        the best always, others scoring at least ``extra_target_score``."""
        g = self.grounder.gcfg
        kept: list[int] = []
        for i, cand in enumerate(candidates):
            if i and cand.score < g.extra_target_score:
                continue
            if all(cand.box.iou(candidates[k].box) < DUPLICATE_IOU for k in kept):
                kept.append(i)
        return kept[:limit]

    def _add_target(self, frame: Frame, box: Box, appearance: np.ndarray) -> _Target:
        tracker = self.tracker if not self.targets else self._new_tracker()
        tracker.init(frame.image, box)
        target = _Target(
            self._next_id,
            tracker,
            box,
            appearance,
            TargetPresence(to_bgr_uint8(frame.image), box, self.cfg.presence),
            last_seen=box,
        )
        self._next_id += 1
        self.targets.append(target)
        return target

    def _update_targets(self, frame: Frame) -> _Target:
        """Every target's box tracker steps into this frame; secondary targets lost for long are dropped."""
        image = to_bgr_uint8(frame.image)
        for target, result in zip(self.targets, self._step_trackers(image), strict=True):
            score = target.presence.step(image, result.box, result.score, self.cfg.recover_score)
            target.box, target.score = result.box, score
            target.weak = target.weak + 1 if target.score < self.cfg.lost_score else 0
            if not target.weak:
                target.last_seen = result.box
            target.state = TrackState.LOST if target.weak >= self.cfg.lost_frames else TrackState.TRACKING
        self.targets = [self.targets[0]] + [t for t in self.targets[1:] if t.state is not TrackState.LOST]
        return self.targets[0]

    def _step_trackers(self, image: np.ndarray) -> list[TrackResult]:
        """The targets' box trackers into this frame: in one batched forward when they are this project's trackers
        sharing a network, else one by one (the OpenCV trackers a grounding evaluation may use)."""
        trackers = [t.tracker for t in self.targets]
        network = getattr(trackers[0], "network", None)
        if network is not None and all(getattr(t, "network", None) is network for t in trackers):
            return update_together(trackers, image)
        return [tracker.update(image) for tracker in trackers]

    def _recheck(self, frame: Frame) -> GroundingResult:
        """Ground this frame and reconcile with the targets: matched targets that drifted are re-initialised on
        their grounded box, a lost primary takes the best unmatched match, other matches become new targets."""
        self._since_check = 0
        step = self.grounder.ground(frame.image)
        g = self.grounder.gcfg
        if step.result.presence < g.presence_on or not step.result.candidates:
            return step.result
        candidates = step.result.candidates
        everyone = self._distinct(candidates)
        distinct = everyone[: g.max_targets]
        cost = association_cost(
            [t.box for t in self.targets],
            np.stack([t.appearance for t in self.targets]),
            [candidates[i].box for i in distinct],
            step.embeddings[distinct],
            g.appearance_weight,
        )
        matches, _, unmatched = linear_assignment(cost, g.match_cost_limit)
        for row, col in matches:
            target, index = self.targets[row], distinct[col]
            if target.box.iou(candidates[index].box) < g.retarget_iou:
                self._retarget(frame, target, candidates[index].box)
            target.appearance = step.embeddings[index]
        matched_rows = {row for row, _ in matches}
        confirmed = 0 in matched_rows and self.targets[0].score >= self.cfg.lost_score
        free = [distinct[c] for c in unmatched]
        others = [i for i in everyone if i not in distinct]
        pick = self._primary_pick(free, distinct[0], matched_rows, step.embeddings, others)
        if pick is not None:
            if pick in free:
                free.remove(pick)
            self._retarget(frame, self.targets[0], candidates[pick].box)
            self.targets[0].appearance = step.embeddings[pick]
        followed = [index for index in distinct if index not in free]
        for index in free:
            if len(self.targets) < g.max_targets:
                self._add_target(frame, candidates[index].box, step.embeddings[index])
                followed.append(index)
        if confirmed:
            self._reject(step, followed)
        return step.result

    def _reject(self, step: GroundingStep, followed: list[int]) -> None:
        """Remember the appearance of the candidates passed over while the target was confirmed (not the ones
        followed, nor duplicates of them)."""
        candidates = step.result.candidates
        for index, cand in enumerate(candidates):
            if index not in followed and all(cand.box.iou(candidates[k].box) < DUPLICATE_IOU for k in followed):
                self._rejected.append(step.embeddings[index])

    def _looks_rejected(self, appearance: np.ndarray) -> bool:
        """True when ``appearance`` is closer (cosine) to a passed-over candidate than to the primary target."""
        if not self._rejected:
            return False
        own = float(appearance @ self.targets[0].appearance)
        return max(float(appearance @ other) for other in self._rejected) > own

    def _primary_pick(
        self, free: list[int], best: int, matched_rows: set[int], embeddings: np.ndarray, others: list[int]
    ) -> int | None:
        """The candidate the primary target moves to, if any: it matched nothing, and the best grounded box
        matched no other target either (the tracker drifted off what the query describes); a lost or weak
        primary takes the best free candidate (or, failing that, a lesser match beyond ``max_targets``) that
        does not look like one passed over before."""
        if 0 in matched_rows:
            return None
        weak = self.state is TrackState.LOST or self.targets[0].score < self.cfg.lost_score
        if not weak:
            return best if best in free else None
        return next((i for i in free + others if not self._looks_rejected(embeddings[i])), None)

    def _retarget(self, frame: Frame, target: _Target, box: Box) -> None:
        target.tracker.init(frame.image, box)
        target.presence = TargetPresence(to_bgr_uint8(frame.image), box, self.cfg.presence)
        target.last_seen = box
        target.box, target.score, target.weak, target.state = box, 1.0, 0, TrackState.TRACKING
        if target is self.targets[0] and self.state is TrackState.LOST:
            self.state = TrackState.RECOVERED
            self._weak = 0

    def _grounding_result(
        self, frame: Frame, box: Box | None, score: float, begin: float, grounding: GroundingResult | None
    ) -> SessionResult:
        targets = tuple(
            TargetResult(t.target_id, None if t.state is TrackState.LOST else t.box, t.score, t.state, t.last_seen)
            for t in self.targets
        )
        lost = self.state is TrackState.LOST
        return dataclasses.replace(
            self._result(frame, None if lost else box, score, begin),
            target_id=self.targets[0].target_id if self.targets else None,
            query=self.query,
            targets=targets,
            grounding=grounding,
            last_seen=self.targets[0].last_seen if self.targets else None,
        )

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
