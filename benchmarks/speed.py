"""Model-forward and tracker-step time on this machine for each config (random weights), with a peer tracker
(OpenCV's NanoTrack) timed in the same run on the same frames, so every figure is also a ratio.

    python benchmarks/speed.py --configs ostrack_vitb256_ce ostrack_vitb384_ce --steps 30
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from tracker import Box, build_tracker

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT.parent / "shared" / "peers"
DEFAULT_CONFIGS = ["tests/data/tiny256ce.yaml", "ostrack_vitb256_ce", "ostrack_vitb256", "ostrack_vitb384_ce"]


def synthetic_frames(count: int, width: int = 640, height: int = 480) -> tuple[list[np.ndarray], Box]:
    """A textured square drifting over a noisy background; returns frames (BGR) and the first-frame box."""
    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur(rng.integers(0, 255, (height, width, 3), dtype=np.uint8), (0, 0), 3)
    patch = rng.integers(0, 255, (60, 60, 3), dtype=np.uint8)
    frames = []
    for i in range(count):
        frame = background.copy()
        x, y = 200 + int(40 * np.sin(i / 15)), 150 + int(30 * np.cos(i / 20))
        frame[y : y + 60, x : x + 60] = patch
        frames.append(frame)
    return frames, Box(200, 180, 60, 60)


def percentiles(values_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(values_ms)
    return statistics.median(ordered), ordered[int(0.9 * (len(ordered) - 1))]


def time_ours(config: str, frames: list[np.ndarray], box: Box, warmup: int) -> dict:
    tracker = build_tracker(config, device="cpu")
    tracker.init(frames[0], box)
    template = tracker.template
    search = torch.randn(1, 3, tracker.cfg.test.search_size, tracker.cfg.test.search_size)
    forward_ms, step_ms = [], []
    with torch.no_grad():
        for i, frame in enumerate(frames[1:]):
            start = time.perf_counter()
            tracker.model(template, search, ce_template_mask=tracker.focus)
            forward = (time.perf_counter() - start) * 1e3
            start = time.perf_counter()
            tracker.update(frame)
            step = (time.perf_counter() - start) * 1e3
            if i >= warmup:
                forward_ms.append(forward)
                step_ms.append(step)
    params = sum(p.numel() for p in tracker.model.parameters())
    return {"forward": percentiles(forward_ms), "step": percentiles(step_ms), "params": params}


def time_nano(frames: list[np.ndarray], box: Box, warmup: int) -> tuple[float, float] | None:
    if not hasattr(cv2, "TrackerNano_Params") or not (PEERS / "nanotrack_backbone_sim.onnx").is_file():
        return None
    params = cv2.TrackerNano_Params()
    params.backbone = str(PEERS / "nanotrack_backbone_sim.onnx")
    params.neckhead = str(PEERS / "nanotrack_head_sim.onnx")
    peer = cv2.TrackerNano_create(params)
    peer.init(frames[0], tuple(int(v) for v in box.as_list()))
    step_ms = []
    for i, frame in enumerate(frames[1:]):
        start = time.perf_counter()
        peer.update(frame)
        if i >= warmup:
            step_ms.append((time.perf_counter() - start) * 1e3)
    return percentiles(step_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, help="config names or YAML paths")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per config (after warm-up)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frames, box = synthetic_frames(args.steps + args.warmup + 1)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, cv2 {cv2.__version__}; 640x480 frames, {args.steps} timed steps")
    nano = time_nano(frames, box, args.warmup)
    print("| config | params (M) | forward median / p90 (ms) | tracker step median / p90 (ms) | step FPS | "
          "step time / NanoTrack's |")
    print("|---|---|---|---|---|---|")
    for config in args.configs:
        res = time_ours(config, frames, box, args.warmup)
        (fm, f90), (sm, s90) = res["forward"], res["step"]
        ratio = f"{sm / nano[0]:.1f}x" if nano else "n/a"
        print(f"| {config} | {res['params'] / 1e6:.1f} | {fm:.1f} / {f90:.1f} | {sm:.1f} / {s90:.1f} | "
              f"{1000 / sm:.1f} | {ratio} |")
    if nano:
        print(f"| NanoTrack v2 (cv2.TrackerNano, peer) | - | - | {nano[0]:.2f} / {nano[1]:.2f} | "
              f"{1000 / nano[0]:.1f} | 1.0x |")


if __name__ == "__main__":
    main()
