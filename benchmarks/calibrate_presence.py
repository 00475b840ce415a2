"""Fit the presence calibration (``TRACK.PRESENCE``) of a tracker on leave-and-return clips made from TRAINING
footage, and show how well it separates "the target is in the picture" from "it is not".

The tracker follows each composite clip (``benchmarks/leave_return.py`` builds them) without ever being declared
lost, and every frame gives its score-map peak and the colour similarity of its box to the target's colours (at
init, or their running average over confident steps, judged with the config's current calibration, as a
``tracker.target.Target`` keeps them). Positive
frames: the target is visible and the box is on it (IoU >= 0.3). Negative frames: the donor's frames, where the
target is absent. A logistic regression on (peak, colour) gives ``TRACK.PRESENCE``; the script prints the ROC AUC
of each signal and of the fit, per clip the median presence on both kinds of frame, and, for the thresholds in the
config, the share of negative frames weak and of positive frames weak, single and in runs of ``LOST_FRAMES``.

    python benchmarks/calibrate_presence.py --dataset ../shared/data/train/sequences --out runs/calibration

It also prints, for other ``TRACK.LOST_SCORE`` / ``TRACK.LOST_FRAMES``, the shares of absent and of visible frames
in LOST runs (the trade-off those two settings make). ``--signals runs/calibration/presence_signals.json`` refits
and reports from an earlier run's per-frame signals, without tracking again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from leave_return import composite_frames, composite_truth, machine_line, select_plans, set_threads  # noqa: E402

from tracker import Box, build_tracker  # noqa: E402
from tracker.config import PresenceConfig, TrackConfig, parse_overrides  # noqa: E402
from tracker.eval.datasets import load_dataset  # noqa: E402
from tracker.eval.metrics import iou, roc_auc  # noqa: E402
from tracker.presence import TargetPresence, presence  # noqa: E402

ON_TARGET_IOU = 0.3


def clip_signals(tracker, sequence, donor, plan) -> dict:
    """Per frame after the first: peak, colour similarity, and whether it is a positive, negative or neither."""
    gt, absent, replaced = composite_truth(sequence, plan)
    frames = composite_frames(sequence, donor, plan)
    first = next(frames)
    tracker.init(first, Box.from_xywh(gt[0]))
    track = tracker.cfg.track
    judge = TargetPresence(first, tracker.state, track.presence)
    peaks, colours, boxes = [], [], []
    for frame in frames:
        result = tracker.update(frame)
        peaks.append(result.score)
        colours.append(judge.colour.similarity(frame, result.box))
        boxes.append(result.box.as_list())
        judge.step(frame, result.box, result.score, track.recover_score)  # learns as a Target does
    overlap = iou(np.asarray(boxes), gt[1:])
    positive = ~absent[1:] & (np.nan_to_num(overlap) >= ON_TARGET_IOU)
    return {"peak": peaks, "colour": colours, "positive": positive.tolist(), "negative": replaced[1:].tolist()}


def fit_logistic(features: np.ndarray, labels: np.ndarray, colours: PresenceConfig | None = None) -> PresenceConfig:
    """Maximum-likelihood logistic regression (L-BFGS), balanced so both kinds of frame weigh the same; the colour
    model's own settings are kept from ``colours``."""
    x, y = torch.tensor(features, dtype=torch.float64), torch.tensor(labels, dtype=torch.float64)
    weight = torch.where(y > 0, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    coef = torch.zeros(features.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([coef], max_iter=500, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimiser.zero_grad()
        value = torch.nn.functional.binary_cross_entropy_with_logits(x @ coef[:-1] + coef[-1], y, weight=weight)
        value.backward()
        return value

    optimiser.step(loss)
    w = coef.detach().tolist()
    fitted = {"score_weight": round(w[0], 3), "colour_weight": round(w[1], 3), "bias": round(w[2], 3)}
    return dataclasses.replace(colours or PresenceConfig(), **fitted)


def weak_runs(values: np.ndarray, threshold: float, run: int) -> np.ndarray:
    """Per frame: the frame ends a run of at least ``run`` frames below ``threshold``."""
    flags, count = np.zeros(len(values), bool), 0
    for i, value in enumerate(values):
        count = count + 1 if value < threshold else 0
        flags[i] = count >= run
    return flags


def summary(clips: dict, fit: PresenceConfig, track: TrackConfig) -> dict:
    """ROC AUCs, per-clip medians and the weak shares at the config's thresholds."""

    def prob(c: dict) -> np.ndarray:
        return np.array([presence(p, k, fit) for p, k in zip(c["peak"], c["colour"], strict=True)])

    pos = {name: np.array(c["positive"]) for name, c in clips.items()}
    neg = {name: np.array(c["negative"]) for name, c in clips.items()}
    signals = {
        "peak": {n: np.array(c["peak"]) for n, c in clips.items()},
        "colour": {n: np.array(c["colour"]) for n, c in clips.items()},
        "presence": {n: prob(c) for n, c in clips.items()},
    }
    aucs = {
        key: roc_auc(np.concatenate([v[n][pos[n]] for n in clips]), np.concatenate([v[n][neg[n]] for n in clips]))
        for key, v in signals.items()
    }
    p = signals["presence"]
    per_clip = {
        n: {
            "presence_visible_median": _median(p[n][pos[n]]),
            "presence_absent_median": _median(p[n][neg[n]]),
            "absent_lost_share": float(weak_runs(p[n], track.lost_score, track.lost_frames)[neg[n]].mean()),
        }
        for n in clips
    }
    runs = {n: weak_runs(p[n], track.lost_score, track.lost_frames) for n in clips}
    every = {
        "absent_weak": float(np.concatenate([p[n][neg[n]] < track.lost_score for n in clips]).mean()),
        "visible_weak": float(np.concatenate([p[n][pos[n]] < track.lost_score for n in clips]).mean()),
        "absent_in_lost_runs": float(np.mean([runs[n][neg[n]].mean() for n in clips])),
        "visible_in_lost_runs": float(np.mean([runs[n][pos[n]].mean() for n in clips if pos[n].any()])),
        "absent_found_level": float(np.concatenate([p[n][neg[n]] >= track.recover_score for n in clips]).mean()),
    }
    return {"roc_auc": aucs, "at_thresholds": every, "trade_off": trade_off(p, pos, neg), "per_clip": per_clip}


SWEEP_SCORES = (0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
SWEEP_FRAMES = (2, 3, 5)


def trade_off(presence_of: dict, pos: dict, neg: dict) -> list[dict]:
    """For other LOST thresholds: the mean over clips of the share of absent frames, and of visible on-target
    frames, that fall in a LOST run (what ``TRACK.LOST_SCORE`` and ``TRACK.LOST_FRAMES`` trade against each other)."""
    rows = []
    for score in SWEEP_SCORES:
        for frames in SWEEP_FRAMES:
            runs = {n: weak_runs(p, score, frames) for n, p in presence_of.items()}
            rows.append({
                "lost_score": score,
                "lost_frames": frames,
                "absent_in_lost_runs": float(np.mean([runs[n][neg[n]].mean() for n in runs])),
                "visible_in_lost_runs": float(np.mean([runs[n][pos[n]].mean() for n in runs if pos[n].any()])),
            })
    return rows


def _median(values: np.ndarray) -> float | None:
    return float(np.median(values)) if len(values) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="training footage (never the evaluation sequences)")
    parser.add_argument("--config", default=None)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="change one config key (dotted, YAML value)"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--signals", type=Path, help="presence_signals.json of an earlier run with the same weights: refit only"
    )
    args = parser.parse_args()
    threads = set_threads(args.threads)
    tracker = build_tracker(args.config, args.weights, overrides=parse_overrides(args.set))
    sequences = load_dataset(args.dataset)
    by_name = {s.name: s for s in sequences}
    if args.signals:  # the per-frame signals of an earlier run: refit and report without tracking again
        clips = json.loads(args.signals.read_text(encoding="utf-8"))
    else:
        clips = {}
        for plan in select_plans(sequences, None, None):
            if plan.skip is None:
                clips[plan.sequence] = clip_signals(tracker, by_name[plan.sequence], by_name[plan.donor], plan)
                print(f"  {plan.sequence}", file=sys.stderr, flush=True)
    positive = np.concatenate([np.array(c["positive"]) for c in clips.values()])
    negative = np.concatenate([np.array(c["negative"]) for c in clips.values()])
    features = np.concatenate([np.stack([c["peak"], c["colour"]], 1) for c in clips.values()])
    keep = positive | negative
    fit = fit_logistic(features[keep], positive[keep].astype(float), tracker.cfg.track.presence)
    report = {
        "command": "python benchmarks/calibrate_presence.py " + shlex.join(sys.argv[1:]),
        "machine": machine_line(threads),
        "fit": fit.__dict__,
        "frames": {"visible": int(positive.sum()), "absent": int(negative.sum()), "clips": len(clips)},
        **summary(clips, fit, tracker.cfg.track),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "presence_signals.json").write_text(json.dumps(clips), encoding="utf-8")
    (args.out / "presence_calibration.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(json.dumps({k: report[k] for k in ("fit", "frames", "roc_auc", "at_thresholds")}, indent=2))
    print("LOST_SCORE LOST_FRAMES  absent in LOST runs  visible in LOST runs")
    for row in report["trade_off"]:
        print(f"{row['lost_score']:>10} {row['lost_frames']:>11}  {row['absent_in_lost_runs']:>19.3f}  "
              f"{row['visible_in_lost_runs']:>20.3f}")


if __name__ == "__main__":
    main()
