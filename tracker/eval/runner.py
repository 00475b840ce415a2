"""One-pass evaluation: run every tracker on every sequence, time it, score it, and keep the per-frame boxes.

The init box is the ground truth of frame 0. Two times are kept per frame after it: the tracker step
(``update`` only) and end to end (frame decode + ``update``). A step whose box is not finite keeps the
last box.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from tracker.errors import InputError
from tracker.eval.metrics import Score, mean_score, score_sequence
from tracker.eval.sequence import Sequence
from tracker.eval.trackers import SkippedTracker, Tracker, TrackerSpec
from tracker.types import Box


@dataclass(frozen=True, eq=False)
class SequenceRun:
    """One tracker on one sequence: ``boxes`` (F, 4) per frame read (row 0 is the init box), ``scores`` (F,)
    tracker confidences (row 0 is 1), ``step_ms`` and ``frame_ms`` (F-1,) for the frames after the init frame,
    ``init_ms`` the time of ``init``, and the accuracy ``score``."""

    sequence: str
    boxes: np.ndarray
    scores: np.ndarray
    step_ms: np.ndarray
    frame_ms: np.ndarray
    init_ms: float
    score: Score

    @property
    def step_fps(self) -> float:
        return fps_from_median(self.step_ms)

    @property
    def frame_fps(self) -> float:
        return fps_from_total(self.frame_ms)


@dataclass(frozen=True, eq=False)
class TrackerEval:
    """One tracker over the dataset: its runs (in sequence order) and the mean score over them."""

    name: str
    runs: tuple[SequenceRun, ...]
    mean: Score

    @property
    def step_fps(self) -> float:
        """1000 / the median tracker-step time over all frames of all sequences."""
        return fps_from_median(np.concatenate([r.step_ms for r in self.runs]))

    @property
    def frame_fps(self) -> float:
        """Frames per second end to end (decode + step): frames / total time, over all sequences."""
        return fps_from_total(np.concatenate([r.frame_ms for r in self.runs]))


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Everything one evaluation run measured, for the tables, report, JSON and plots."""

    dataset: str
    layout: str
    sequences: tuple[str, ...]
    trackers: tuple[TrackerEval, ...]
    skipped: tuple[SkippedTracker, ...] = ()
    max_frames: int | None = None
    settings: dict[str, str] = field(default_factory=dict)


def fps_from_median(times_ms: np.ndarray) -> float:
    times_ms = np.asarray(times_ms, dtype=np.float64)
    return float(1e3 / np.median(times_ms)) if times_ms.size and np.median(times_ms) > 0 else float("nan")


def fps_from_total(times_ms: np.ndarray) -> float:
    times_ms = np.asarray(times_ms, dtype=np.float64)
    return (
        float(1e3 * times_ms.size / times_ms.sum()) if times_ms.size and times_ms.sum() > 0 else float("nan")
    )


def seed_everything(seed: int) -> None:
    """Same seed before every run, so randomised trackers repeat exactly whatever ran before them."""
    cv2.setRNGSeed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    _seed_c_rand(seed)


def _seed_c_rand(seed: int) -> None:
    # OpenCV's MIL draws its samples from the C library's rand(), which cv2.setRNGSeed does not touch: without
    # this, a sequence's MIL result would depend on which sequences ran before it in the same process.
    # glibc starts as if srand(1), so seed 0 maps to 1 to keep a fresh process's stream. Best effort: where
    # the C library cannot be reached (e.g. Windows), runs stay deterministic only for a fixed run order.
    with contextlib.suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(None).srand(ctypes.c_uint(seed + 1))


def run_sequence(
    tracker: Tracker,
    sequence: Sequence,
    max_frames: int | None = None,
    progress: tqdm | None = None,
    init_shift: tuple[float, float] = (0.0, 0.0),
) -> SequenceRun:
    """Initialise ``tracker`` on frame 0 with its ground-truth box moved by ``init_shift`` pixels (x, y), then
    track through the rest of ``sequence`` (at most ``max_frames`` frames in all)."""
    init_box = _init_box(sequence, init_shift)
    frames = sequence.frames(max_frames)
    first = next(frames)
    start = time.perf_counter()
    tracker.init(first, init_box)
    init_ms = (time.perf_counter() - start) * 1e3
    boxes, scores, step_ms, frame_ms = [init_box.as_list()], [1.0], [], []
    last = init_box
    for frame, decode_start in _timed(frames):
        step_start = time.perf_counter()
        result = tracker.update(frame)
        end = time.perf_counter()
        if result.box.is_finite():
            last = result.box
        boxes.append(last.as_list())
        scores.append(float(result.score))
        step_ms.append((end - step_start) * 1e3)
        frame_ms.append((end - decode_start) * 1e3)
        if progress is not None:
            progress.update(1)
    boxes_arr = np.asarray(boxes, dtype=np.float64)
    return SequenceRun(
        sequence=sequence.name,
        boxes=boxes_arr,
        scores=np.asarray(scores),
        step_ms=np.asarray(step_ms),
        frame_ms=np.asarray(frame_ms),
        init_ms=init_ms,
        score=score_sequence(boxes_arr, sequence.groundtruth, sequence.absent),
    )


