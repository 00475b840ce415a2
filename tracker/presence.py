"""Whether the target is in the picture: the tracker's score-map peak and the colours inside its box, combined into
one calibrated probability (``TRACK.PRESENCE``), so that one threshold works across scenes.

The peak alone is a poor judge: a small model trained on little footage scores a look-alike or plain background
at 0.4 to 0.6 where the target itself scores 0.5 to 0.8, depending on the scene. The box's hue-saturation
histogram against the one taken at init separates what the peak confuses. The weights are fitted by logistic
regression on leave-and-return clips made from the training sequences (``benchmarks/calibrate_presence.py``).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from tracker.config import PresenceConfig
from tracker.types import Box

HUE_BINS, SATURATION_BINS = 16, 8
MIN_SIDE = 4.0  # pixels: the smallest box side whose colours are compared


class ColourReference:
    """The target's colours, to compare a later box with (hue-saturation histograms, L1-normalised): those at init,
    and a running average of those on confident steps (``update``), since a target's colours drift with light,
    pose and motion blur. A box is as similar as the closer of the two."""

    def __init__(self, image_bgr: np.ndarray, box: Box, rate: float = 0.0) -> None:
        self.initial = colour_histogram(image_bgr, box)
        self.recent = self.initial
        self.rate = rate
        # The last box compared, with its frame and histogram: a step compares its box and then, if confident,
        # learns from the same box, and need not measure it twice.
        self._last: tuple[np.ndarray, Box, np.ndarray | None] | None = None

    def similarity(self, image_bgr: np.ndarray, box: Box) -> float:
        """1 for the same colour distribution, 0 for disjoint ones (1 - Bhattacharyya distance); 0 when either
        box has no pixels in the frame."""
        other = colour_histogram(image_bgr, box)
        self._last = (image_bgr, box, other)
        if self.initial is None or other is None:
            return 0.0
        return max(_similarity(self.initial, other), _similarity(self.recent, other))

    def update(self, image_bgr: np.ndarray, box: Box) -> None:
        """Move the running average ``rate`` of the way to the colours inside ``box`` (a confident step)."""
        last, self._last = self._last, None
        if last is not None and last[0] is image_bgr and last[1] == box:
            other = last[2]
        else:
            other = colour_histogram(image_bgr, box)
        if self.rate > 0 and other is not None and self.recent is not None:
            self.recent = (1 - self.rate) * self.recent + self.rate * other


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    return 1.0 - float(cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))


def colour_histogram(image_bgr: np.ndarray, box: Box) -> np.ndarray | None:
    """The hue-saturation histogram of the frame inside ``box``, grown about its centre to at least
    ``MIN_SIDE`` pixels a side (a one-pixel target still has colours); None if fewer than 2x2 of its pixels are in
    the frame."""
    if not box.is_finite():
        return None
    height, width = image_bgr.shape[:2]
    w, h = max(box.w, MIN_SIDE), max(box.h, MIN_SIDE)
    left, top = box.cx - 0.5 * w, box.cy - 0.5 * h
    x1, y1 = max(0, round(left)), max(0, round(top))
    x2, y2 = min(width, round(left + w)), min(height, round(top + h))
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    hsv = cv2.cvtColor(image_bgr[y1:y2, x1:x2], cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [HUE_BINS, SATURATION_BINS], [0, 180, 0, 256])
    return cv2.normalize(hist, hist, 1.0, 0.0, cv2.NORM_L1)


class TargetPresence:
    """How present one target is at a box: its score-map peak and its colours (``ColourReference``) through the
    calibration ``cfg``."""

    def __init__(self, image_bgr: np.ndarray, box: Box, cfg: PresenceConfig) -> None:
        self.cfg = cfg
        self.colour = ColourReference(image_bgr, box, cfg.colour_update)

    def at(self, image_bgr: np.ndarray, box: Box, peak: float) -> float:
        """The presence of the target at ``box``, found there with score-map ``peak``; learns nothing (a place
        looked at while searching)."""
        return presence(peak, self.colour.similarity(image_bgr, box), self.cfg)

    def step(self, image_bgr: np.ndarray, box: Box, peak: float, confident: float) -> float:
        """The presence of a tracking step's ``box``; a step at least ``confident`` moves the colours towards the
        box's."""
        value = self.at(image_bgr, box, peak)
        if value >= confident:
            self.colour.update(image_bgr, box)
        return value


def presence(score: float, colour: float, cfg: PresenceConfig) -> float:
    """The probability that the target is where the tracker put it, from its peak ``score`` and ``colour``
    similarity (logistic)."""
    logit = cfg.score_weight * score + cfg.colour_weight * colour + cfg.bias
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, logit))))
