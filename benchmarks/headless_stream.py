"""Soak and speed of the headless pipeline on a synthetic live camera, with OpenCV's MIL tracker as a peer.

A camera made in-process (``capture_factory``) delivers 640x480 frames (a textured background and a
textured square moving on a smooth closed path) at ``--camera-fps``. The frames take the same path as
``python main.py --no-gui``: ``open_source`` (live, newest frame only) -> ``Session`` -> ``Recorder``
(JSON lines in a temporary folder), driven by ``app.cli.track_source``. The tracker has random weights
(``build_tracker(config)``): speed and resource use are measured here, not accuracy.

Printed: RSS, Python and OS thread counts and open file handles after warm-up, every N/10 frames and at the
end; end-to-end FPS (frames tracked per wall second), tracker FPS (session step time), drops, and latency
from capture timestamp to recorded result (median and p90). Then cv2.TrackerMIL on the same frames
(``--peer-frames``, unpaced) and the speed ratio.

    python benchmarks/headless_stream.py --frames 20000                            # tiny test model, soak
    python benchmarks/headless_stream.py --frames 300 --config ostrack_vitb256_ce  # the real architecture
    python benchmarks/headless_stream.py --frames 1000 --bundled --query "the red car"  # grounding on every frame
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.cli import track_source  # noqa: E402 (after the path set-up, so it runs from a checkout)
from app.options import AppOptions  # noqa: E402
from app.record import Recorder  # noqa: E402
from app.sources import open_source  # noqa: E402
from tracker import Session, build_grounder, build_tracker  # noqa: E402
from tracker.types import Box, Frame, SessionResult  # noqa: E402

FRAME_SIZE = (640, 480)
SQUARE = 96  # side of the moving target in pixels
WARMUP_FRAMES = 20  # tracked before the first resource reading, so one-time allocations are not counted
DEFAULT_CONFIG = str(ROOT / "tests" / "data" / "tiny256ce.yaml")


class SyntheticCamera:
    """A ``cv2.VideoCapture`` look-alike: frame ``i`` is the same for every run and every reader."""

    def __init__(self, fps: float, seed: int = 0) -> None:
        width, height = FRAME_SIZE
        rng = np.random.default_rng(seed)
        # Smooth texture: random noise blurred, so the background has structure like a real scene.
        noise = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
        self.background = cv2.resize(noise, FRAME_SIZE, interpolation=cv2.INTER_CUBIC)
        pattern = rng.integers(0, 256, (SQUARE // 8, SQUARE // 8, 3), dtype=np.uint8)
        self.target = cv2.resize(pattern, (SQUARE, SQUARE), interpolation=cv2.INTER_NEAREST)
        self.period = 1.0 / fps if fps > 0 else 0.0
        self.next_due = time.monotonic()
        self.count = 0

    def box(self, i: int) -> Box:
        """Where the target is in frame ``i`` (frame pixels): a Lissajous path, about 4 px per frame."""
        width, height = FRAME_SIZE
        t = i / 60.0
        x = (width - SQUARE) * (0.5 + 0.4 * math.sin(t))
        y = (height - SQUARE) * (0.5 + 0.4 * math.sin(1.7 * t + 0.5))
        return Box(round(x), round(y), SQUARE, SQUARE)

    def frame(self, i: int) -> np.ndarray:
        box = self.box(i)
        image = self.background.copy()
        x, y = int(box.x), int(box.y)
        image[y : y + SQUARE, x : x + SQUARE] = self.target
        return image

    # -- the cv2.VideoCapture interface open_source uses ----------------------------------------------------

    def read(self) -> tuple[bool, np.ndarray]:
        if self.period:
            now = time.monotonic()
            if self.next_due > now:
                time.sleep(self.next_due - now)
            self.next_due = max(self.next_due + self.period, time.monotonic() - self.period)
        image = self.frame(self.count)
        self.count += 1
        return True, image

    def isOpened(self) -> bool:  # the cv2.VideoCapture name
        return True

    def get(self, prop: int) -> float:
        return 1.0 / self.period if prop == cv2.CAP_PROP_FPS and self.period else 0.0

    def release(self) -> None:
        pass


def resources() -> dict[str, float]:
    """RSS in MB, Python threads, OS threads and open file descriptors of this process (Linux /proc)."""
    status = Path("/proc/self/status").read_text().splitlines()
    fields = {line.split(":")[0]: line.split(":")[1].split() for line in status if ":" in line}
    return {
        "rss_mb": int(fields["VmRSS"][0]) / 1024,
        "py_threads": threading.active_count(),
        "os_threads": int(fields["Threads"][0]),
        "fds": len(os.listdir("/proc/self/fd")),
    }


def format_resources(label: str, frames: int, values: dict[str, float]) -> str:
    return (
        f"{label:>9} frame {frames:>6}: RSS {values['rss_mb']:7.1f} MB | threads "
        f"{values['py_threads']} python, {values['os_threads']} OS | open files {values['fds']}"
    )


class Meter:
    """Collects per-frame latency and prints resource readings every ``every`` frames after warm-up."""

    def __init__(self, frames: int, every: int) -> None:
        self.latency_ms = np.zeros(frames + WARMUP_FRAMES + 1, np.float32)  # preallocated: no growth to see
        self.count = 0
        self.every = every
        self.baseline: dict[str, float] | None = None
        self.last: dict[str, float] | None = None  # the latest reading while the pipeline runs
        self.started = 0.0
        self.step_ms_total = 0.0  # session time of the measured frames

    def __call__(self, frame: Frame, result: SessionResult) -> None:
        self.latency_ms[self.count] = (time.monotonic() - frame.timestamp) * 1000.0
        self.count += 1
        measured = self.count - WARMUP_FRAMES
        if measured > 0:
            self.step_ms_total += result.elapsed_ms
        if measured == 0:
            self.baseline = resources()
            self.started = time.perf_counter()
            print(format_resources("start", 0, self.baseline), flush=True)
        elif measured > 0 and measured % self.every == 0:
            self.last = resources()
            print(format_resources("", measured, self.last), flush=True)


def run_pipeline(
    config: str | None,
    frames: int,
    camera_fps: float,
    device: str,
    query: str | None = None,
    grounder_weights: str | None = None,
) -> dict[str, float]:
    """``config`` None: the bundled tracker. With ``query`` the session starts from the text instead of a box,
    with the bundled grounder (or ``grounder_weights``): on this camera nothing matches a real description, so it
    grounds every frame."""
    camera = SyntheticCamera(camera_fps)
    grounder = build_grounder(weights=grounder_weights, device=device) if query else None
    session = Session(build_tracker(config, None, device), grounder=grounder)
    meter = Meter(frames, max(1, frames // 10))
    with tempfile.TemporaryDirectory() as folder:
        results = Path(folder) / "results.jsonl"
        start = {"query": query} if query else {"init_box": camera.box(0)}
        options = AppOptions(**start, max_frames=frames + WARMUP_FRAMES, save_results=results)
        source = open_source("webcam", capture_factory=lambda _target: camera)
        recorder = Recorder(results, None, fps=camera_fps)
        try:
            track_source(source, session, recorder, options, on_result=meter)
        finally:
            recorder.close()
            source.close()
        wall = time.perf_counter() - meter.started
        stats = source.stats()
        lines = results.read_text().count("\n")
    end = meter.last or meter.baseline
    print(format_resources("closed", meter.count - WARMUP_FRAMES, resources()))
    measured = meter.latency_ms[WARMUP_FRAMES : meter.count]
    return {
        "frames": meter.count - WARMUP_FRAMES,
        "lines": lines,
        "e2e_fps": (meter.count - WARMUP_FRAMES) / wall,
        "tracker_fps": 1000.0 * (meter.count - WARMUP_FRAMES) / meter.step_ms_total,
        "captured": stats.captured,
        "dropped": stats.dropped,
        "lat_median": float(np.median(measured)),
        "lat_p90": float(np.percentile(measured, 90)),
        "rss_growth": end["rss_mb"] - meter.baseline["rss_mb"],
        "thread_growth": end["os_threads"] - meter.baseline["os_threads"],
        "fd_growth": end["fds"] - meter.baseline["fds"],
        "wall": wall,
    }


def run_peer(frames: int) -> dict[str, float]:
    """cv2.TrackerMIL on the same frames, fed directly (no source thread, no recorder): its best case."""
    camera = SyntheticCamera(0)
    peer = cv2.TrackerMIL.create()
    first = camera.box(0)
    peer.init(camera.frame(0), (int(first.x), int(first.y), int(first.w), int(first.h)))
    elapsed, ious = 0.0, []
    for i in range(1, frames + 1):
        image = camera.frame(i)
        begin = time.perf_counter()
        ok, (x, y, w, h) = peer.update(image)
        elapsed += time.perf_counter() - begin
        ious.append(Box(x, y, w, h).iou(camera.box(i)) if ok else 0.0)
    return {"fps": frames / elapsed, "iou": statistics.fmean(ious)}


def machine() -> str:
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"OpenCV {cv2.__version__}, load average {load:.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20000, help="frames to track after warm-up (default 20000)")
    parser.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        help="model config name or YAML, random weights (default: the tiny test model; "
        "the real architecture: ostrack_vitb256_ce)",
    )
    parser.add_argument("--bundled", action="store_true", help="the bundled tracker with its weights, not --config")
    parser.add_argument("--query", help="start from this text with the bundled grounder (grounds every frame here)")
    parser.add_argument("--grounder", help="grounding weights for --query (default: the bundled grounder)")
    parser.add_argument("--camera-fps", type=float, default=30.0, help="synthetic camera rate; 0 = unpaced")
    parser.add_argument("--peer-frames", type=int, default=2000, help="frames for cv2.TrackerMIL (default 2000)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)  # the peer and the capture path run single-threaded, like the tracker loop

    name = "bundled tracker (its weights)" if args.bundled else f"{Path(args.config).stem} (random weights)"
    if args.query:
        name += f", started from the query {args.query!r} with {args.grounder or 'the bundled grounder'}"
    width, height = FRAME_SIZE
    print(f"machine: {machine()}")
    print(
        f"pipeline: {name} on {args.device}, synthetic camera {width}x{height} at "
        f"{args.camera_fps:g} fps, {args.frames} frames after {WARMUP_FRAMES} warm-up, results to .jsonl",
        flush=True,
    )
    ours = run_pipeline(
        None if args.bundled else args.config, args.frames, args.camera_fps, args.device, args.query, args.grounder
    )
    print(
        f"end-to-end {ours['e2e_fps']:.1f} fps over {ours['wall']:.0f} s | tracker "
        f"{ours['tracker_fps']:.1f} fps | captured {ours['captured']}, dropped {ours['dropped']} | "
        f"latency median {ours['lat_median']:.1f} ms, p90 {ours['lat_p90']:.1f} ms"
    )
    growth = (
        f"RSS {ours['rss_growth']:+.1f} MB",
        f"OS threads {ours['thread_growth']:+d}",
        f"open files {ours['fd_growth']:+d}",
    )
    print(f"growth from warm-up to the last frame: {', '.join(growth)}")
    print(f"results lines {ours['lines']} (= {ours['frames'] + WARMUP_FRAMES} frames incl. warm-up)")
    if args.peer_frames > 0:
        peer = run_peer(args.peer_frames)
        tracker_ratio, e2e_ratio = ours["tracker_fps"] / peer["fps"], ours["e2e_fps"] / peer["fps"]
        print(
            f"peer cv2.TrackerMIL: {peer['fps']:.1f} fps over {args.peer_frames} frames "
            f"(update only, unpaced; mean IoU {peer['iou']:.2f}) | ratio tracker/MIL {tracker_ratio:.2f}x, "
            f"end-to-end/MIL {e2e_ratio:.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
