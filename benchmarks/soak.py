"""Soak test of the headless pipeline: a synthetic live camera at 30 FPS for an hour (or N frames), with tracking,
recording (results .jsonl and annotated video) and, when the grounding model is installed, text queries.

Not a unit test: it runs for as long as it is told to and prints what a long run does to the process. The frames
take the path of ``python main.py --no-gui`` (``open_source`` live, newest frame only -> ``Session`` ->
``Recorder``, driven by ``app.cli.track_source``). Every ``--switch-every`` frames the target is chosen again,
alternately by a box (the synthetic target's true box) and, with a grounder, by a text query, so box tracking,
grounding, the hand-over and re-targeting all run many times.

Every ``--interval`` seconds one line: frames tracked and dropped, RSS, threads (Python / OS), open file handles,
latency from capture to recorded result (p50 / p90 / p99) and the session step time. At the end the verdict
against the targets: RSS growth after warm-up under 50 MB, no growth in threads or open files, and p99 latency
stable (the last interval's p99 at most 1.5x the first interval's after warm-up, plus 20 ms for timer noise).
Exit code 0 when every target is met, 1 otherwise.

    python benchmarks/soak.py                                 # the full soak: 3600 s or 100,000 frames
    nice -n 10 python benchmarks/soak.py --seconds 300        # a five-minute check
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import signal
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from headless_stream import FRAME_SIZE, SyntheticCamera, machine, resources  # noqa: E402 (the same camera)

from app.cli import RunProgress, track_source  # noqa: E402 (after the path set-up, so it runs from a checkout)
from app.options import AppOptions  # noqa: E402
from app.record import Recorder  # noqa: E402
from app.sources import open_source  # noqa: E402
from tracker import Session, TrackerError, build_tracker  # noqa: E402
from tracker.types import Frame, SessionResult  # noqa: E402

QUERIES = ("the textured square", "a small patterned box moving around")
RSS_GROWTH_LIMIT_MB = 50.0
P99_FACTOR, P99_SLACK_MS = 1.5, 20.0  # "stable": last p99 <= first p99 * factor + slack


@dataclasses.dataclass
class Interval:
    """What one reporting interval saw; ``resources`` is read at its end."""

    start_s: float
    frames: int
    dropped: int
    latency_ms: np.ndarray
    step_ms: np.ndarray
    resources: dict[str, float]
    modes: str
    warm: bool  # the warm-up was over when the interval began

    def p(self, q: float, values: np.ndarray | None = None) -> float:
        data = self.latency_ms if values is None else values
        return float(np.percentile(data, q)) if len(data) else float("nan")


class Soak:
    """``on_result`` of ``track_source``: measures every frame, reports every interval, re-targets, and stops
    the run at the deadline (by setting ``signum``, which ``track_source`` watches)."""

    def __init__(self, args: argparse.Namespace, session: Session, camera: SyntheticCamera, source) -> None:
        self.args = args
        self.session = session
        self.camera = camera
        self.source = source
        self.signum: int | None = None  # set to stop the run (deadline or Ctrl-C)
        self.began = time.monotonic()
        self.deadline = self.began + args.seconds
        self.interval_start = self.began
        self.latency: list[float] = []
        self.steps: list[float] = []
        self.modes: set[str] = set()
        self.frames = 0
        self.dropped_before = 0
        self.intervals: list[Interval] = []
        self.switches = 0
        self.queries = itertools.cycle(QUERIES)
        self.interval_warm = False

    def __call__(self, frame: Frame, result: SessionResult) -> None:
        now = time.monotonic()
        self.latency.append((now - frame.timestamp) * 1000.0)
        if self.frames:  # the first frame only initialises
            self.steps.append(result.elapsed_ms)
        self.modes.add(result.state.value)
        self.frames += 1
        if now - self.interval_start >= self.args.interval:
            self.report(now)
        if self.frames % self.args.switch_every == 0:
            self.switch_target(frame)
        if now >= self.deadline:
            self.signum = int(signal.SIGALRM)  # time is up, like an alarm: the loop ends after this frame

    def switch_target(self, frame: Frame) -> None:
        """Alternate between a text query (when a grounder is there) and the target's true box."""
        self.switches += 1
        if self.session.grounder is not None and self.switches % 2 == 1:
            self.session.set_query(next(self.queries))
        else:
            self.session.start(frame, self.camera.box(frame.index))

    @property
    def warm(self) -> bool:
        """Past ``--warmup`` seconds, and every kind of target choice has run once (the first grounding step
        allocates the grounder's buffers and thread pools: one-time costs, not growth)."""
        modes_run = 2 if self.session.grounder is not None else 1
        return time.monotonic() - self.began >= self.args.warmup and self.switches >= modes_run

    def report(self, now: float) -> None:
        dropped = self.source.stats().dropped
        interval = Interval(
            start_s=self.interval_start - self.began,
            frames=len(self.latency),
            dropped=dropped - self.dropped_before,
            latency_ms=np.array(self.latency),
            step_ms=np.array(self.steps),
            resources=resources(),
            modes="/".join(sorted(self.modes)),
            warm=self.interval_warm,
        )
        self.intervals.append(interval)
        self.interval_warm = self.warm
        self.dropped_before = dropped
        self.latency, self.steps, self.modes = [], [], set()
        self.interval_start = now
        print(format_interval(interval, now - self.began), flush=True)


