"""OSTrack-exact one-stream ViT tracking: models, checkpoints, the single-target tracker and the session."""

from tracker.build import build_tracker, load_model
from tracker.config import Config, load_config
from tracker.errors import CheckpointError, ConfigError, InputError, TrackerError
from tracker.models.ostrack import OSTrack, build_model
from tracker.session import Session
from tracker.single import SingleTracker
from tracker.types import Box, Candidate, Frame, GroundingResult, SessionResult, TrackResult, TrackState

__all__ = [
    "Box",
    "Candidate",
    "CheckpointError",
    "Config",
    "ConfigError",
    "Frame",
    "GroundingResult",
    "InputError",
    "OSTrack",
    "Session",
    "SessionResult",
    "SingleTracker",
    "TrackResult",
    "TrackState",
    "TrackerError",
    "build_model",
    "build_tracker",
    "load_config",
    "load_model",
]
