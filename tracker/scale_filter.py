"""A discriminative scale filter: the target's size at a known centre, learned online from the frames tracked so far.

This is the scale estimation of DSST (Danelljan et al., "Accurate Scale Estimation for Robust Visual Tracking",
BMVC 2014), the one CSRT uses: patches of the target at a ladder of sizes around the current one, each resized to one
small model size and described by cell histograms of gradient orientation; a one-dimensional correlation filter over
the ladder, trained to answer with a Gaussian peaked at the current size, finds the rung that looks most like the
target has looked. The filter keeps the first box's aspect and moves the size by whole rungs. Two departures from
the paper: every target is sampled at ``MODEL_AREA`` pixels (DSST only shrinks large ones; the aerial targets here
can be 11 x 8 pixels, too few for cells), and the histograms are normalised over the whole patch, not per cell.
The tracker uses it through ``TRACK.SCALE_FILTER``; off by default, since it did not help the bundled model
(docs/benchmarks.md, section 3).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from tracker.config import ScaleFilterConfig
from tracker.types import Box

CELL = 4  # pixels per side of a histogram cell
ORIENTATIONS = 9  # unsigned gradient orientation bins per cell
MIN_SIDE = 5.0  # the smallest target side, in frame pixels, the ladder may reach


def gray_frame(frame_bgr: np.ndarray) -> np.ndarray:
    """The frame as float32 grey levels in 0..1, what the filter samples."""
    return cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255.0


def cell_features(patches: np.ndarray) -> np.ndarray:
    """(n, h, w) grey patches to (n, d) features: per ``CELL`` x ``CELL`` cell, a histogram of gradient orientation
    weighted by magnitude (scaled so a patch's cells have unit mean energy), and the cell's mean grey level minus
    the patch's."""
    n, h, w = patches.shape
    gx = np.zeros_like(patches)
    gy = np.zeros_like(patches)
    gx[:, :, 1:-1] = patches[:, :, 2:] - patches[:, :, :-2]
    gy[:, 1:-1, :] = patches[:, 2:, :] - patches[:, :-2, :]
    rows, cols = h // CELL, w // CELL
    gx, gy = gx[:, : rows * CELL, : cols * CELL], gy[:, : rows * CELL, : cols * CELL]
    orientation = np.mod(np.arctan2(gy, gx), np.pi)
    bins = np.minimum((orientation * (ORIENTATIONS / np.pi)).astype(np.intp), ORIENTATIONS - 1)
    cell_of = (np.arange(rows * CELL)[:, None] // CELL) * cols + np.arange(cols * CELL)[None, :] // CELL
    index = (np.arange(n)[:, None, None] * (rows * cols) + cell_of) * ORIENTATIONS + bins
    votes = np.bincount(index.ravel(), np.hypot(gx, gy).ravel(), minlength=n * rows * cols * ORIENTATIONS)
    cells = votes.reshape(n, rows, cols, ORIENTATIONS)
    cells /= np.sqrt((cells**2).sum(axis=(1, 2, 3), keepdims=True) / (rows * cols) + 1e-6)
    grey = patches[:, : rows * CELL, : cols * CELL].reshape(n, rows, CELL, cols, CELL).mean(axis=(2, 4))
    grey -= grey.mean(axis=(1, 2), keepdims=True)
    return np.concatenate([cells, grey[..., None]], axis=-1).reshape(n, -1)


class ScaleFilter:
    """Follows the target's size, relative to the first box's, through frames whose target centre is given.

    ``estimate(gray, cx, cy)`` returns the size (w, h) the filter sees at that centre; ``update(gray, box)`` learns
    the target at the box the tracker settled on (the filter keeps the first box's aspect: only the box's area
    counts). ``gray`` is a frame from ``gray_frame``.
    """

    def __init__(self, cfg: ScaleFilterConfig, gray: np.ndarray, box: Box) -> None:
        self.cfg = cfg
        w, h = box.w, box.h
        self.base = (w, h)
        self.scale = 1.0
        half = (cfg.scales - 1) / 2
        offsets = np.arange(cfg.scales) - half
        self.factors = cfg.step ** (-offsets)
        sigma = math.sqrt(cfg.scales) * cfg.sigma_factor
        self.label = np.fft.fft(np.exp(-0.5 * offsets**2 / sigma**2))
        self.window = np.hanning(cfg.scales + 2)[1:-1].astype(np.float32)
        shrink = math.sqrt(cfg.model_area / (w * h))
        self.model_size = (max(2 * CELL, round(w * shrink)), max(2 * CELL, round(h * shrink)))
        frame_h, frame_w = gray.shape
        self.min_scale = cfg.step ** math.ceil(math.log(MIN_SIDE / min(w, h)) / math.log(cfg.step))
        self.max_scale = cfg.step ** math.floor(math.log(min(frame_w / w, frame_h / h)) / math.log(cfg.step))
        self.numerator, self.denominator = self._filter_terms(self._sample(gray, box.cx, box.cy))

    def estimate(self, gray: np.ndarray, cx: float, cy: float) -> tuple[float, float]:
        """The target's (w, h) at this centre: the best rung of the ladder around the current size."""
        sample = np.fft.fft(self._sample(gray, cx, cy), axis=1)
        correlation = (np.conj(self.numerator) * sample).sum(axis=0) / (self.denominator + self.cfg.reg)
        response = np.real(np.fft.ifft(correlation))
        scale = float(np.clip(self.scale * self.factors[int(response.argmax())], self.min_scale, self.max_scale))
        return self.base[0] * scale, self.base[1] * scale

    def update(self, gray: np.ndarray, box: Box) -> None:
        """Learn the target at this box (its area sets the filter's current scale)."""
        scale = math.sqrt(box.w * box.h / (self.base[0] * self.base[1]))
        self.scale = float(np.clip(scale, self.min_scale, self.max_scale))
        numerator, denominator = self._filter_terms(self._sample(gray, box.cx, box.cy))
        rate = self.cfg.learning_rate
        self.numerator = (1 - rate) * self.numerator + rate * numerator
        self.denominator = (1 - rate) * self.denominator + rate * denominator

    def _filter_terms(self, sample: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The filter learned from this one sample: its numerator per feature and its shared denominator."""
        spectrum = np.fft.fft(sample, axis=1)
        return np.conj(self.label)[None, :] * spectrum, (np.conj(spectrum) * spectrum).real.sum(axis=0)

    def _sample(self, gray: np.ndarray, cx: float, cy: float) -> np.ndarray:
        """(d, scales) features of the target at every rung of the ladder, weighted by a Hann window over it."""
        patches = np.empty((self.cfg.scales, self.model_size[1], self.model_size[0]), np.float32)
        for i, factor in enumerate(self.factors):
            side = self.scale * factor
            size = (max(2, round(self.base[0] * side)), max(2, round(self.base[1] * side)))
            patch = cv2.getRectSubPix(gray, size, (cx, cy))
            patches[i] = cv2.resize(patch, self.model_size, interpolation=cv2.INTER_AREA)
        return (cell_features(patches) * self.window[:, None]).T
