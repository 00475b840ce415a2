"""OSTrack-exact one-stream ViT tracking: models, checkpoints, the single-target tracker and the session."""

from tracker.build import build_tracker, load_model
from tracker.config import Config, load_config
from tracker.errors import CheckpointError, ConfigError, InputError, TrackerError
from tracker.grounding import Grounder, build_grounder
from tracker.models.ostrack import OSTrack, build_model
from tracker.session import Session
from tracker.single import SingleTracker
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

__all__ = [
    "Box",
    "Candidate",
    "CheckpointError",
    "Config",
    "ConfigError",
    "Frame",
    "Grounder",
    "GroundingResult",
    "InputError",
    "OSTrack",
    "Session",
    "SessionResult",
    "SingleTracker",
    "TargetResult",
    "TrackResult",
    "TrackState",
    "TrackerError",
    "build_grounder",
    "build_model",
    "build_tracker",
    "load_config",
    "load_model",
]
