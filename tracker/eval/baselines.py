"""OpenCV trackers behind the project's tracker contract: ``init(frame_bgr, Box)`` and
``update(frame_bgr) -> TrackResult``.

MIL and NanoTrack v2 ship with the main OpenCV package; CSRT and KCF need the contrib build
(``pip install .[baselines]``, which replaces opencv-python-headless). NanoTrack v3 (``nano3``) runs through ONNX
Runtime with the runner that ships beside its models in the peers folder. A baseline that reports failure
keeps its last box, as the peer table in ``../shared/data/README.md`` was scored.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tracker.errors import InputError
from tracker.single import validate_init_box
from tracker.types import Box, TrackResult

PEERS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "peers"
NANO_BACKBONE = "nanotrack_backbone_sim.onnx"
NANO_HEAD = "nanotrack_head_sim.onnx"
NANO3_DIR = "nanotrack_v3"
NANO3_FILES = ("nano3.py", "nanotrack_backbone.onnx", "nanotrack_head.onnx")
CONTRIB_HINT = "needs the OpenCV contrib build (pip install .[baselines])"


class OpenCVTracker:
    """Wraps one tracker with OpenCV's interface (a ``cv2.Tracker``, or NanoTrack v3's runner); boxes cross in frame
    pixels, rounded to whole pixels as OpenCV requires.

    A failed OpenCV step keeps the last box with score 0. With ``report_lost`` it is answered as the contract's
    "target absent" instead: ``lost=True`` and a NaN box (the evaluator's runner still scores the last finite box).
    Off by default because the session's grounding re-check matches targets by their boxes and needs a finite one.
    """

    def __init__(self, make: Callable[[], cv2.Tracker], report_lost: bool = False) -> None:
        self._make = make
        self.report_lost = report_lost
        self._tracker: cv2.Tracker | None = None
        self._box: Box | None = None

    def init(self, frame_bgr: np.ndarray, box: Box) -> None:
        box = validate_init_box(box, frame_bgr.shape[1], frame_bgr.shape[0])
        # A fresh instance per target: OpenCV trackers keep state that init() does not fully clear.
        self._tracker = self._make()
        self._tracker.init(frame_bgr, _whole_pixels(box))
        self._box = box

    def update(self, frame_bgr: np.ndarray) -> TrackResult:
        if self._tracker is None or self._box is None:
            raise InputError("the tracker has no target yet; call init(frame, box) first")
        start = time.perf_counter()
        ok, rect = self._tracker.update(frame_bgr)
        elapsed_ms = (time.perf_counter() - start) * 1e3
        if not ok and self.report_lost:
            return TrackResult(Box(*(4 * [float("nan")])), 0.0, elapsed_ms, lost=True)
        if not ok:
            return TrackResult(self._box, 0.0, elapsed_ms)
        self._box = Box.from_xywh(rect)
        return TrackResult(self._box, self._score(), elapsed_ms)

    def _score(self) -> float:
        # MIL and NanoTrack report a confidence; CSRT and KCF only succeed or fail.
        get = getattr(self._tracker, "getTrackingScore", None)
        return float(get()) if get is not None else 1.0


def _whole_pixels(box: Box) -> tuple[int, int, int, int]:
    return (round(box.x), round(box.y), max(1, round(box.w)), max(1, round(box.h)))


def _nano_factory(peers_dir: Path) -> Callable[[], cv2.Tracker]:
    backbone, head = peers_dir / NANO_BACKBONE, peers_dir / NANO_HEAD
    if not backbone.is_file() or not head.is_file():
        raise InputError(
            f"NanoTrack models {NANO_BACKBONE}, {NANO_HEAD} not found in {peers_dir}; pass --peers DIR"
        )

    def make() -> cv2.Tracker:
        params = cv2.TrackerNano_Params()
        params.backbone = str(backbone)
        params.neckhead = str(head)
        return cv2.TrackerNano_create(params)

    return make


def _nano3_factory(peers_dir: Path) -> Callable[[], object]:
    """NanoTrack v3 through the peers folder's own runner (``nano3.py``), which has OpenCV's tracker interface."""
    folder = peers_dir / NANO3_DIR
    runner, backbone, head = (folder / name for name in NANO3_FILES)
    missing = [p.name for p in (runner, backbone, head) if not p.is_file()]
    if missing:
        raise InputError(f"NanoTrack v3 files {', '.join(missing)} not found in {folder}; pass --peers DIR")
    spec = importlib.util.spec_from_file_location("nano3", runner)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return lambda: module.Nano3(str(backbone), str(head))


@dataclass(frozen=True)
class BaselineInfo:
    """A named baseline: its label in tables, the cv2 factory it needs (None: it runs through ONNX Runtime), and
    why it may be missing."""

    name: str
    label: str
    cv2_factory: str | None
    missing_hint: str


BASELINES = {
    "mil": BaselineInfo("mil", "OpenCV MIL", "TrackerMIL_create", "needs OpenCV with TrackerMIL"),
    "csrt": BaselineInfo("csrt", "OpenCV CSRT", "TrackerCSRT_create", CONTRIB_HINT),
    "kcf": BaselineInfo("kcf", "OpenCV KCF", "TrackerKCF_create", CONTRIB_HINT),
    "nano": BaselineInfo(
        "nano", "NanoTrack v2", "TrackerNano_create", "needs OpenCV >= 4.7 with TrackerNano"
    ),
    "nano3": BaselineInfo("nano3", "NanoTrack v3", None, "needs onnxruntime (pip install onnxruntime)"),
}


def baseline_available(name: str) -> bool:
    """Whether this installation can run baseline ``name``: cv2 has its tracker, or ONNX Runtime is there."""
    factory = _info(name).cv2_factory
    if factory is None:
        return importlib.util.find_spec("onnxruntime") is not None
    return hasattr(cv2, factory)


def build_baseline(name: str, peers_dir: Path = PEERS_DIR) -> OpenCVTracker:
    """A fresh baseline tracker; InputError if the name is unknown or this OpenCV lacks it."""
    info = _info(name)
    if not baseline_available(name):
        raise InputError(f"baseline '{name}' {info.missing_hint}")
    if name == "nano":
        return OpenCVTracker(_nano_factory(Path(peers_dir)))
    if name == "nano3":
        return OpenCVTracker(_nano3_factory(Path(peers_dir)))
    return OpenCVTracker(getattr(cv2, info.cv2_factory))


def _info(name: str) -> BaselineInfo:
    if name not in BASELINES:
        raise InputError(f"unknown baseline '{name}'; use any of {', '.join(BASELINES)}")
    return BASELINES[name]
