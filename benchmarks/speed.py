"""Speed of every inference backend for each config (random weights), with eager float32 and a peer tracker
(OpenCV's NanoTrack) timed in the same run on the same frames, so every figure is also a ratio.

Per config and backend (tracker.accel), each in a fresh subprocess so memory and thread settings do not leak:
- build: seconds to build the tracker (includes torch.compile warm-up, ONNX export or TensorRT engine build);
- model: the network call alone (template + search in, maps out), median and p90 after warm-up;
- step: ``SingleTracker.update`` on a 640x480 frame (crop, resize, normalise, network, decode), median and p90;
- end-to-end: frames per wall second through ``Session.step`` on in-memory 640x480 frames (no decoding);
- memory: peak RSS minus RSS before the model was built, and ``torch.cuda.max_memory_allocated`` on a GPU.

    python benchmarks/speed.py                                   # all configs, every backend available here
    python benchmarks/speed.py --configs tests/data/tiny256ce.yaml --backends eager onnx --steps 300
    python benchmarks/speed.py --threads 1                       # a busy machine: see tracker.accel threads
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tracker import Box, Session, build_model, build_tracker  # noqa: E402
from tracker.threads import physical_cores  # noqa: E402
from tracker.types import Frame  # noqa: E402

PEERS = ROOT.parent / "shared" / "peers"
BASE_CONFIGS = ["tests/data/tiny256ce.yaml", "ostrack_vitb256_ce", "ostrack_vitb384_ce"]
LARGE_PARAMS = 20e6  # above this a model gets ``--steps-large`` timed steps (ViT-B takes ~1 s a step on 2 cores)
# Backend specs: name[:variant]. ``eager:sdpa`` is eager with the fused attention kernel.
CPU_BACKENDS = ["eager", "auto", "eager:sdpa", "eager:bf16", "compile", "onnx", "int8"]
GPU_BACKENDS = ["eager", "auto", "eager:fp16", "compile", "cudagraph:fp32", "cudagraph:fp16", "tensorrt:fp16", "onnx"]


def default_configs() -> list[str]:
    bundled = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").glob("bundled_*.yaml"))
    return bundled + BASE_CONFIGS


def available_backends(device: str) -> list[str]:
    specs = GPU_BACKENDS if device == "cuda" else CPU_BACKENDS
    missing = set()
    if importlib.util.find_spec("onnxruntime") is None:
        missing.add("onnx")
    if importlib.util.find_spec("torch_tensorrt") is None:
        missing.add("tensorrt")
    return [s for s in specs if s.split(":")[0] not in missing]


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


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_one(
    config: str, spec: str, device: str, steps: int, steps_large: int, warmup: int, warmup_large: int
) -> dict:
    """Build one tracker and time its network, its step and the session loop. Runs in its own process."""
    backend, _, variant = spec.partition(":")
    precision = variant if variant in ("fp32", "fp16", "bf16") else "auto"
    base_rss = rss_mb()
    start = time.perf_counter()
    tracker = build_tracker(
        config, device=device, backend=backend, precision=precision, fused_attention=variant == "sdpa"
    )
    with torch.device("meta"):  # counted on a plain model: int8 weights are no longer parameters
        params = sum(p.numel() for p in build_model(config).parameters())
    count, warmup = (steps, warmup) if params < LARGE_PARAMS else (steps_large, warmup_large)
    frames, box = synthetic_frames(count + warmup + 1)
    tracker.init(frames[0], box)
    tracker.network(tracker.template_tokens, tracker.template.new_zeros(1, 3, *(2 * [tracker.cfg.test.search_size])))
    _sync(tracker.device)
    build_s = time.perf_counter() - start
    if tracker.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(tracker.device)
    size = tracker.cfg.test.search_size
    search = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(tracker.device)
    model_ms, step_ms = [], []
    for _ in range(count + warmup):
        _sync(tracker.device)
        begin = time.perf_counter()
        tracker.network(tracker.template_tokens, search)
        _sync(tracker.device)
        model_ms.append((time.perf_counter() - begin) * 1e3)
    for frame in frames[1:]:
        begin = time.perf_counter()
        tracker.update(frame)
        step_ms.append((time.perf_counter() - begin) * 1e3)
    session = Session(tracker)
    session.start(Frame(0, 0.0, frames[0]), box)
    for i, frame in enumerate(frames[1 : warmup + 1]):
        session.step(Frame(i + 1, 0.0, frame))
    begin = time.perf_counter()
    for i, frame in enumerate(frames[warmup + 1 :]):
        session.step(Frame(i + warmup + 1, 0.0, frame))
    end_to_end_fps = count / (time.perf_counter() - begin)
    return {
        "config": config,
        "backend": f"auto = {tracker.network.name}" if backend == "auto" else spec,  # what the default chose
        "precision": tracker.network.precision,
        "agreement": tracker.network.agreement,
        "params": params,
        "steps": count,
        "build_s": build_s,
        "model": percentiles(model_ms[warmup:]),
        "step": percentiles(step_ms[warmup:]),
        "e2e_fps": end_to_end_fps,
        "rss_delta_mb": peak_rss_mb() - base_rss,
        "gpu_peak_mb": torch.cuda.max_memory_allocated(tracker.device) / 2**20 if tracker.device.type == "cuda"
        else None,
        "threads": torch.get_num_threads(),
    }


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


def run_isolated(args: argparse.Namespace, config: str, spec: str) -> dict | str:
    """``measure_one`` in a child process; returns its result, or the last line of its error."""
    command = [sys.executable, __file__, "--one", config, spec, "--device", args.device, "--steps", str(args.steps),
               "--steps-large", str(args.steps_large), "--warmup", str(args.warmup),
               "--warmup-large", str(args.warmup_large)]
    env = dict(os.environ, OSTRACK_LIVE_THREADS=str(args.threads))
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {done.returncode}"


def table(results: list[dict], failures: list[str], nano: tuple[float, float] | None) -> list[str]:
    rows = [
        "| config | backend | agreement | params (M) | timed steps | build (s) | model median / p90 (ms) | "
        "model speed-up | step median / p90 (ms) | step FPS | end-to-end FPS (640x480) | end-to-end speed-up | "
        "peak RSS delta (MB) | GPU peak (MB) | step time / NanoTrack's |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    reference = {r["config"]: r for r in results if r["backend"] == "eager"}
    for r in results:
        ref = reference.get(r["config"])
        (mm, m90), (sm, s90) = r["model"], r["step"]
        model_up = f"{ref['model'][0] / mm:.2f}x" if ref else "n/a"
        e2e_up = f"{r['e2e_fps'] / ref['e2e_fps']:.2f}x" if ref else "n/a"
        gpu = f"{r['gpu_peak_mb']:.0f}" if r["gpu_peak_mb"] is not None else "-"
        nano_ratio = f"{sm / nano[0]:.1f}x" if nano else "n/a"
        kind = r["agreement"]
        rows.append(
            f"| {Path(r['config']).stem} | {r['backend']} ({r['precision']}) | {kind} | {r['params'] / 1e6:.1f} | "
            f"{r['steps']} | {r['build_s']:.1f} | {mm:.1f} / {m90:.1f} | {model_up} | {sm:.1f} / {s90:.1f} | "
            f"{1000 / sm:.1f} | {r['e2e_fps']:.1f} | {e2e_up} | {r['rss_delta_mb']:.0f} | {gpu} | {nano_ratio} |"
        )
    if nano:
        rows.append(f"| NanoTrack v2 (cv2.TrackerNano, peer) | OpenCV DNN | - | - | - | - | - | - | "
                    f"{nano[0]:.2f} / {nano[1]:.2f} | {1000 / nano[0]:.1f} | - | - | - | - | 1.0x |")
    rows += [f"- not measured: {failure}" for failure in failures]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=None, help="config names or YAML paths (default: bundled, "
                        "tiny test model, ViT-B 256 CE, ViT-B 384 CE)")
    parser.add_argument("--backends", nargs="+", default=None, help="backend specs, e.g. eager eager:sdpa "
                        "eager:bf16 compile onnx int8 cudagraph:fp16 tensorrt:fp16 (default: all available here)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=200, help="timed steps for small models (after warm-up)")
    parser.add_argument("--steps-large", type=int, help="timed steps for ViT-B-sized models (default: 200 on a GPU; "
                        "20 on the CPU, where each takes 0.5 to 1.5 s)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--warmup-large", type=int, help="warm-up steps for them (default: 10 on a GPU, 3 on the CPU)")
    parser.add_argument("--threads", type=int, default=physical_cores(), help="CPU threads (default: physical cores)")
    parser.add_argument("--one", nargs=2, metavar=("CONFIG", "BACKEND"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    on_gpu = args.device.startswith("cuda")
    args.steps_large = args.steps_large or (200 if on_gpu else 20)
    args.warmup_large = args.warmup_large or (10 if on_gpu else 3)
    if args.one:
        counts = (args.steps, args.steps_large, args.warmup, args.warmup_large)
        print(json.dumps(measure_one(*args.one, args.device, *counts)))
        return
    configs = args.configs or default_configs()
    backends = args.backends or available_backends(args.device)
    if "eager" not in backends:
        backends = ["eager", *backends]  # every speed-up is a ratio to eager float32 from the same run
    load_before = os.getloadavg()
    torch.set_num_threads(args.threads)
    frames, box = synthetic_frames(args.steps + args.warmup + 1)
    nano = time_nano(frames, box, args.warmup)
    results, failures = [], []
    for config in configs:
        for spec in backends:
            found = run_isolated(args, config, spec)
            if isinstance(found, dict):
                results.append(found)
            else:
                failures.append(f"{Path(config).stem} / {spec}: {found}")
            print(f"  done {config} {spec}: {json.dumps(found)}", file=sys.stderr, flush=True)
    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" else "no GPU"
    print(f"command: python benchmarks/speed.py {shlex.join(sys.argv[1:])}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
          f"{physical_cores()} physical cores, {args.threads} torch threads, {gpu}; torch {torch.__version__}, "
          f"cv2 {cv2.__version__}; load average (1/5/15 min) before {'/'.join(f'{v:.2f}' for v in load_before)}, "
          f"after {'/'.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"timed steps: {args.steps} for small models after {args.warmup} warm-up steps, {args.steps_large} for "
          f"ViT-B-sized ones (> {LARGE_PARAMS / 1e6:.0f}M parameters) after {args.warmup_large}; 640x480 frames in "
          "memory; random weights")
    print()
    print("\n".join(table(results, failures, nano)))


if __name__ == "__main__":
    main()
