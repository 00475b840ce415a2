"""The grounder over an endless stream: memory, threads and step time stay flat (issue 5).

The bundled grounding model (or ``--weights``) runs causally on every frame of a real 640x480 clip, looped
(``--frames`` in all), with one query set throughout, exactly as ``Grounder.step`` runs live: its memory holds
``GROUNDING.MEMORY_LENGTH`` state tokens, so nothing should grow. Printed every ``--frames / 10`` frames: RSS,
threads, open files and the step time (median and p99) of that stretch; at the end a verdict against the
growth limit. Exit status 0 only when RSS grew less than the limit after warm-up.

    python benchmarks/grounding_stream.py --frames 20000 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from headless_stream import machine, resources  # noqa: E402 (the same readings as the tracker soak)

from tracker.grounding import build_grounder  # noqa: E402 (after the path set-up, so it runs from a checkout)
from tracker.train_grounding.evaluate import SPEED_CLIP, SPEED_FRAME_SIZE, SPEED_QUERY, read_frames  # noqa: E402

WARMUP_FRAMES = 50
RSS_GROWTH_LIMIT_MB = 50.0


def report(frames: int, times_ms: list[float]) -> str:
    values = resources()
    line = (
        f"frame {frames:>6}: RSS {values['rss_mb']:7.1f} MB | threads {values['py_threads']} python, "
        f"{values['os_threads']} OS | open files {values['fds']}"
    )
    if not times_ms:
        return line
    ordered = sorted(times_ms)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"{line} | step p50 {statistics.median(times_ms):.1f} ms, p99 {p99:.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", default=None, help="grounding weights (default: the bundled model)")
    parser.add_argument("--clip", type=Path, default=SPEED_CLIP, help="video whose frames are looped")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = read_frames(args.clip)
    if not images:
        raise SystemExit(f"error: no frames could be read from {args.clip}; pass --clip with a readable video")
    grounder = build_grounder(None, args.weights, device="cpu")
    grounder.set_query(SPEED_QUERY)
    print(f"command: python benchmarks/grounding_stream.py {' '.join(sys.argv[1:])}")
    print(f"machine: {machine()}")
    clip, (width, height) = f"{args.clip.parent.name}/{args.clip.name}", SPEED_FRAME_SIZE
    print(f"clip: {clip} ({len(images)} frames, looped) at {width}x{height}; query {SPEED_QUERY!r}")
    for index in range(WARMUP_FRAMES):
        grounder.step(images[index % len(images)])
    baseline = resources()
    every = max(1, args.frames // 10)
    times: list[float] = []
    begin = time.perf_counter()
    print(report(0, []), "(after warm-up)")
    for index in range(args.frames):
        times.append(grounder.step(images[(WARMUP_FRAMES + index) % len(images)]).elapsed_ms)
        if (index + 1) % every == 0:
            print(report(index + 1, times), flush=True)
            times = []
    wall = time.perf_counter() - begin
    growth = resources()["rss_mb"] - baseline["rss_mb"]
    passed = growth < RSS_GROWTH_LIMIT_MB
    print(f"{args.frames} frames in {wall:.0f} s ({args.frames / wall:.1f} frames/s); RSS growth after warm-up "
          f"{growth:+.1f} MB (limit {RSS_GROWTH_LIMIT_MB:.0f}): {'flat' if passed else 'GROWING'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
