"""The tracking session as the window's worker drives it, in the worker thread.

A failure in the session (a box outside the frame, the computer out of memory) becomes one line for the user and
an idle result: it stops tracking, never the video. The driver also averages the step time for the status bar and
loads the grounding model on the first query, since it takes seconds and most users only draw boxes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tracker.config import TrackConfig
from tracker.errors import TrackerError, first_line
from tracker.types import Box, Frame, SessionResult, TrackState

TRACK_FPS_SMOOTHING = 0.1  # weight of the newest step in the tracking-speed average
GROUNDING_MISSING = "text grounding needs the grounding model, which is not installed yet"

Say = Callable[[str], None]


class SessionDriver:
    """Drives ``session`` (a ``tracker.session.Session``, or anything with start/step/reset and perhaps add_target;
    None when the model did not load) and tells the user through ``notice`` and ``failed`` what went wrong."""

    def __init__(
        self, session: Any | None, grounder_factory: Callable[[], Any] | None, notice: Say, failed: Say
    ) -> None:
        self.session = session
        self._grounder_factory = grounder_factory
        self._notice = notice
        self._failed = failed
        self._step_ms: float | None = None

    @property
    def available(self) -> bool:
        return self.session is not None

    @property
    def trail_length(self) -> int:
        """The trail the session's config asks for (the default for a session without one)."""
        track_cfg = getattr(self.session, "cfg", None)
        return (track_cfg if isinstance(track_cfg, TrackConfig) else TrackConfig()).trail_length

    @property
    def model_note(self) -> str:
        """Why the model runs on another backend than the one asked for (e.g. ONNX Runtime would not load), or ''."""
        network = getattr(getattr(self.session, "tracker", None), "network", None)
        return getattr(network, "note", None) or ""

    @property
    def track_fps(self) -> float:
        return 1000.0 / self._step_ms if self._step_ms else 0.0

    def start(self, frame: Frame, box: Box) -> SessionResult:
        if self.session is None:
            return idle_result(frame)
        try:
            return self.session.start(frame, box)
        except Exception as err:  # e.g. InputError for a box outside the frame
            self.session.reset()
            self._failed(f"cannot track that box: {first_line(err)}")
            return idle_result(frame)

    def add_target(self, frame: Frame, box: Box) -> SessionResult | None:
        """Follow ``box`` as one more target from ``frame`` on. None when the session refuses it (too many
        targets, a query session, a box outside the frame): the targets followed go on, and the user is told why."""
        if self.session is None:
            return None
        add = getattr(self.session, "add_target", None)
        if not callable(add):
            self._failed("this tracker follows one target at a time; drag without Shift to re-target")
            return None
        try:
            return add(frame, box)
        except TrackerError as err:
            self._failed(f"cannot add that target: {first_line(err)}")
            return None
        except Exception as err:  # a failure half-way may leave the session inconsistent: stop rather than guess
            self.session.reset()
            self._failed(f"cannot add that target, tracking stopped: {first_line(err)}")
            return idle_result(frame)

    def step(self, frame: Frame) -> SessionResult:
        if self.session is None:
            return idle_result(frame)
        try:
            result = self.session.step(frame)
        except Exception as err:  # a tracker failure stops tracking, not the video
            self.session.reset()
            self._failed(f"tracking stopped: {first_line(err)}")
            result = idle_result(frame)
        self._update_speed(result)
        return result

    def reset(self) -> None:
        if self.session is not None:
            self.session.reset()

    def set_query(self, text: str) -> None:
        """Look for what ``text`` describes from the next frame on, loading the grounding model if need be."""
        set_query = getattr(self.session, "set_query", None)
        if callable(set_query) and getattr(self.session, "grounder", True) is None:
            self._load_grounder()
        # A session without a grounder (the grounding model is not installed) cannot take queries.
        if not callable(set_query) or getattr(self.session, "grounder", True) is None:
            self._notice(GROUNDING_MISSING)
            return
        try:
            query = set_query(text)
        except TrackerError as err:
            self._failed(str(err))
            return
        self._notice(f'looking for "{query or text}"')

    def _load_grounder(self) -> None:
        if self._grounder_factory is None:
            return
        self._notice("loading the grounding model…")
        try:
            self.session.grounder = self._grounder_factory()
        except TrackerError as err:
            self._failed(f"text grounding is unavailable: {err}")
            self._grounder_factory = None

    def _update_speed(self, result: SessionResult) -> None:
        """Average time of the session's steps (a start, which only crops a template, does not count)."""
        if result.state is TrackState.IDLE or result.elapsed_ms <= 0:
            self._step_ms = None
        elif self._step_ms is None:
            self._step_ms = result.elapsed_ms
        else:
            self._step_ms += TRACK_FPS_SMOOTHING * (result.elapsed_ms - self._step_ms)


def idle_result(frame: Frame) -> SessionResult:
    """The result of a frame with nothing followed."""
    return SessionResult(frame.index, frame.timestamp, None, 0.0, TrackState.IDLE)
