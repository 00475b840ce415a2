"""Tiny training datasets written into a temporary folder, in each layout the training readers know."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from tests.helpers import ROOT

TRAIN_YAML = ROOT / "tests" / "data" / "tiny_train.yaml"
FRAME_W, FRAME_H = 96, 72
TARGET_COLOUR = (40, 200, 250)  # BGR: a bright orange-yellow block on a dull textured background


def background(rng: np.random.Generator, width: int = FRAME_W, height: int = FRAME_H) -> np.ndarray:
    noise = rng.integers(40, 140, size=(height // 4, width // 4, 3), dtype=np.uint8)
    return cv2.resize(noise, (width, height), interpolation=cv2.INTER_LINEAR)


def moving_boxes(count: int, start=(10.0, 12.0), size=(16.0, 12.0), velocity=(2.0, 1.5)) -> np.ndarray:
    steps = np.arange(count)[:, None]
    xy = np.asarray(start) + steps * np.asarray(velocity)
    return np.hstack([xy, np.tile(np.asarray(size), (count, 1))])


def draw_target(frame: np.ndarray, box: np.ndarray, colour=TARGET_COLOUR) -> np.ndarray:
    x, y, w, h = (round(v) for v in box)
    frame = frame.copy()
    cv2.rectangle(frame, (x, y), (x + w - 1, y + h - 1), colour, thickness=-1)
    return frame


def write_gt(path: Path, boxes: np.ndarray) -> None:
    path.write_text("".join(",".join(f"{v:g}" for v in b) + "\n" for b in boxes))


def make_ours_sequences(root: Path, names=("seq_a", "seq_b"), frames: int = 24, seed: int = 0) -> Path:
    """``root/<name>/video.mp4`` + ``groundtruth.txt`` with a block moving over a textured background."""
    rng = np.random.default_rng(seed)
    for k, name in enumerate(names):
        folder = root / name
        folder.mkdir(parents=True)
        boxes = moving_boxes(frames, start=(8.0 + 6 * k, 10.0 + 4 * k))
        back = background(rng)
        writer = cv2.VideoWriter(str(folder / "video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (FRAME_W, FRAME_H))
        for box in boxes:
            writer.write(draw_target(back, box))
        writer.release()
        write_gt(folder / "groundtruth.txt", boxes)
    return root


def make_ours_images(root: Path, count: int = 4, seed: int = 1) -> Path:
    """``root/set1/boxes.jsonl`` + ``images/``: photos with one or two labelled blocks."""
    rng = np.random.default_rng(seed)
    folder = root / "set1"
    (folder / "images").mkdir(parents=True)
    lines = []
    for i in range(count):
        image = background(rng, 80, 64)
        boxes = [[10.0 + 3 * i, 12.0, 18.0, 14.0]]
        if i % 2:
            boxes.append([50.0, 30.0, 12.0, 16.0])
        for box in boxes:
            image = draw_target(image, np.asarray(box), colour=(60, 60, 220))
        name = f"images/{i:03d}.jpg"
        cv2.imwrite(str(folder / name), image)
        entry = {"image": name, "width": 80, "height": 64, "boxes": [{"xywh": b, "label": "block"} for b in boxes]}
        lines.append(json.dumps(entry))
    (folder / "boxes.jsonl").write_text("\n".join(lines) + "\n")
    return root


def write_jpeg_frames(folder: Path, boxes: np.ndarray, names, seed: int = 2) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    back = background(rng)
    for box, name in zip(boxes, names, strict=True):
        cv2.imwrite(str(folder / name), draw_target(back, box))


def make_got10k(root: Path, frames: int = 22) -> Path:
    """``root/train/list.txt`` and ``GOT-10k_Train_000001/`` with absence.label and cover.label."""
    train = root / "train"
    folder = train / "GOT-10k_Train_000001"
    boxes = moving_boxes(frames)
    write_jpeg_frames(folder, boxes, [f"{i + 1:08d}.jpg" for i in range(frames)])
    write_gt(folder / "groundtruth.txt", boxes)
    absence = np.zeros(frames, dtype=int)
    absence[3] = 1
    cover = np.full(frames, 8)
    cover[5] = 0
    (folder / "absence.label").write_text("\n".join(map(str, absence)) + "\n")
    (folder / "cover.label").write_text("\n".join(map(str, cover)) + "\n")
    (train / "list.txt").write_text("GOT-10k_Train_000001\n")
    return root


def make_lasot(root: Path, frames: int = 21) -> Path:
    """``root/block/block-1`` (training) and ``root/block/block-2`` (named in testing_set.txt)."""
    for n in (1, 2):
        folder = root / "block" / f"block-{n}"
        boxes = moving_boxes(frames)
        write_jpeg_frames(folder / "img", boxes, [f"{i + 1:08d}.jpg" for i in range(frames)])
        write_gt(folder / "groundtruth.txt", boxes)
        occlusion = np.zeros(frames, dtype=int)
        occlusion[2] = 1
        (folder / "full_occlusion.txt").write_text(",".join(map(str, occlusion)))
        (folder / "out_of_view.txt").write_text(",".join(["0"] * frames))
    (root / "testing_set.txt").write_text("block-2\n")
    return root


def make_trackingnet(root: Path, frames: int = 20) -> Path:
    chunk = root / "TRAIN_0"
    boxes = moving_boxes(frames)
    write_jpeg_frames(chunk / "frames" / "clip1", boxes, [f"{i}.jpg" for i in range(frames)])
    (chunk / "anno").mkdir(parents=True)
    write_gt(chunk / "anno" / "clip1.txt", boxes)
    return root


def make_coco(root: Path) -> Path:
    images = root / "train2017"
    images.mkdir(parents=True)
    rng = np.random.default_rng(3)
    cv2.imwrite(str(images / "000000000001.jpg"), background(rng, 80, 64))
    data = {
        "images": [{"id": 1, "file_name": "000000000001.jpg", "width": 80, "height": 64}],
        "categories": [{"id": 7, "name": "block"}],
        "annotations": [
            {"id": 1, "image_id": 1, "bbox": [5, 6, 20, 10], "category_id": 7, "iscrowd": 0},
            {"id": 2, "image_id": 1, "bbox": [30, 30, 20, 20], "category_id": 7, "iscrowd": 1},
            {"id": 3, "image_id": 1, "bbox": [40, 8, 0, 10], "category_id": 7, "iscrowd": 0},
        ],
    }
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(data))
    return root
