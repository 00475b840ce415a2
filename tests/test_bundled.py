"""The bundled tracker as shipped: listed in the manifest with its provenance, small, the default of the CLI, and
able to follow a target (a synthetic clip it never saw)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from app.cli import main
from tracker.build import build_tracker, default_weights
from tracker.eval.metrics import iou
from tracker.types import Box
from tracker.weights import WEIGHTS_DIR, file_sha256

MAX_BYTES = 50 * 1024 * 1024  # issue 4: the bundled file stays under 50 MB
CLIP_SIZE = (320, 240)
TARGET = 36  # side of the moving target, pixels
STEP = (3, 2)  # its motion per frame, pixels
FRAMES = 40


@pytest.fixture(scope="module")
def entry() -> dict:
    manifest = json.loads((WEIGHTS_DIR / "manifest.json").read_text())
    trackers = {name: e for name, e in manifest["files"].items() if e.get("kind", "tracker") == "tracker"}
    defaults = [name for name, e in trackers.items() if e.get("default")]
    assert len(defaults) == 1, f"exactly one default tracker expected, found {defaults}"
    return {"name": defaults[0], **trackers[defaults[0]]}


def test_default_weights_are_the_manifest_default_and_match_its_sha256(entry):
    path = default_weights()
    assert path == WEIGHTS_DIR / entry["name"]
    assert file_sha256(path) == entry["sha256"] and path.stat().st_size == entry["size"] < MAX_BYTES


def test_manifest_records_how_the_model_was_made(entry):
    for key in ("config", "training_command", "seed", "data", "wall_time_s", "machine", "scores"):
        assert entry.get(key) not in (None, "", {}), f"manifest entry lacks {key}"
    assert "--seed" in entry["training_command"] and str(entry["seed"]) in entry["training_command"]


def _clip() -> tuple[list[np.ndarray], np.ndarray]:
    """Frames of a patterned square gliding over a blurred colour texture, and its true boxes."""
    rng = np.random.default_rng(7)
    width, height = CLIP_SIZE
    background = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (0, 0), 3)
    target = np.zeros((TARGET, TARGET, 3), dtype=np.uint8)
    target[: TARGET // 2, : TARGET // 2] = (30, 30, 220)
    target[TARGET // 2 :, TARGET // 2 :] = (30, 30, 220)
    target[: TARGET // 2, TARGET // 2 :] = (240, 240, 240)
    target[TARGET // 2 :, : TARGET // 2] = (240, 240, 240)
    frames, boxes = [], []
    for i in range(FRAMES):
        x, y = 40 + STEP[0] * i, 50 + STEP[1] * i
        frame = background.copy()
        frame[y : y + TARGET, x : x + TARGET] = target
        frames.append(frame)
        boxes.append([x, y, TARGET, TARGET])
    return frames, np.asarray(boxes, dtype=np.float64)


def test_bundled_tracker_follows_a_target_it_never_saw():
    frames, truth = _clip()
    tracker = build_tracker(device="cpu")
    tracker.init(frames[0], Box.from_xywh(truth[0]))
    predicted = np.asarray([tracker.update(frame).box.as_list() for frame in frames[1:]])
    overlaps = iou(predicted, truth[1:])
    assert overlaps.mean() > 0.6 and overlaps.min() > 0.3, overlaps.round(2)


def test_cli_without_weights_runs_the_bundled_model(tmp_path, capfd):
    frames, truth = _clip()
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, CLIP_SIZE)
    for frame in frames:
        writer.write(frame)
    writer.release()
    results = tmp_path / "boxes.txt"
    box = ",".join(str(int(v)) for v in truth[0])
    rc = main(["--source", str(video), "--init-box", box, "--no-gui", "--save-results", str(results)])
    assert rc == 0, capfd.readouterr().err
    predicted = np.loadtxt(results, delimiter=",")
    assert predicted.shape == (FRAMES, 4)
    assert iou(predicted[1:], truth[1:]).mean() > 0.5
