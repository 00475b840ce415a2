"""Tiny datasets for the evaluation tests, written into tmp_path in each benchmark's own layout.

Every sequence shows a textured square drifting over a blurred noise background; its ground truth is exact.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT, SIDE = 96, 72, 20


def scene(count: int, seed: int = 0, step: int = 2) -> tuple[list[np.ndarray], np.ndarray]:
    """``count`` BGR frames (HEIGHT x WIDTH) and their (count, 4) x,y,w,h boxes of the moving square."""
    rng = np.random.default_rng(seed)
    background = cv2.GaussianBlur(rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8), (0, 0), 2)
    patch = rng.integers(0, 255, (SIDE, SIDE, 3), dtype=np.uint8)
    frames, boxes = [], []
    for i in range(count):
        x, y = 20 + step * i, 20 + (step // 2) * i
        frame = background.copy()
        frame[y : y + SIDE, x : x + SIDE] = patch
        frames.append(frame)
        boxes.append([x, y, SIDE, SIDE])
    return frames, np.asarray(boxes, dtype=np.float64)


def write_images(folder: Path, frames: list[np.ndarray], pattern: str = "{:04d}.jpg", start: int = 1) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / pattern.format(i + start)), frame)


def write_boxes(path: Path, boxes: np.ndarray, separator: str = ",") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [separator.join(f"{v:g}" for v in row) for row in boxes]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (WIDTH, HEIGHT))
    for frame in frames:
        writer.write(frame)
    writer.release()


def make_otb(root: Path, count: int = 5) -> Path:
    """``Square`` (tab-separated GT, two extra images past the annotation) and ``Twin`` (two targets)."""
    frames, boxes = scene(count + 2)
    write_images(root / "Square" / "img", frames)
    write_boxes(root / "Square" / "groundtruth_rect.txt", boxes[:count], "\t")
    frames, boxes = scene(count, seed=1)
    write_images(root / "Twin" / "img", frames)
    write_boxes(root / "Twin" / "groundtruth_rect.1.txt", boxes)
    write_boxes(root / "Twin" / "groundtruth_rect.2.txt", boxes + np.array([1, 1, 0, 0]), " ")
    return root


def make_lasot(root: Path, count: int = 4) -> Path:
    """Class ``cup`` with ``cup-1`` (occluded frame 1, out of view frame 2) and ``cup-2``; only cup-1 is
    listed in testing_set.txt."""
    for n in (1, 2):
        frames, boxes = scene(count, seed=n)
        folder = root / "cup" / f"cup-{n}"
        write_images(folder / "img", frames, "{:08d}.jpg")
        write_boxes(folder / "groundtruth.txt", boxes)
        (folder / "full_occlusion.txt").write_text("0,1,0,0\n")
        (folder / "out_of_view.txt").write_text("0,0,1,0\n")
        (folder / "nlp.txt").write_text(f"the red cup number {n}\n")
    (root / "testing_set.txt").write_text("cup-1\n")
    return root


def make_got10k(split: Path, count: int = 4) -> Path:
    """A GOT-10k split folder: two sequences listed in list.txt (in reverse name order), absence flags."""
    names = ["GOT-10k_Val_000002", "GOT-10k_Val_000001"]
    for n, name in enumerate(names):
        frames, boxes = scene(count, seed=n)
        write_images(split / name, frames, "{:08d}.jpg")
        write_boxes(split / name / "groundtruth.txt", boxes)
        (split / name / "absence.label").write_text("0\n0\n1\n0\n")
    (split / "list.txt").write_text("\n".join(names) + "\n")
    return split


def make_tnl2k(root: Path, count: int = 4) -> Path:
    frames, boxes = scene(count)
    write_images(root / "Walk_1" / "imgs", frames, "{:05d}.png")
    write_boxes(root / "Walk_1" / "groundtruth.txt", boxes)
    (root / "Walk_1" / "language.txt").write_text("the square moving right\n")
    return root


def make_ours(root: Path, count: int = 6) -> Path:
    """Our layout: video.mp4 + groundtruth.txt + language.txt; frame 3 of ``drift`` has a NaN box."""
    frames, boxes = scene(count)
    if count > 3:
        boxes[3] = np.nan
    write_video(root / "drift" / "video.mp4", frames)
    write_boxes(root / "drift" / "groundtruth.txt", boxes)
    (root / "drift" / "language.txt").write_text("the textured square\n")
    return root