def format_interval(i: Interval, elapsed: float) -> str:
    r = i.resources
    return (
        f"{elapsed:7.0f} s{' ' if i.warm else '*'}| {i.frames:5d} frames, {i.dropped:5d} dropped | "
        f"RSS {r['rss_mb']:7.1f} MB | "
        f"threads {r['py_threads']:2d} py {r['os_threads']:3d} os | files {r['fds']:3d} | latency p50 "
        f"{i.p(50):6.1f} p90 {i.p(90):6.1f} p99 {i.p(99):6.1f} ms | step p50 {i.p(50, i.step_ms):6.1f} "
        f"p99 {i.p(99, i.step_ms):6.1f} ms | {i.modes}"
    )


def build_session(args: argparse.Namespace) -> tuple[Session, str]:
    """The tracker (``--weights``/``--config``, else the bundled model, as ``python main.py`` runs it) and, if one
    is installed, the grounder; returns the session and a line saying what grounding does in this run."""
    tracker = build_tracker(args.config, args.weights, args.device)
    if args.threads:
        torch.set_num_threads(args.threads)  # after build_tracker, which sets its own default
    if args.no_grounding:
        return Session(tracker), "grounding: off (--no-grounding)"
    try:
        from tracker import build_grounder
    except ImportError:
        return Session(tracker), "grounding: not in this version of tracker/ (no build_grounder); box tracking only"
    try:
        grounder = build_grounder(args.grounding_config, args.grounding_weights, args.device)
    except TrackerError as err:
        return Session(tracker), f"grounding: not available ({err}); box tracking only"
    name = args.grounding_weights or args.grounding_config or "the bundled grounding model"
    return Session(tracker, grounder=grounder), f"grounding: on ({name}), queries {', '.join(QUERIES)}"


def verdict(intervals: list[Interval], results_lines: int, frames: int) -> list[tuple[str, bool]]:
    """Each target with its outcome, from the first interval that began after the warm-up to the last."""
    measured = [i for i in intervals if i.warm]
    if len(measured) < 2:
        return [("at least two reporting intervals after the warm-up (run longer or lower --interval)", False)]
    base, last = measured[0].resources, measured[-1].resources
    growth = last["rss_mb"] - base["rss_mb"]
    first_p99, last_p99 = measured[0].p(99), measured[-1].p(99)
    limit = first_p99 * P99_FACTOR + P99_SLACK_MS
    return [
        (f"RSS growth after warm-up {growth:+.1f} MB (target < {RSS_GROWTH_LIMIT_MB:.0f} MB)", growth < 50.0),
        (
            f"threads {base['py_threads']}->{last['py_threads']} Python, {base['os_threads']}->{last['os_threads']} "
            "OS (target: no growth)",
            last["py_threads"] <= base["py_threads"] and last["os_threads"] <= base["os_threads"],
        ),
        (f"open files {base['fds']}->{last['fds']} (target: no growth)", last["fds"] <= base["fds"]),
        (
            f"p99 latency first {first_p99:.1f} ms, last {last_p99:.1f} ms (target: last <= "
            f"{P99_FACTOR:g} x first + {P99_SLACK_MS:g} ms = {limit:.1f} ms)",
            last_p99 <= limit,
        ),
        (f"results lines {results_lines} for {frames} frames tracked (target: equal)", results_lines == frames),
    ]


