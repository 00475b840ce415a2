"""One-step size bias of a model tracker: started from the ground-truth box, what size does it give the next frame?

For every frame pair (t-1, t) of the first ``--frames`` frames of each sequence, the tracker is initialised on
frame t-1 with its ground-truth box and takes one step into frame t with the whole predicted size
(``TRACK.SIZE_UPDATE=1.0``). The medians of log(predicted / true) width and height per sequence show a bias that
the tracked box would otherwise compound frame after frame (a pull towards square boxes, a shrinking box).

With ``--start-scale S`` the tracker's box on frame t-1 is the ground-truth box with its sides times S about its
centre (the template is still cut around the true box): the state a tracker is in once its box has shrunk
(S < 1) or grown. A model that reads the size off the frame gives ratios near 0 whatever S is; one that only
corrects part of the error gives ratios between log S and 0, and a box fed back that way never recovers.

    python benchmarks/size_bias.py --dataset ../shared/data/sequences
    python benchmarks/size_bias.py --dataset ../shared/data/sequences --weights runs/x/final.safetensors
    python benchmarks/size_bias.py --dataset ../shared/data/sequences --start-scale 0.5

Prints one row per sequence and the median over sequences; writes ``--out`` (JSON) when given.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from tracker import Box, build_tracker
from tracker.eval.datasets import detect_layout, load_dataset
from tracker.eval.sequence import Sequence
from tracker.single import SingleTracker


def scaled_about_centre(box: Box, scale: float) -> Box:
    return Box(box.cx - 0.5 * scale * box.w, box.cy - 0.5 * scale * box.h, scale * box.w, scale * box.h)


def sequence_bias(
    tracker: SingleTracker, sequence: Sequence, frames: int, start_scale: float = 1.0
) -> tuple[float, float, int]:
    """Median log width and height ratios of one-step predictions, and how many steps were measured."""
    truth, visible = sequence.groundtruth, sequence.visible
    ratios = []
    frames_iter = sequence.frames(frames)
    previous = next(frames_iter)
    for index, current in enumerate(frames_iter, start=1):
        if visible[index - 1] and visible[index]:
            tracker.init(previous, Box.from_xywh(truth[index - 1]))
            tracker.state = scaled_about_centre(tracker.state, start_scale)
            box = tracker.update(current).box
            ratios.append((np.log(box.w / truth[index, 2]), np.log(box.h / truth[index, 3])))
        previous = current
    if not ratios:
        return float("nan"), float("nan"), 0
    width, height = np.median(np.array(ratios), axis=0)
    return float(width), float(height), len(ratios)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/size_bias.py", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, type=Path)
    parser.add_argument("--weights", help="model weights (default: the bundled model)")
    parser.add_argument("--frames", type=int, default=120, help="frames per sequence (default 120)")
    parser.add_argument(
        "--start-scale", type=float, default=1.0, help="sides of the box before each step, times the truth (default 1)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    args = parser.parse_args(argv)
    if not args.start_scale > 0:
        parser.error(f"--start-scale must be above 0, got {args.start_scale}")
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    tracker = build_tracker(weights=args.weights, backend="eager", overrides={"TRACK.SIZE_UPDATE": "1.0"})
    rows = {}
    for sequence in load_dataset(args.dataset, detect_layout(args.dataset), None):
        width, height, steps = sequence_bias(tracker, sequence, args.frames, args.start_scale)
        rows[sequence.name] = {"log_width": width, "log_height": height, "steps": steps}
        print(f"{sequence.name:32s} log w {width:+.2f}  log h {height:+.2f}  ({steps} steps)")
    widths = [r["log_width"] for r in rows.values()]
    heights = [r["log_height"] for r in rows.values()]
    print(f"{'median over sequences':32s} log w {np.nanmedian(widths):+.2f}  log h {np.nanmedian(heights):+.2f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table = {"weights": args.weights or "bundled", "start_scale": args.start_scale, "sequences": rows}
        args.out.write_text(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
