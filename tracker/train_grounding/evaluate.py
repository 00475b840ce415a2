"""Language-only initialisation, measured: each sequence is started from its caption alone (no box).

    python -m tracker.train_grounding.evaluate --weights weights/grounding_small.safetensors \\
        --data ../shared/data/sequences --tracker nano --out runs/grounding_eval.json

Per sequence, three causal runs over every frame, and the same box tracker started from the ground-truth box as
the reference (``--no-box`` skips it):

- grounder alone, own caption: the best candidate's box each frame (no candidate = a miss);
- the session (grounding -> hand-over to the box tracker -> re-checks), own caption: the session's box, that of
  its primary target when it follows several matches (``GROUNDING.MAX_TARGETS``), as the CLI's results file holds;
- grounder alone with the caption of another sequence that shows another kind of thing (the target is absent).

Scores: success AUC (21 IoU thresholds, init frame not scored: ``tracker.eval.metrics``) for the first two, the
presence ROC AUC of "own caption, target visible" frames against "foreign caption" frames, and the share of
foreign-caption frames on which the session would start a track (presence at the app's ``PRESENCE_ON`` with a
candidate for ``HANDOFF_FRAMES`` frames in a row). The box tracker of the session is ``--tracker``: ``ostrack``
(the bundled or ``--tracker-weights`` OSTrack model) or an OpenCV baseline (``nano``, ``mil``, ``csrt``). Also
``--speed``: only grounder steps per second at 640x480, at ``--threads`` or at each of ``--speed-threads``;
``--speed-threads 1,2`` alone adds them to a full run, so one command gives every figure:

    python -m tracker.train_grounding.evaluate --tracker ostrack --speed-threads 1,2 --out runs/grounding_eval.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from tracker.build import build_tracker
from tracker.config import TrackConfig, parse_overrides
from tracker.errors import TrackerError
from tracker.eval.datasets import load_dataset
from tracker.eval.metrics import mean_score, roc_auc, score_sequence
from tracker.eval.runner import run_sequence
from tracker.eval.sequence import Sequence
from tracker.eval.trackers import parse_tracker_spec
from tracker.grounding import Grounder, build_grounder
from tracker.session import Session
from tracker.train_grounding.captions import cannot_be_in, kinds_of
from tracker.types import Frame
from tracker.weights import update_manifest

EVAL_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "sequences"


def _finite(value: float) -> float | None:
    """Rounded for the report; None (JSON null) when undefined, e.g. no absent frames to compare with."""
    return round(value, 4) if np.isfinite(value) else None


def foreign_caption(sequence: Sequence, sequences: list[Sequence]) -> str | None:
    """The caption of the next sequence (in order) about a kind of thing that cannot be in this one's scene
    (the same table the training negatives use), or None when no caption is safe."""
    scene = kinds_of(sequence.language or "")
    index = sequences.index(sequence)
    for step in range(1, len(sequences)):
        other = sequences[(index + step) % len(sequences)]
        if cannot_be_in(other.language or "", scene):
            return other.language
    return None


def start_frames(presence: np.ndarray, found: np.ndarray, on: float, frames: int) -> np.ndarray:
    """(N,) True where the session would hand over: ``frames`` steps in a row, this one included, with presence
    at least ``on`` and a candidate, as ``Session`` requires before it starts a track."""
    run, starts = 0, np.zeros(len(presence), bool)
    for index, seen in enumerate((presence >= on) & found):
        run = run + 1 if seen else 0
        starts[index] = run >= frames
    return starts


def ground_run(grounder: Grounder, sequence: Sequence, query: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) best-candidate boxes (NaN where none) and (N,) presence, one causal pass."""
    grounder.set_query(query)
    boxes, presence = [], []
    for image in sequence.frames():
        result = grounder.step(image)
        boxes.append(result.candidates[0].box.as_list() if result.candidates else [np.nan] * 4)
        presence.append(result.presence)
    return np.asarray(boxes, float), np.asarray(presence, float)


