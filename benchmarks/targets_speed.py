"""What several targets and a lost target cost: the session step with 1, 2 and 4 box-started targets (all in one
batched forward), and the re-detection step of a lost target, against the one-target step and NanoTrack v2's step
timed in the same run on the same 640x480 frames.

    python benchmarks/targets_speed.py                     # the bundled model, default backend
    python benchmarks/targets_speed.py --threads 1 --steps 300 --backend eager
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import cv2
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from speed import percentiles, synthetic_frames, time_nano  # noqa: E402

from tracker import Box, Session, build_tracker  # noqa: E402
from tracker.config import parse_overrides  # noqa: E402
from tracker.target import Target  # noqa: E402
from tracker.threads import physical_cores  # noqa: E402
from tracker.types import Frame  # noqa: E402

TARGET_COUNTS = (1, 2, 4)


def session_step_ms(tracker, frames, box: Box, targets: int, warmup: int) -> tuple[float, float]:
    """Median and p90 of ``Session.step`` following ``targets`` boxes (the first one and shifted copies)."""
    session = Session(tracker)
    first = Frame(0, 0.0, frames[0])
    session.start(first, box)
    for k in range(1, targets):
        session.add_target(first, Box(box.x + 70 * k, box.y + 40 * (k % 2), box.w, box.h))
    times = []
    for i, frame in enumerate(frames[1:]):
        begin = time.perf_counter()
        session.step(Frame(i + 1, 0.0, frame))
        times.append((time.perf_counter() - begin) * 1e3)
    return percentiles(times[warmup:])


def lost_step_ms(args: argparse.Namespace, frames, box: Box) -> tuple[tuple[float, float], int]:
    """Median and p90 of a lost target's re-detection step (a target set never to be confident, so that every
    step after the first is one), and the crops each such step scores."""
    overrides = {"TRACK.LOST_SCORE": "1.0", "TRACK.LOST_FRAMES": "1", "TRACK.RECOVER_SCORE": "1.0"}
    overrides.update(parse_overrides(args.set))
    if args.redetect_batch is not None:
        overrides["TRACK.REDETECT.BATCH"] = str(args.redetect_batch)
    tracker = build_tracker(backend=args.backend, overrides=overrides)
    target = Target(tracker)
    target.init(frames[0], box)
    target.update(frames[1])  # lost from here on
    times = []
    for frame in frames[2:]:
        begin = time.perf_counter()
        target.update(frame)
        times.append((time.perf_counter() - begin) * 1e3)
    return percentiles(times[args.warmup :]), tracker.cfg.track.redetect.batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=physical_cores())
    parser.add_argument("--redetect-batch", type=int, help="crops per re-detection step (default: the config's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change one config key of the lost target's tracker (dotted, YAML value)")
    args = parser.parse_args()
    os.environ["OSTRACK_LIVE_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    frames, box = synthetic_frames(args.steps + args.warmup + 2)
    box = Box(box.x - 150, box.y - 100, box.w, box.h)  # room for shifted copies to the right
    nano = time_nano(frames, box, args.warmup)
    # Targets that never count as lost, so every row times tracking steps: a lost target steps by re-detection.
    tracker = build_tracker(backend=args.backend, overrides={"TRACK.LOST_FRAMES": "1000000"})
    rows = {n: session_step_ms(tracker, frames, box, n, args.warmup) for n in TARGET_COUNTS}
    lost, crops = lost_step_ms(args, frames, box)
    one = rows[1][0]
    print(f"command: python benchmarks/targets_speed.py {shlex.join(sys.argv[1:])}")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"{args.threads} torch threads; torch {torch.__version__}, cv2 {cv2.__version__}; backend "
        f"{tracker.network.name}; load average {'/'.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    print()
    print("| what | step median / p90 (ms) | / one target's step | / NanoTrack v2's step |")
    print("|---|---|---|---|")
    for n, (median, p90) in rows.items():
        print(
            f"| {n} target{'s' if n > 1 else ''}, one batched forward | {median:.2f} / {p90:.2f} | "
            f"{median / one:.2f}x | {_ratio(median, nano)} |"
        )
    print(
        f"| lost target, re-detection ({crops} crops a step) | {lost[0]:.2f} / {lost[1]:.2f} | "
        f"{lost[0] / one:.2f}x | {_ratio(lost[0], nano)} |"
    )
    if nano:
        print(f"| NanoTrack v2 (cv2.TrackerNano, peer) | {nano[0]:.2f} / {nano[1]:.2f} | {nano[0] / one:.2f}x | 1.0x |")


def _ratio(ms: float, nano: tuple[float, float] | None) -> str:
    return f"{ms / nano[0]:.1f}x" if nano else "n/a"


if __name__ == "__main__":
    main()
