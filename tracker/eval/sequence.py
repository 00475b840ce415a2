"""One evaluation sequence: where its frames come from, its ground truth, and how to read both.

Every dataset reader (``tracker.eval.datasets``) yields this one type, so the runner and the scorer never know
which benchmark a sequence came from.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tracker.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
_SEPARATORS = re.compile(r"[,;\s]+")


@dataclass(frozen=True, eq=False)
class Sequence:
    """A tracking sequence with one ground-truth box per frame.

    Frames come from ``frame_paths`` (image files, in order) or from ``video`` (read with
    ``cv2.VideoCapture``); exactly one of the two is set. ``groundtruth`` is an (N, 4) float array of x, y,
    w, h in frame pixels with NaN rows where the dataset gives no box. ``absent`` (N,) marks frames where the
    dataset says the target is not visible (occluded, out of view); None when the dataset has no such flag.
    """

    name: str
    groundtruth: np.ndarray
    frame_paths: tuple[Path, ...] | None = None
    video: Path | None = None
    language: str | None = None
    absent: np.ndarray | None = None

    def __post_init__(self) -> None:
        if (self.frame_paths is None) == (self.video is None):
            raise InputError(
                f"sequence {self.name} needs either frame images or a video, not both or neither"
            )
        gt = np.asarray(self.groundtruth, dtype=np.float64)
        if gt.ndim != 2 or gt.shape[1] != 4:
            raise InputError(f"sequence {self.name}: ground truth must have 4 numbers per line (x,y,w,h)")
        object.__setattr__(self, "groundtruth", gt)
        if self.absent is not None:
            object.__setattr__(self, "absent", np.asarray(self.absent, dtype=bool).reshape(-1))

    def __len__(self) -> int:
        return len(self.groundtruth)

    @property
    def visible(self) -> np.ndarray:
        """(N,) bool: frames with a box to score (finite, positive area, not flagged absent)."""
        return visible_mask(self.groundtruth, self.absent)

    def frames(self, max_frames: int | None = None) -> Iterator[np.ndarray]:
        """Yield BGR uint8 frames in order: at most ``max_frames`` and never more than there are GT lines."""
        count = len(self) if max_frames is None else min(len(self), max_frames)
        if self.frame_paths is not None:
            yield from _read_images(self.frame_paths[:count], self.name)
        else:
            yield from _read_video(self.video, count, self.name)


def visible_mask(groundtruth: np.ndarray, absent: np.ndarray | None = None) -> np.ndarray:
    """(N,) bool: rows of ``groundtruth`` (N, 4) that are finite with positive width and height, and not
    flagged in ``absent``."""
    gt = np.asarray(groundtruth, dtype=np.float64)
    mask = np.isfinite(gt).all(axis=1) & (np.nan_to_num(gt[:, 2]) > 0) & (np.nan_to_num(gt[:, 3]) > 0)
    if absent is not None:
        flags = np.zeros(len(gt), dtype=bool)
        n = min(len(gt), len(absent))
        flags[:n] = np.asarray(absent, dtype=bool)[:n]
        mask &= ~flags
    return mask


def read_boxes(path: Path) -> np.ndarray:
    """An (N, 4) float array from a box file: one ``x,y,w,h`` line per frame, separated by commas, tabs
    or spaces.

    ``NaN`` (any case) is read as missing; blank lines at the end are ignored.
    """
    rows = []
    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    for number, line in enumerate(lines, start=1):
        fields = [f for f in _SEPARATORS.split(line.strip()) if f]
        if not fields:
            rows.append([np.nan] * 4)
            continue
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise InputError(f"{path} line {number}: '{line.strip()}' is not four numbers x,y,w,h") from None
        if len(values) != 4:
            raise InputError(f"{path} line {number}: expected 4 numbers x,y,w,h, found {len(values)}")
        rows.append(values)
    if not rows:
        raise InputError(f"{path} has no boxes; give one x,y,w,h line per frame")
    return np.asarray(rows, dtype=np.float64)


def read_flags(path: Path) -> np.ndarray:
    """A (N,) bool array from a 0/1 flag file: values on one line (comma separated) or one per line."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    fields = [f for f in _SEPARATORS.split(text.strip()) if f]
    try:
        return np.asarray([float(f) for f in fields], dtype=np.float64) > 0
    except ValueError:
        raise InputError(f"{path} must hold only 0/1 flags, one per frame") from None


def read_text_line(path: Path) -> str | None:
    """The first non-empty line of a text file, or None if the file is missing or empty."""
    if not Path(path).is_file():
        return None
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if line.strip():
            return line.strip()
    return None


def list_images(folder: Path) -> tuple[Path, ...]:
    """Image files directly in ``folder``, sorted by name (dataset frames are zero-padded numbers)."""
    return tuple(
        sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    )


def _read_images(paths: tuple[Path, ...], name: str) -> Iterator[np.ndarray]:
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise InputError(f"sequence {name}: cannot read frame {path}; check the file")
        yield image


def _read_video(path: Path, count: int, name: str) -> Iterator[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise InputError(f"sequence {name}: cannot open video {path}; check the file and the codec")
    try:
        for index in range(count):
            ok, image = capture.read()
            if not ok:
                raise InputError(
                    f"sequence {name}: video {path} ended at frame {index}, ground truth has {count}"
                )
            yield image
    finally:
        capture.release()
