"""Shared pieces of the reliability tests (no tests here): a micro model that keeps end-to-end runs fast on a
shared CPU, synthetic videos and image folders, a fake camera that can be unplugged, and CLI helpers."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from app.cli import main
from tests.helpers import TINY_WEIGHTS, TINY_YAML
from tracker.checkpoint import save_safetensors
from tracker.config import load_config
from tracker.models.ostrack import build_model

# The conformance model, for checks that must fail before any frame is tracked (loading costs ~1 s).
TINY = ["--config", str(TINY_YAML), "--weights", str(TINY_WEIGHTS), "--device", "cpu"]

# A two-block model on 32/64-pixel crops: every path of the real tracker at a tenth of the tiny model's cost.
# The TRACK thresholds make states predictable when a test controls the score map (see confident_forward). Its
# PRESENCE reads "the network gave a real peak" (0.3 at a peak of 0.08) and ignores colour; no re-detection, so a
# scripted forward sees one call per frame. A random micro model, whose peaks sit near 0.5, never counts as lost.
MICRO_YAML = """\
DATA:
  SEARCH: {SIZE: 64, FACTOR: 4.0}
  TEMPLATE: {SIZE: 32, FACTOR: 2.0}
MODEL:
  PRETRAIN_FILE: ""
  BACKBONE: {TYPE: micro, EMBED_DIM: 32, DEPTH: 2, NUM_HEADS: 2, MLP_RATIO: 2.0, STRIDE: 16,
             CE_LOC: [1], CE_KEEP_RATIO: [0.7], CE_TEMPLATE_RANGE: CTR_POINT}
  HEAD: {TYPE: CENTER, NUM_CHANNELS: 16}
TEST: {SEARCH_FACTOR: 4.0, SEARCH_SIZE: 64, TEMPLATE_FACTOR: 2.0, TEMPLATE_SIZE: 32}
TRACK: {LOST_SCORE: 0.3, LOST_FRAMES: 2, RECOVER_SCORE: 0.5, RECOVER_FRAMES: 2,
        PRESENCE: {SCORE_WEIGHT: 40.0, COLOUR_WEIGHT: 0.0, BIAS: -4.0}, REDETECT: {ENABLED: false}}
"""

FRAME_SIZE = (160, 120)  # width, height of the synthetic videos
THREADS_ENV = "OSTRACK_LIVE_THREADS"  # read by tracker.build when it sets the CPU thread count
SQUARE = 30


@pytest.fixture(autouse=True)
def one_torch_thread(monkeypatch):
    """One torch thread, also for trackers the CLI builds: the machine's cores are shared, and two threads
    contending are far slower than one. Import it into a test module to apply it there."""
    previous = torch.get_num_threads()
    monkeypatch.setenv(THREADS_ENV, "1")
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def write_micro_weights(folder: Path) -> Path:
    """Random micro-model weights as our safetensors, config embedded (so no --config is needed)."""
    yaml_path = folder / "micro.yaml"
    yaml_path.write_text(MICRO_YAML)
    cfg = load_config(yaml_path)
    torch.manual_seed(0)
    return save_safetensors(build_model(cfg), cfg, folder / "micro.safetensors")


def micro_args(weights: Path) -> list[str]:
    return ["--weights", str(weights), "--device", "cpu"]


def run_cli(*args: object) -> int:
    return main(["--no-gui", *map(str, args)])


def scene(i: int, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """A textured background with a bright square moving right by 2 px per frame, from (20, 40)."""
    width, height = size
    image = np.random.default_rng(0).integers(0, 120, (height, width, 3), dtype=np.uint8)
    x = 20 + 2 * i % max(width - SQUARE - 20, 1)
    image[40 : 40 + SQUARE, x : x + SQUARE] = (40, 220, 250)
    return image


def write_video(path: Path, frames: int, fps: float = 25.0) -> Path:
    codec = "MJPG" if path.suffix == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, FRAME_SIZE)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(scene(i))
    writer.release()
    return path


def video_frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    return frames


def text_rows(path: Path) -> list[list[float]]:
    return [[float(v) for v in line.split(",")] for line in path.read_text().splitlines()]


def within(box: list[float], width: float, height: float) -> bool:
    """``box`` (x, y, w, h) has a positive size and lies inside a ``width`` x ``height`` frame."""
    x, y, w, h = box
    return w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= width and y + h <= height


def error_lines(err: str) -> list[str]:
    """stderr without tqdm's progress bar (it only draws on a terminal, but be safe)."""
    return [line for line in err.strip().splitlines() if line and "frame/s" not in line and "it/s" not in line]


def assert_one_line_error(err: str, expected: str) -> str:
    lines = error_lines(err)
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    return lines[0]


class FakeCamera:
    """A live camera (``factory`` stands in for cv2.VideoCapture) that can be unplugged and plugged back, and
    whose picture size can change."""

    def __init__(self, size: tuple[int, int] = FRAME_SIZE, period_s: float = 0.01) -> None:
        self.size = size
        self.period_s = period_s
        self.plugged = threading.Event()
        self.plugged.set()
        self.delivered = 0
        self.opens = 0

    def factory(self, target: object) -> FakeCapture:
        self.opens += 1
        return FakeCapture(self)


class FakeCapture:
    def __init__(self, camera: FakeCamera) -> None:
        self.camera = camera
        self.open = camera.plugged.is_set()

    def isOpened(self) -> bool:  # the cv2.VideoCapture names
        return self.open

    def read(self):
        if not (self.open and self.camera.plugged.is_set()):
            self.open = False
            time.sleep(0.005)
            return False, None
        time.sleep(self.camera.period_s)
        self.camera.delivered += 1
        return True, scene(self.camera.delivered, self.camera.size)

    def get(self, prop: int) -> float:
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        self.open = False
