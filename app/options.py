"""What the user asked for, parsed once by the CLI and shared by the headless loop and the window."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tracker import Session, build_grounder, build_tracker
from tracker.build import default_weights
from tracker.types import Box


@dataclass(frozen=True)
class AppOptions:
    source: str | None = None
    init_box: Box | None = None  # the first --init-box: starts the session
    more_boxes: tuple[Box, ...] = ()  # any further --init-box, each added as one more target on the first frame
    config: str | None = None
    weights: str | None = None
    device: str = "auto"
    backend: str = "auto"
    precision: str = "auto"
    save_results: Path | None = None
    save_video: Path | None = None
    max_frames: int | None = None
    query: str | None = None
    grounding_weights: str | None = None  # None: the bundled grounding model
    debug: bool = False

    @property
    def init_boxes(self) -> tuple[Box, ...]:
        """Every --init-box, in the order given."""
        return (self.init_box, *self.more_boxes) if self.init_box is not None else ()


def build_session(options: AppOptions) -> Session:
    """The tracker the options name (the bundled model when no weights are given) wrapped in a session; when a
    query is given, the grounding model too (``grounding_weights``, else the bundled one; it takes seconds to
    load, so only then)."""
    weights = options.weights
    if weights is None and options.config is None:
        weights = str(default_weights())
    grounder = build_grounder(weights=options.grounding_weights, device=options.device) if options.query else None
    tracker = build_tracker(
        options.config, weights, options.device, backend=options.backend, precision=options.precision
    )
    return Session(tracker, grounder=grounder)