def session_run(session: Session, sequence: Sequence) -> tuple[np.ndarray, int | None]:
    """(N, 4) session boxes (NaN while it has none) and the frame it handed over to the box tracker."""
    session.reset()
    session.set_query(sequence.language or "")
    boxes, handed = [], None
    for index, image in enumerate(sequence.frames()):
        result = session.step(Frame(index, index / 30.0, image))
        if handed is None and result.target_id is not None:
            handed = index
        boxes.append(result.box.as_list() if result.box is not None else [np.nan] * 4)
    return np.asarray(boxes, float), handed


def make_session(grounder: Grounder, tracker_name: str, tracker_weights: str | None) -> Session:
    # As the app runs it (GROUNDING.MAX_TARGETS matches followed at once); the primary target's box is scored.
    if tracker_name == "ostrack":
        box_tracker = build_tracker(weights=tracker_weights, device="cpu")
        return Session(box_tracker, grounder=grounder)
    from tracker.eval.baselines import build_baseline

    return Session(
        build_baseline(tracker_name), TrackConfig(), grounder, lambda: build_baseline(tracker_name)
    )


def box_tracker(tracker_name: str, tracker_weights: str | None):
    """The session's box tracker alone, as ``python -m tracker.eval`` runs it (lost and found by its ``TRACK``
    settings): the reference, started from the ground-truth box."""
    if tracker_name == "ostrack":
        return parse_tracker_spec(f"weights={tracker_weights}" if tracker_weights else "bundled", "cpu").make()
    from tracker.eval.baselines import build_baseline

    return build_baseline(tracker_name)


