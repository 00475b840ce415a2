"""Where in a frame the target's colours are: the places a lost target's search looks first.

A lost target may come back anywhere in the frame, and a sweep of tiles at its size takes many frames on a large
picture. The target's hue-saturation histogram, divided by the frame's own (Swain and Ballard's ratio histogram, so
that colours everywhere in the frame count for little), is back-projected onto the frame and summed over boxes of
the target's size; the peaks of that map are the places most like the target in colour. The network and presence
still decide: a peak only chooses where a crop is cut.
"""

from __future__ import annotations

import cv2
import numpy as np

from tracker.presence import HUE_BINS, SATURATION_BINS
from tracker.types import Box

WORK_SIDE = 8.0  # pixels: the target's shorter side after the frame is shrunk for the map (never enlarged)
_RANGES = [0, 180, 0, 256]


def colour_peaks(
    image_bgr: np.ndarray,
    target_hist: np.ndarray,
    size: tuple[float, float],
    count: int,
    avoid: list[Box],
    min_contrast: float,
) -> list[tuple[float, float]]:
    """Up to ``count`` centres (x, y) of boxes of ``size`` (w, h) whose colours are most like
    ``target_hist`` (a ``presence.colour_histogram``), best first, at least a box apart from one another and from
    the centres of the boxes in ``avoid``. Only boxes that hold the target's colours ``min_contrast`` times as
    densely as the frame does on average count: where the frame is all the target's colours, none does."""
    scale = min(1.0, WORK_SIDE / max(1.0, min(size)))
    small = image_bgr if scale == 1.0 else cv2.resize(image_bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
    frame_hist = cv2.calcHist([hsv], [0, 1], None, [HUE_BINS, SATURATION_BINS], _RANGES)
    frame_hist /= max(float(frame_hist.sum()), 1.0)
    ratio = _ratio(target_hist, frame_hist)
    likelihood = cv2.calcBackProject([hsv], [0, 1], ratio, _RANGES, 255.0)
    box_w = max(1, round(size[0] * scale))
    box_h = max(1, round(size[1] * scale))
    density = cv2.blur(likelihood.astype(np.float32), (box_w, box_h), borderType=cv2.BORDER_CONSTANT)
    floor = max(min_contrast * float(density.mean()), np.finfo(np.float32).tiny)
    for box in avoid:
        _suppress(density, box.cx * scale, box.cy * scale, box_w, box_h)
    peaks = []
    for _ in range(count):
        _, value, _, (px, py) = cv2.minMaxLoc(density)
        if value < floor:
            break
        peaks.append(((px + 0.5) / scale, (py + 0.5) / scale))
        _suppress(density, px + 0.5, py + 0.5, box_w, box_h)
    return peaks


def _ratio(target_hist: np.ndarray, frame_hist: np.ndarray) -> np.ndarray:
    """How much likelier each colour bin is on the target than in the frame, capped at 1 (float32, the histogram's
    shape)."""
    ratio = target_hist.astype(np.float32) / np.maximum(frame_hist.astype(np.float32), 1e-6)
    return np.minimum(ratio, 1.0)


def _suppress(density: np.ndarray, cx: float, cy: float, box_w: int, box_h: int) -> None:
    """Zero the map within a box's size of (cx, cy), so that the next peak is another place."""
    height, width = density.shape
    x1, x2 = max(0, int(cx - box_w)), min(width, int(cx + box_w) + 1)
    y1, y2 = max(0, int(cy - box_h)), min(height, int(cy + box_h) + 1)
    density[y1:y2, x1:x2] = 0.0