def run(args: argparse.Namespace) -> int:
    camera = SyntheticCamera(args.fps)
    session, grounding_line = build_session(args)
    width, height = FRAME_SIZE
    print(f"machine: {machine()}")
    print(
        f"soak: synthetic camera {width}x{height} at {args.fps:g} fps, up to {args.seconds:g} s or {args.frames} "
        f"frames, report every {args.interval:g} s, warm-up {args.warmup:g} s, re-target every "
        f"{args.switch_every} frames, tracker {session.tracker.cfg.name or 'from the weights'} on "
        f"{session.tracker.device} with {torch.get_num_threads()} threads"
    )
    print(grounding_line)
    print("(* = interval still in the warm-up; the verdict compares the first and last intervals after it)", flush=True)
    if args.out_dir:
        Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.out_dir) as folder:
        results, video = Path(folder) / "soak.jsonl", Path(folder) / "soak.mp4"
        options = AppOptions(init_box=camera.box(0), max_frames=args.frames, save_results=results, save_video=video)
        source = open_source("webcam", capture_factory=lambda _target: camera)
        soak = Soak(args, session, camera, source)
        previous = signal.signal(signal.SIGINT, lambda signum, _frame: setattr(soak, "signum", signum))
        recorder = Recorder(results, video, fps=args.fps)
        progress = RunProgress()
        try:
            track_source(source, session, recorder, options, stop=soak, progress=progress, on_result=soak)
            if soak.latency:
                soak.report(time.monotonic())  # the last, partial interval, while everything still runs
        finally:
            recorder.close()
            source.close()
            signal.signal(signal.SIGINT, previous)
        lines = results.read_text().count("\n")
        capture = cv2.VideoCapture(str(video))
        video_frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        capture.release()
        sizes = f"results {results.stat().st_size / 1e6:.1f} MB, video {video.stat().st_size / 1e6:.1f} MB"
    stats = source.stats()
    wall = time.monotonic() - soak.began
    print(
        f"ran {wall:.0f} s: {progress.frames} frames tracked ({progress.frames / wall:.1f} fps), camera "
        f"{stats.captured} captured, {stats.dropped} dropped; {soak.switches} re-targets; video {video_frames} "
        f"frames; {sizes}; recorder error: {recorder.error or 'none'}"
    )
    print(f"after closing: {format_resources_line(resources())}")
    outcome = verdict(soak.intervals, lines, progress.frames)
    outcome.append((f"video frames {video_frames} for {progress.frames} frames (target: equal)",
                    video_frames == progress.frames))  # fmt: skip
    for text, ok in outcome:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    passed = all(ok for _, ok in outcome)
    print(f"verdict: {'all targets met' if passed else 'targets missed'}")
    return 0 if passed else 1


def format_resources_line(r: dict[str, float]) -> str:
    return f"RSS {r['rss_mb']:.1f} MB, threads {r['py_threads']} Python / {r['os_threads']} OS, files {r['fds']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--seconds", type=float, default=3600.0, help="stop after this long (default 3600)")
    add("--frames", type=int, default=100_000, help="or after this many frames, whichever comes first")
    add("--interval", type=float, default=60.0, help="seconds between report lines (default 60)")
    add(
        "--warmup",
        type=float,
        default=60.0,
        help="at least this many seconds, and one target choice of each kind, before the baseline reading (default 60)",
    )
    add("--fps", type=float, default=30.0, help="synthetic camera rate (default 30)")
    add("--switch-every", type=int, default=600, help="re-target every N frames (default 600)")
    add("--config", help="tracker config (default: the bundled model's)")
    add("--weights", help="tracker weights")
    add("--grounding-config", help="grounding config, for an untrained grounder (default: the bundled model)")
    add("--grounding-weights", help="grounding weights (default: the bundled model)")
    add("--no-grounding", action="store_true", help="box tracking only")
    add("--device", default="cpu")
    add("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    add("--out-dir", help="folder for the temporary results and video (default: the system's temp folder)")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
