"""``python -m tracker.eval``: run trackers and OpenCV baselines on a dataset, print tables, write a report.

    python -m tracker.eval --dataset ../shared/data/sequences --tracker bundled --baselines mil,nano
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from pathlib import Path

import cv2
import torch

from tracker.errors import InputError, TrackerError
from tracker.eval.baselines import BASELINES, PEERS_DIR
from tracker.eval.datasets import LAYOUTS, detect_layout, load_dataset
from tracker.eval.plots import write_plots
from tracker.eval.report import console_summary, write_reports
from tracker.eval.runner import Evaluation, evaluate
from tracker.eval.trackers import SkippedTracker, TrackerSpec, baseline_specs, parse_tracker_spec, unique_names
from tracker.threads import THREADS_ENV


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tracker.eval",
        description="One-pass evaluation (success AUC, precision at 20 px, normalised precision, speed).",
    )
    parser.add_argument("--dataset", required=True, type=Path, help="folder that holds the sequences")
    parser.add_argument("--layout", choices=list(LAYOUTS), help="dataset layout (default: detected)")
    parser.add_argument("--sequences", help="comma-separated sequence names to run (default: all)")
    parser.add_argument(
        "--tracker",
        action="append",
        default=[],
        metavar="SPEC",
        help=(
            "'bundled' or 'config=NAME,weights=PATH', then optionally name=LABEL, device=DEV, backend=B, precision=P"
            " and config overrides such as TEST.SEARCH_FACTOR=3.5; repeat for several"
        ),
    )
    parser.add_argument(
        "--baselines", default="", help=f"comma-separated OpenCV baselines: {', '.join(BASELINES)} (or 'all')"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/eval"), help="output folder (default runs/eval)"
    )
    parser.add_argument("--max-frames", type=int, help="track at most this many frames per sequence")
    parser.add_argument("--device", default="auto", help="device for model trackers: auto, cpu, cuda")
    parser.add_argument("--peers", type=Path, default=PEERS_DIR, help="folder with the NanoTrack ONNX files")
    parser.add_argument("--threads", type=int, help="CPU threads for torch and OpenCV (default: their own)")
    parser.add_argument("--seed", type=int, default=0, help="seed set before every run (default 0)")
    parser.add_argument(
        "--init-shift",
        type=shift_text,
        default=(0.0, 0.0),
        metavar="DX,DY",
        help="move every init box by these pixels, to see how much a score depends on the exact first box",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def shift_text(text: str) -> tuple[float, float]:
    try:
        dx, dy = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not DX,DY in pixels, e.g. 1,0") from None
    return dx, dy


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def tracker_specs(
    tracker_texts: list[str], baselines: str, device: str = "auto", peers: Path = PEERS_DIR
) -> tuple[list[TrackerSpec], list[SkippedTracker]]:
    """Uniquely named specs from ``--tracker`` texts and a ``--baselines`` list (``all``: every baseline), and the
    baselines this installation cannot run; InputError when nothing is left to run."""
    names = _split(baselines)
    names = list(BASELINES) if names == ["all"] else names
    specs = [parse_tracker_spec(text, device) for text in tracker_texts]
    found, skipped = baseline_specs(names, peers)
    specs = unique_names(specs + found)
    if not specs:
        # Name the skipped ones here too: the caller never gets to print them.
        why = "".join(f" ({item.name}: {item.reason})" for item in skipped)
        raise InputError(f"nothing to run{why}; pass --tracker bundled and/or --baselines mil,nano")
    return specs, skipped


def run(args: argparse.Namespace, command: str = "") -> Evaluation:
    """Load the dataset, build the trackers, evaluate, and write results, tables and plots to ``args.out``.
    ``command`` is recorded in the report."""
    if args.max_frames is not None and args.max_frames < 2:
        raise InputError("--max-frames must be at least 2 (the init frame plus one tracked frame)")
    if args.threads is not None:
        os.environ[THREADS_ENV] = str(args.threads)  # build_tracker sets torch's threads from it, not the default
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    layout = args.layout or detect_layout(args.dataset)
    sequences = load_dataset(args.dataset, layout, _split(args.sequences) or None)
    specs, skipped = tracker_specs(args.tracker, args.baselines, args.device, args.peers)
    for item in skipped:
        print(f"skipping {item.name}: {item.reason}", file=sys.stderr)
    settings = {
        "command": command,
        "opencv": cv2.__version__,
        "torch": torch.__version__,
        "threads": str(args.threads or torch.get_num_threads()),
        "device": args.device,
        "seed": str(args.seed),
        "init_shift": ",".join(f"{v:g}" for v in args.init_shift),
        "machine": f"{platform.machine()} {platform.processor() or platform.system()}".strip(),
    }
    evaluation = evaluate(
        specs,
        sequences,
        dataset=str(args.dataset),
        layout=layout,
        max_frames=args.max_frames,
        seed=args.seed,
        out_dir=args.out,
        skipped=skipped,
        show_progress=not args.no_progress,
        settings=settings,
        init_shift=args.init_shift,
    )
    plots = [] if args.no_plots else write_plots(evaluation, args.out)
    write_reports(evaluation, args.out, plots)
    return evaluation


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    command = " ".join(["python -m tracker.eval", *map(shlex.quote, argv)])
    try:
        evaluation = run(args, command)
    except TrackerError as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(console_summary(evaluation))
    print(f"\nwrote {args.out / 'results.md'}, {args.out / 'results.json'} and results/ per tracker")
    return 0