def evaluate(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    sequences = load_dataset(args.data, layout="ours")
    settings = parse_overrides(args.set)
    grounder = build_grounder(args.config, args.weights, "cpu", settings)
    session_grounder = build_grounder(args.config, args.weights, "cpu", settings)
    session = make_session(session_grounder, args.tracker, args.tracker_weights)
    boxed = None if args.no_box else box_tracker(args.tracker, args.tracker_weights)
    rows, ground_scores, session_scores, positives, negatives, false_starts = [], [], [], [], [], []
    box_scores = []
    for seq in sequences:
        begin = time.time()
        boxes, presence = ground_run(grounder, seq, seq.language or "")
        ground_score = score_sequence(boxes, seq.groundtruth)
        session_boxes, handed = session_run(session, seq)
        session_score = score_sequence(session_boxes, seq.groundtruth)
        box_score = run_sequence(boxed, seq).score if boxed is not None else None
        if box_score is not None:
            box_scores.append(box_score)
        other = foreign_caption(seq, sequences)
        absent_boxes, absent_presence = ground_run(grounder, seq, other) if other else (np.zeros((0, 4)), np.zeros(0))
        g = grounder.gcfg
        wrong_starts = start_frames(absent_presence, np.isfinite(absent_boxes[:, 0]), g.presence_on, g.handoff_frames)
        false_starts.append(wrong_starts)
        visible = seq.visible
        positives.append(presence[visible])
        negatives.append(absent_presence)
        ground_scores.append(ground_score)
        session_scores.append(session_score)
        row = {
            "sequence": seq.name,
            "caption": seq.language,
            "foreign_caption": other,
            "ground_auc": round(ground_score.auc, 4),
            "session_auc": round(session_score.auc, 4),
            "box_auc": round(box_score.auc, 4) if box_score is not None else None,
            "handed_over_at": handed,
            "presence_roc_auc": _finite(roc_auc(presence[visible], absent_presence)),
            "presence_mean_own": round(float(presence[visible].mean()), 4),
            "presence_mean_foreign": round(float(absent_presence.mean()), 4)
            if len(absent_presence)
            else None,
            "foreign_start_share": _finite(wrong_starts.mean()) if len(wrong_starts) else None,
            "seconds": round(time.time() - begin, 1),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {
        "ground_auc": round(mean_score(ground_scores).auc, 4),
        "session_auc": round(mean_score(session_scores).auc, 4),
        "presence_roc_auc": round(roc_auc(np.concatenate(positives), np.concatenate(negatives)), 4),
        "foreign_start_share": round(float(np.concatenate(false_starts).mean()), 4),
        "foreign_captions_starting_a_track": sum(bool(f.any()) for f in false_starts),
        "box_auc": round(mean_score(box_scores).auc, 4) if box_scores else None,
        "tracker": args.tracker,
        "sequences": len(rows),
        "frames": int(sum(len(s) for s in sequences)),
    }
    if summary["box_auc"]:
        summary["session_to_box"] = round(summary["session_auc"] / summary["box_auc"], 3)
    for threads in args.speed_threads:
        medians = measure_speed(args.config, args.weights, 100, threads, args.repeats)
        summary[f"grounder_ms_640x480_{threads}_threads"] = speed_record(threads, medians)["median_ms"]
    torch.set_num_threads(args.threads)
    return {"summary": summary, "sequences": rows}


SPEED_CLIP = EVAL_ROOT.parent / "train" / "sequences" / "UAV123_10fps_bike1" / "video.mp4"
SPEED_QUERY = "the cyclist riding along the road"
SPEED_FRAME_SIZE = (640, 480)


def read_frames(path: Path, limit: int | None = None) -> list[np.ndarray]:
    """Up to ``limit`` frames of a video (all by default), resized to ``SPEED_FRAME_SIZE``."""
    capture = cv2.VideoCapture(str(path))
    images = []
    while limit is None or len(images) < limit:
        ok, image = capture.read()
        if not ok:
            break
        images.append(cv2.resize(image, SPEED_FRAME_SIZE))
    capture.release()
    return images


def speed_record(threads: int, medians: list[float]) -> dict:
    """One ``--speed`` line: the thread count, each repeat's median step (ms) and its steps per second."""
    return {
        "threads": threads,
        "median_ms": [round(m, 1) for m in medians],
        "fps": [round(1000 / m, 1) for m in medians],
    }


def measure_speed(
    config: str | None, weights: str | None, steps: int, threads: int, repeats: int
) -> list[float]:
    """Median grounder step time (ms) over ``steps`` 640x480 frames, ``repeats`` times, with ``threads`` threads."""
    torch.set_num_threads(threads)
    grounder = build_grounder(config, weights, device="cpu")
    images = read_frames(SPEED_CLIP, steps)
    medians = []
    for _ in range(repeats):
        grounder.set_query(SPEED_QUERY)
        times = [grounder.step(image).elapsed_ms for image in images]
        medians.append(statistics.median(times))
    return medians


def _thread_list(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a list of thread counts, e.g. 1,2") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a list of thread counts, e.g. 1,2")
    return counts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tracker.train_grounding.evaluate",
        description="Evaluate language-only initialisation of the grounder.",
    )
    parser.add_argument("--weights", default=None, help="grounding weights (default: the bundled model)")
    parser.add_argument("--config", default=None, help="grounding config (default: the one in the weights)")
    parser.add_argument("--data", default=str(EVAL_ROOT), help="sequences with language.txt (our layout)")
    parser.add_argument(
        "--tracker", default="nano", help="box tracker after hand-over: ostrack, nano, mil, csrt"
    )
    parser.add_argument("--tracker-weights", default=None, help="OSTrack weights for --tracker ostrack")
    parser.add_argument("--no-box", action="store_true",
                        help="skip the reference run of the same tracker started from the ground-truth box")
    parser.add_argument("--speed-threads", type=_thread_list, default=[], metavar="N[,N...]",
                        help="also time the grounder at 640x480 with each of these thread counts, e.g. 1,2")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change a run-time grounding key, e.g. GROUNDING.REJECTED_MEMORY=0")
    parser.add_argument("--out", default="runs/grounding_eval.json")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--manifest", default=None, help="record the summary as this manifest entry's scores")
    parser.add_argument("--speed", action="store_true", help="only measure grounder speed at 640x480")
    parser.add_argument("--repeats", type=int, default=3)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.speed:
            for threads in args.speed_threads or [args.threads]:
                medians = measure_speed(args.config, args.weights, 100, threads, args.repeats)
                print(json.dumps(speed_record(threads, medians)))
            return 0
        report = evaluate(args)
    except TrackerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report["summary"]))
    if args.manifest and args.weights:
        manifest = Path(args.manifest)
        entries = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        name = Path(args.weights).name
        entry = dict(entries[name])
        entry["scores"] = {**entry.get("scores", {}), f"language_init_{args.tracker}": report["summary"]}
        update_manifest(manifest, name, entry)
    return 0


if __name__ == "__main__":
    sys.exit(main())
