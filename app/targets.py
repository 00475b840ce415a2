"""The targets of one ``SessionResult`` as the sinks see them, and the one-line summary the status bar shows.

A session that follows several targets reports each in ``SessionResult.targets``; an older or simpler session (or
one following a single target) may report only the primary fields. ``followed`` gives the same tuple either way.
"""

from __future__ import annotations

from tracker.types import SessionResult, TargetResult, TrackState

# The order states are counted in the summary: the ones that need the user's eye last.
SUMMARY_ORDER = (TrackState.TRACKING, TrackState.RECOVERED, TrackState.GROUNDING, TrackState.LOST)


def followed(result: SessionResult) -> tuple[TargetResult, ...]:
    """Every target followed on this frame, primary first; empty while idle or while a query is still searched."""
    if result.targets:
        return result.targets
    if result.target_id is None or result.state in (TrackState.IDLE, TrackState.GROUNDING):
        return ()
    return (TargetResult(result.target_id, result.box, result.score, result.state, result.last_seen),)


def summary(result: SessionResult) -> str:
    """``3 targets: 2 tracking, 1 lost`` when more than one target is followed, else ''."""
    targets = followed(result)
    if len(targets) < 2:
        return ""
    counts = [(state, sum(t.state is state for t in targets)) for state in SUMMARY_ORDER]
    parts = [f"{count} {state.value}" for state, count in counts if count]
    return f"{len(targets)} targets: " + ", ".join(parts)
