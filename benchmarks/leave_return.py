"""Leave and return: does a tracker say the target is gone while it is gone, and find it again when it comes back?

Each clip A of a dataset becomes a composite of the same length: its frames up to ``t1``, then the first ``L``
frames of a donor clip B (resized to A's frame size; A's target is not there), then A again from frame ``t1 + L``
on, so the target comes back where it has got to in the meantime. The layout is fixed, with no randomness:
clips sorted by name, B the next clip in that order (wrapping) that is not a part of the same video as A,
``t1 = max(n // 3, 10)`` (``--leave-at`` moves it), ``L = min(n // 4, 150, len(B))``; A is skipped when
``L < 10`` or fewer than 20 of its frames follow the gap. Per tracker and clip it reports:

- lost on absent: the share of donor frames the tracker reports as LOST (``lost=True`` or no finite box);
- lost while visible: the share of A's own scored frames reported LOST (the price of saying "gone" too often);
- success after return: the share of A's scored frames from the return on with IoU >= 0.5, and their success AUC;
- found after: frames from the return to the first frame with IoU >= 0.5 (0: on the return frame), or never;
- step ms: the mean wall time of ``update``.

    python benchmarks/leave_return.py --dataset ../shared/data/sequences --tracker bundled,name=bundled \\
        --tracker "bundled,TRACK.REDETECT.ENABLED=false,name=bundled-no-redetect" --baselines nano,csrt \\
        --threads 1 --out runs/leave_return

Writes ``leave_return.json`` and ``leave_return.md`` to ``--out`` and prints the mean table. A tracker that never
reports LOST scores 0 on the first figure by construction; an OpenCV baseline reports LOST only when OpenCV's own
step fails (CSRT and KCF have thresholds for that).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shlex
import sys
import time
from collections.abc import Iterator
from collections.abc import Sequence as Seq
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from tracker.build import build_tracker
from tracker.config import parse_overrides
from tracker.errors import InputError, TrackerError
from tracker.eval.baselines import BASELINES, PEERS_DIR, OpenCVTracker
from tracker.eval.cli import tracker_specs
from tracker.eval.datasets import LAYOUTS, load_dataset
from tracker.eval.metrics import iou, score_sequence
from tracker.eval.report import markdown_table, text_table
from tracker.eval.runner import seed_everything
from tracker.eval.sequence import Sequence, visible_mask
from tracker.eval.trackers import SkippedTracker, Tracker, TrackerSpec
from tracker.grounding import build_grounder
from tracker.session import Session
from tracker.threads import THREADS_ENV, configure_cpu_threads, physical_cores
from tracker.types import Box, Frame, TrackResult, TrackState

MIN_START = 10  # frames tracked before the target leaves, at least
MIN_GAP = 10
MAX_GAP = 150
MIN_AFTER = 20  # frames of A after the gap, at least
FOUND_IOU = 0.5
# "truck4_1" and "truck4_2" (UAV123), "Jogging-1" and "Jogging-2" (OTB's two targets) are parts of one video: as
# a donor, one would show the other's target. A 1-2 digit suffix marks a part; GOT-10k's 6-digit ids do not.
PART_SUFFIX = re.compile(r"[-_]\d{1,2}$")


@dataclass(frozen=True)
class Plan:
    """One composite: clip ``sequence`` (``frames`` long) with its frames ``t1 .. t1 + gap - 1`` replaced by the
    first ``gap`` frames of ``donor``; ``skip`` says why it is not run (None: it is)."""

    sequence: str
    donor: str | None
    frames: int
    t1: int
    gap: int
    skip: str | None = None

    @property
    def return_index(self) -> int:
        """The first frame of A after the gap (the target is back)."""
        return self.t1 + self.gap

    def as_dict(self) -> dict:
        return {"sequence": self.sequence, "donor": self.donor, "frames": self.frames, "t1": self.t1, "L": self.gap,
                "return_index": self.return_index, "skipped": self.skip}


@dataclass(frozen=True)
class LeaveReturnScore:
    """The figures of one tracker on one composite (NaN where there was no frame to measure)."""

    lost_on_absent: float
    lost_while_visible: float
    success_after_return: float
    auc_after_return: float
    frames_to_found: int | None  # None: never found again
    replaced_frames: int
    post_return_frames: int


@dataclass(frozen=True)
class SequenceResult:
    """One tracker on one composite: its score and the mean ``update`` time."""

    sequence: str
    score: LeaveReturnScore
    step_ms: float
    steps: int


@dataclass(frozen=True)
class TrackerSummary:
    """Means over the composites one tracker ran (each composite weighs the same); ``frames_to_found`` is the
    mean over those where the target was found again, ``never_found`` counts the rest."""

    name: str
    sequences: int
    lost_on_absent: float
    lost_while_visible: float
    success_after_return: float
    auc_after_return: float
    frames_to_found: float
    found: int
    never_found: int
    step_ms: float


# --- the composites -----------------------------------------------------------------------------------------


def same_video(a: str, b: str) -> bool:
    """Whether two clip names are parts of one video (``truck4_1``, ``truck4_2``) or the same clip."""
    return PART_SUFFIX.sub("", a) == PART_SUFFIX.sub("", b)


def composite_plan(lengths: Seq[int], names: Seq[str], leave_at: float | None = None) -> list[Plan]:
    """One plan per clip, in name order; ``lengths[i]`` is how many frames clip ``names[i]`` has (or is cut to).
    The target leaves ``leave_at`` of the way into its clip (None: a third, ``n // 3``)."""
    if len(lengths) != len(names):
        raise InputError(f"{len(lengths)} clip lengths for {len(names)} clip names; give one length per clip")
    order = sorted(range(len(names)), key=lambda i: names[i])
    donors = [_donor(order, pos, names) for pos in range(len(order))]
    return [
        _plan(names[i], int(lengths[i]), None if d is None else (names[d], int(lengths[d])), leave_at)
        for i, d in zip(order, donors, strict=True)
    ]


def _donor(order: list[int], pos: int, names: Seq[str]) -> int | None:
    """The next clip after ``order[pos]`` in name order (wrapping) from another video; None if there is none."""
    own = names[order[pos]]
    for step in range(1, len(order)):
        other = order[(pos + step) % len(order)]
        if not same_video(own, names[other]):
            return other
    return None


def _plan(name: str, frames: int, donor: tuple[str, int] | None, leave_at: float | None) -> Plan:
    if donor is None:
        return Plan(name, None, frames, 0, 0, "no donor clip from another video")
    t1 = max(frames // 3 if leave_at is None else int(frames * leave_at), MIN_START)
    gap = min(frames // 4, MAX_GAP, donor[1])
    skip = None
    if gap < MIN_GAP:
        skip = f"a gap of {gap} frames is under {MIN_GAP}"
    elif frames - (t1 + gap) < MIN_AFTER:
        skip = f"{frames - t1 - gap} frames after the gap, under {MIN_AFTER}"
    return Plan(name, donor[0], frames, t1, gap, skip)


def composite_truth(sequence: Sequence, plan: Plan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ground truth (N, 4) with NaN on donor frames, absent (N,) = A's own flags or donor frames, replaced (N,))."""
    gt = sequence.groundtruth[: plan.frames].copy()
    replaced = np.zeros(len(gt), dtype=bool)
    replaced[plan.t1 : plan.return_index] = True
    gt[replaced] = np.nan
    absent = np.zeros(len(gt), dtype=bool)
    if sequence.absent is not None:
        own = np.asarray(sequence.absent, dtype=bool)[: len(gt)]
        absent[: len(own)] = own
    return gt, absent | replaced, replaced


def composite_frames(sequence: Sequence, donor: Sequence, plan: Plan) -> Iterator[np.ndarray]:
    """The composite's BGR frames, streamed: A's, with the gap filled by the donor's first frames at A's size."""
    donor_frames = donor.frames(plan.gap)
    for index, frame in enumerate(sequence.frames(plan.frames)):
        # A's own gap frames are still decoded (a video cannot skip them) and dropped.
        if plan.t1 <= index < plan.return_index:
            other = next(donor_frames)
            height, width = frame.shape[:2]
            yield other if other.shape[:2] == (height, width) else cv2.resize(other, (width, height))
        else:
            yield frame


# --- the figures --------------------------------------------------------------------------------------------


def leave_return_scores(
    boxes: np.ndarray,
    lost: np.ndarray,
    gt: np.ndarray,
    absent_mask: np.ndarray,
    replaced_mask: np.ndarray,
    return_index: int,
) -> LeaveReturnScore:
    """The figures from a tracker's (N, 4) boxes (row 0 the init box; NaN rows count as lost) and (N,) lost
    flags, against the composite's ground truth (N, 4), frames with no box to score (``absent_mask``, donor
    frames included or not), donor frames (``replaced_mask``) and the index of the first frame after the gap."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    count = len(boxes)
    gt = np.asarray(gt, dtype=np.float64)[:count]
    replaced = np.asarray(replaced_mask, dtype=bool)[:count]
    absent = np.asarray(absent_mask, dtype=bool)[:count] | replaced
    lost = np.asarray(lost, dtype=bool)[:count] | ~np.isfinite(boxes).all(axis=1)
    shown = np.where(lost[:, None], np.nan, boxes)  # a LOST answer has no box, whatever it carried
    index = np.arange(count)
    visible = visible_mask(gt, absent) & (index > 0)  # the init frame is given, not tracked
    after = visible & (index >= return_index)
    hits = (iou(shown, gt) >= FOUND_IOU) & after
    first = np.flatnonzero(hits)
    return LeaveReturnScore(
        lost_on_absent=_share(lost[replaced]),
        lost_while_visible=_share(lost[visible]),
        success_after_return=_share(hits[after]),
        auc_after_return=score_sequence(shown, gt, absent | ~after).auc,
        frames_to_found=int(first[0] - return_index) if first.size else None,
        replaced_frames=int(replaced.sum()),
        post_return_frames=int(after.sum()),
    )


def _share(flags: np.ndarray) -> float:
    return float(flags.mean()) if flags.size else float("nan")


def _mean(values: list[float]) -> float:
    kept = [v for v in values if math.isfinite(v)]
    return float(np.mean(kept)) if kept else float("nan")


def summarise(name: str, results: list[SequenceResult]) -> TrackerSummary:
    """The means of one tracker's results; the step time is over all its steps."""
    found = [r.score.frames_to_found for r in results if r.score.frames_to_found is not None]
    steps = sum(r.steps for r in results)
    return TrackerSummary(
        name=name,
        sequences=len(results),
        lost_on_absent=_mean([r.score.lost_on_absent for r in results]),
        lost_while_visible=_mean([r.score.lost_while_visible for r in results]),
        success_after_return=_mean([r.score.success_after_return for r in results]),
        auc_after_return=_mean([r.score.auc_after_return for r in results]),
        frames_to_found=_mean([float(f) for f in found]),
        found=len(found),
        never_found=len(results) - len(found),
        step_ms=sum(r.step_ms * r.steps for r in results) / steps if steps else float("nan"),
    )


# --- running ------------------------------------------------------------------------------------------------


def reported_lost(result: TrackResult) -> bool:
    # getattr: a tracker written to the contract before TrackResult had ``lost`` still runs.
    return bool(getattr(result, "lost", False)) or not result.box.is_finite()


def run_composite(tracker: Tracker, sequence: Sequence, donor: Sequence, plan: Plan, seed: int = 0) -> SequenceResult:
    """Initialise on the composite's frame 0 with A's box, track through it, and score it."""
    gt, absent, replaced = composite_truth(sequence, plan)
    init = Box.from_xywh(gt[0])
    if not init.is_finite() or init.w <= 0 or init.h <= 0:
        raise InputError(f"sequence {sequence.name} has no usable box on its first frame; it cannot be tracked")
    frames = composite_frames(sequence, donor, plan)
    seed_everything(seed)
    tracker.init(next(frames), init)
    boxes, lost, times = [init.as_list()], [False], []
    for frame in frames:
        start = time.perf_counter()
        result = tracker.update(frame)
        times.append((time.perf_counter() - start) * 1e3)
        gone = reported_lost(result)
        boxes.append(4 * [float("nan")] if gone else result.box.as_list())
        lost.append(gone)
    score = leave_return_scores(np.asarray(boxes), np.asarray(lost), gt, absent, replaced, plan.return_index)
    return SequenceResult(sequence.name, score, float(np.mean(times)) if times else float("nan"), len(times))


def run_query_composite(session: Session, sequence: Sequence, donor: Sequence, plan: Plan, seed: int = 0
                        ) -> SequenceResult:
    """Start a grounding session from ``sequence``'s caption alone (no box), run it through the composite, score
    it. While grounding, the session's box is its best candidate; LOST means no box."""
    if not sequence.language:
        raise InputError(f"sequence {sequence.name} has no language.txt; a query session needs its caption")
    gt, absent, replaced = composite_truth(sequence, plan)
    seed_everything(seed)
    session.reset()
    session.set_query(sequence.language)
    boxes, lost, times = [], [], []
    for index, frame in enumerate(composite_frames(sequence, donor, plan)):
        result = session.step(Frame(index, index / 30.0, frame))
        times.append(result.elapsed_ms)
        gone = result.box is None or result.state is TrackState.LOST
        boxes.append(4 * [float("nan")] if gone else result.box.as_list())
        lost.append(gone)
    score = leave_return_scores(np.asarray(boxes), np.asarray(lost), gt, absent, replaced, plan.return_index)
    return SequenceResult(sequence.name, score, float(np.mean(times)), len(times))


def query_session(spec: str) -> tuple[str, Session]:
    """The row name and the app's query session for ``--query`` text ``GROUNDER[,KEY=VALUE...][,name=NAME]``: the
    grounder (``default``: the bundled one) with those run-time settings, handing over to the bundled tracker and
    following as many matches as ``GROUNDING.MAX_TARGETS`` allows, as the app does; the primary is scored."""
    weights, *rest = (part.strip() for part in spec.split(","))
    name = next((p.partition("=")[2] for p in rest if p.startswith("name=")), f"query session ({Path(weights).stem})")
    settings = parse_overrides([p for p in rest if not p.startswith("name=")], "--query")
    grounder = build_grounder(weights=None if weights == "default" else weights, device="cpu", settings=settings)
    return name, Session(build_tracker(device="cpu"), grounder=grounder)


def run_queries(
    queries: list[str], sequences: list[Sequence], plans: list[Plan], seed: int = 0
) -> dict[str, list[SequenceResult]]:
    """Every grounder in ``queries`` as a query session on every planned composite, progress on stderr."""
    results: dict[str, list[SequenceResult]] = {}
    for spec in queries:
        name, session = query_session(spec)
        results[name] = _run_plans(name, lambda a, b, plan, s=session: run_query_composite(s, a, b, plan, seed),
                                   sequences, plans)
    return results


def _run_plans(name: str, run_one, sequences: list[Sequence], plans: list[Plan]) -> list[SequenceResult]:
    """``run_one(sequence, donor, plan)`` on every planned composite (skipped plans left out), progress on stderr."""
    by_name = {s.name: s for s in sequences}
    results = []
    for plan in (p for p in plans if p.skip is None):
        one = run_one(by_name[plan.sequence], by_name[plan.donor], plan)
        results.append(one)
        s = one.score
        line = (f"lost on absent {_num(s.lost_on_absent)}, success after return {_num(s.success_after_return)}, "
                f"found after {_found(s.frames_to_found)}")
        print(f"{name} | {plan.sequence}: {line}", file=sys.stderr, flush=True)
    return results


def run_all(
    specs: list[TrackerSpec], sequences: list[Sequence], plans: list[Plan], seed: int = 0
) -> dict[str, list[SequenceResult]]:
    """Every tracker on every planned composite (plans that are skipped are left out), progress on stderr."""
    results: dict[str, list[SequenceResult]] = {}
    for spec in specs:
        tracker = spec.make()
        if isinstance(tracker, OpenCVTracker):
            tracker.report_lost = True  # a failed OpenCV step is its way of saying the target is gone
        results[spec.name] = _run_plans(spec.name, lambda a, b, plan, t=tracker: run_composite(t, a, b, plan, seed),
                                        sequences, plans)
    return results


# --- output -------------------------------------------------------------------------------------------------

MEAN_HEADER = ("tracker", "clips", "lost on absent", "lost while visible", "success after return",
               "AUC after return", "found after (mean frames)", "never found", "step ms")
SEQUENCE_HEADER = ("sequence", "donor", "tracker", "t1", "L", "lost on absent", "lost while visible",
                   "success after return", "AUC after return", "found after", "step ms")


def _num(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "-"


def _found(frames: int | None) -> str:
    return "never" if frames is None else str(frames)


def mean_rows(summaries: list[TrackerSummary]) -> list[tuple[str, ...]]:
    return [
        (s.name, str(s.sequences), _num(s.lost_on_absent), _num(s.lost_while_visible),
         _num(s.success_after_return), _num(s.auc_after_return), _num(s.frames_to_found, 1),
         str(s.never_found), _num(s.step_ms, 2))
        for s in summaries
    ]


def sequence_rows(plans: list[Plan], results: dict[str, list[SequenceResult]]) -> list[tuple[str, ...]]:
    """One row per (composite, tracker), composites in name order."""
    rows = []
    for plan in (p for p in plans if p.skip is None):
        for name, runs in results.items():
            r = next(r for r in runs if r.sequence == plan.sequence)
            s = r.score
            rows.append((plan.sequence, plan.donor or "-", name, str(plan.t1), str(plan.gap), _num(s.lost_on_absent),
                         _num(s.lost_while_visible), _num(s.success_after_return), _num(s.auc_after_return),
                         _found(s.frames_to_found), _num(r.step_ms, 2)))
    return rows


def machine_line(threads: int) -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    load = "/".join(f"{v:.2f}" for v in os.getloadavg())
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, {physical_cores()} "
            f"physical cores, {threads} torch threads, {gpu}; torch {torch.__version__}, cv2 {cv2.__version__}; "
            f"load average (1/5/15 min) {load}")


def report_dict(
    command: str, machine: str, args: argparse.Namespace, plans: list[Plan], summaries: list[TrackerSummary],
    results: dict[str, list[SequenceResult]], skipped: list[SkippedTracker],
) -> dict:
    """Everything as JSON-ready data (NaN becomes null, a target never found again "never")."""
    trackers = {}
    for summary in summaries:
        sequences = {}
        for r in results[summary.name]:
            found = r.score.frames_to_found
            row = {**asdict(r.score), "step_ms": r.step_ms, "steps": r.steps}
            sequences[r.sequence] = {**row, "frames_to_found": "never" if found is None else found}
        mean = {k: v for k, v in asdict(summary).items() if k != "name"}
        trackers[summary.name] = {"mean": mean, "sequences": sequences}
    data = {
        "command": command,
        "machine": machine,
        "dataset": str(args.dataset),
        "max_frames": args.max_frames,
        "leave_at": args.leave_at,
        "max_sequences": args.max_sequences,
        "seed": args.seed,
        "layout": [p.as_dict() for p in plans],
        "skipped_trackers": [{"name": s.name, "reason": s.reason} for s in skipped],
        "trackers": trackers,
    }
    return _json_safe(data)


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def markdown(command: str, machine: str, plans: list[Plan], summaries: list[TrackerSummary],
             results: dict[str, list[SequenceResult]], skipped_trackers: list[SkippedTracker]) -> str:
    skipped = [f"- clip {p.sequence} skipped: {p.skip}" for p in plans if p.skip is not None]
    skipped += [f"- tracker {t.name} skipped: {t.reason}" for t in skipped_trackers]
    parts = [
        "# Leave and return", "", f"Command: `{command}`", "", f"Machine: {machine}", "",
        "## Means over clips", "", markdown_table(MEAN_HEADER, mean_rows(summaries)), "",
        "## Per clip", "", markdown_table(SEQUENCE_HEADER, sequence_rows(plans, results), 3), "",
        *skipped,
    ]
    return "\n".join(parts).rstrip() + "\n"


# --- command line -------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/leave_return.py",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--dataset", required=True, type=Path, help="folder that holds the sequences")
    parser.add_argument("--layout", choices=list(LAYOUTS), help="dataset layout (default: detected)")
    parser.add_argument("--tracker", action="append", default=[], metavar="SPEC",
                        help="as python -m tracker.eval takes it, e.g. 'bundled,TRACK.REDETECT.ENABLED=false'; "
                             "repeat for several")
    parser.add_argument("--baselines", default="", help=f"comma-separated: {', '.join(BASELINES)} (or 'all')")
    parser.add_argument("--query", action="append", default=[], metavar="GROUNDER",
                        help="also start a query session from each clip's language.txt, no box: the grounder's "
                             "weights file or 'default' (the bundled one), then optional KEY=VALUE run-time "
                             "settings and name=NAME, comma-separated; repeat for several")
    parser.add_argument("--out", type=Path, default=Path("runs/leave_return"), help="output folder")
    parser.add_argument("--max-sequences", type=int, help="run only the first N composites (in name order)")
    parser.add_argument("--max-frames", type=int, help="cut every clip to this many frames before planning")
    parser.add_argument("--leave-at", type=float, metavar="SHARE",
                        help="the target leaves this share of the way into its clip (default: a third)")
    parser.add_argument("--device", default="auto", help="device for model trackers: auto, cpu, cuda")
    parser.add_argument("--peers", type=Path, default=PEERS_DIR, help="folder with the NanoTrack ONNX files")
    parser.add_argument("--threads", type=int, help="CPU threads for torch and OpenCV (default: physical cores)")
    parser.add_argument("--seed", type=int, default=0, help="seed set before every composite (default 0)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def select_plans(
    sequences: list[Sequence], max_frames: int | None, max_sequences: int | None, leave_at: float | None = None
) -> list[Plan]:
    """Plans over the whole dataset (so donors do not depend on ``max_sequences``), up to the N-th runnable one
    (skipped ones on the way stay listed with their reason)."""
    lengths = [len(s) if max_frames is None else min(len(s), max_frames) for s in sequences]
    plans, runnable = [], 0
    for plan in composite_plan(lengths, [s.name for s in sequences], leave_at):
        if max_sequences is not None and runnable >= max_sequences:
            break
        plans.append(plan)
        runnable += plan.skip is None
    return plans


def set_threads(threads: int | None) -> int:
    if threads is not None:
        # build_tracker sets the thread count again from this variable; without it --threads would be undone.
        os.environ[THREADS_ENV] = str(threads)
        cv2.setNumThreads(threads)
    return configure_cpu_threads(threads)


def run(args: argparse.Namespace, command: str) -> list[TrackerSummary]:
    """Plan, run, and write ``leave_return.json`` and ``leave_return.md`` into ``args.out``."""
    if args.max_frames is not None and args.max_frames < MIN_START + MIN_GAP + MIN_AFTER:
        raise InputError(f"--max-frames must be at least {MIN_START + MIN_GAP + MIN_AFTER} to leave room for a gap")
    if args.max_sequences is not None and args.max_sequences < 1:
        raise InputError("--max-sequences must be 1 or more")
    if args.leave_at is not None and not 0 < args.leave_at < 1:
        raise InputError(f"--leave-at must be a share of the clip between 0 and 1, got {args.leave_at}")
    threads = set_threads(args.threads)
    sequences = load_dataset(args.dataset, args.layout)
    plans = select_plans(sequences, args.max_frames, args.max_sequences, args.leave_at)
    if not any(p.skip is None for p in plans):
        raise InputError(f"no clip in {args.dataset} is long enough for a composite; see the skip reasons")
    only_queries = args.query and not (args.tracker or args.baselines)
    specs, skipped = ([], []) if only_queries else tracker_specs(args.tracker, args.baselines, args.device, args.peers)
    for item in skipped:
        print(f"skipping {item.name}: {item.reason}", file=sys.stderr)
    results = run_all(specs, sequences, plans, args.seed) | run_queries(args.query, sequences, plans, args.seed)
    summaries = [summarise(name, runs) for name, runs in results.items()]
    machine = machine_line(threads)
    args.out.mkdir(parents=True, exist_ok=True)
    data = report_dict(command, machine, args, plans, summaries, results, skipped)
    (args.out / "leave_return.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    text = markdown(command, machine, plans, summaries, results, skipped)
    (args.out / "leave_return.md").write_text(text, encoding="utf-8")
    return summaries


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    command = " ".join(["python benchmarks/leave_return.py", *map(shlex.quote, argv)])
    try:
        summaries = run(args, command)
    except TrackerError as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(text_table(MEAN_HEADER, mean_rows(summaries)))
    print(f"\nwrote {args.out / 'leave_return.md'} and {args.out / 'leave_return.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