def _timed(frames: Iterator[np.ndarray]) -> Iterator[tuple[np.ndarray, float]]:
    """Each frame with the time its decode started (the generator resumes, i.e. decodes, after the yield)."""
    while True:
        start = time.perf_counter()
        frame = next(frames, None)
        if frame is None:
            return
        yield frame, start


def _init_box(sequence: Sequence, shift: tuple[float, float]) -> Box:
    box = Box.from_xywh(sequence.groundtruth[0])
    if not box.is_finite() or box.w <= 0 or box.h <= 0:
        raise InputError(
            f"sequence {sequence.name} has no usable box on its first frame; it cannot be tracked"
        )
    return Box(box.x + shift[0], box.y + shift[1], box.w, box.h)


def evaluate(
    specs: list[TrackerSpec],
    sequences: list[Sequence],
    *,
    dataset: str = "",
    layout: str = "",
    max_frames: int | None = None,
    seed: int = 0,
    out_dir: Path | None = None,
    skipped: list[SkippedTracker] | None = None,
    show_progress: bool = True,
    settings: dict[str, str] | None = None,
    init_shift: tuple[float, float] = (0.0, 0.0),
) -> Evaluation:
    """Run every spec on every sequence (one tqdm bar over all frames); with ``out_dir``, write each run's
    boxes and times as soon as it finishes (``results/<tracker>/<sequence>.txt``). ``init_shift`` moves every
    init box by that many pixels (x, y): how much a score depends on the exact first box (as OTB's spatial
    robustness evaluation asks)."""
    total = len(specs) * sum(max(0, _frame_count(s, max_frames) - 1) for s in sequences)
    evals = []
    with tqdm(total=total, unit="frame", disable=not show_progress, dynamic_ncols=True) as bar:
        for spec in specs:
            tracker = spec.make()
            runs = []
            for sequence in sequences:
                bar.set_description(f"{spec.name} | {sequence.name}")
                seed_everything(seed)
                run = run_sequence(tracker, sequence, max_frames, bar, init_shift)
                if out_dir is not None:
                    write_run(Path(out_dir), spec.name, run)
                runs.append(run)
            evals.append(TrackerEval(spec.name, tuple(runs), mean_score([r.score for r in runs])))
    return Evaluation(
        dataset=dataset,
        layout=layout,
        sequences=tuple(s.name for s in sequences),
        trackers=tuple(evals),
        skipped=tuple(skipped or ()),
        max_frames=max_frames,
        settings=dict(settings or {}),
    )


def _frame_count(sequence: Sequence, max_frames: int | None) -> int:
    return len(sequence) if max_frames is None else min(len(sequence), max_frames)


def folder_name(tracker_name: str) -> str:
    """A file-system-safe folder name for a tracker label ("OpenCV MIL" -> "OpenCV_MIL")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", tracker_name).strip("_") or "tracker"


def write_run(out_dir: Path, tracker_name: str, run: SequenceRun) -> Path:
    """Write ``results/<tracker>/<seq>.txt`` (one x,y,w,h line per frame, the first is the init box) and
    ``<seq>_time.txt`` (seconds per frame in the tracker: init, then each update), as tracking toolkits
    read them, plus ``<seq>_frame_time.txt`` (seconds per frame end to end, decode + update; the first line is
    the init)."""
    folder = out_dir / "results" / folder_name(tracker_name)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run.sequence}.txt"
    np.savetxt(path, run.boxes, fmt="%.3f", delimiter=",")
    init_s = run.init_ms / 1e3
    np.savetxt(folder / f"{run.sequence}_time.txt", np.r_[init_s, run.step_ms / 1e3], fmt="%.6f")
    np.savetxt(folder / f"{run.sequence}_frame_time.txt", np.r_[init_s, run.frame_ms / 1e3], fmt="%.6f")
    return path
