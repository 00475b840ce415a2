"""Frames to network inputs: colour/depth normalisation of frames, square crops around a box, and tensor
normalisation, exactly as the official OSTrack tracker computes them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from tracker.errors import InputError
from tracker.types import Box


@dataclass(frozen=True, eq=False)
class Crop:
    """A square crop resized to ``output_size``.

    ``image``: (S, S, 3) uint8 in the frame's channel order; ``pad_mask``: (S, S) bool, True where the crop lies
    outside the frame; ``resize_factor``: output pixels per frame pixel; ``crop_size``: side in frame pixels.
    """

    image: np.ndarray
    pad_mask: np.ndarray
    resize_factor: float
    crop_size: int


def to_bgr_uint8(image: np.ndarray) -> np.ndarray:
    """Any common frame layout as (H, W, 3) uint8 BGR: grayscale, BGRA and 16-bit frames are converted."""
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        raise InputError("a frame must be a non-empty HxW or HxWxC image array; check the source")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = np.clip(image * 255.0 if image.max() <= 1.0 else image, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise InputError(f"frames of type {image.dtype} are not supported; give 8- or 16-bit images")
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.shape[2] == 3:
        return np.ascontiguousarray(image)
    raise InputError(f"frames with {image.shape[2]} channels are not supported; give gray, BGR or BGRA images")


def crop_around(image: np.ndarray, box: Box, factor: float, output_size: int) -> Crop:
    """A square of side ``ceil(sqrt(w*h) * factor)`` centred on ``box``, zero-padded, resized to ``output_size``.

    Follows the official ``sample_target`` to the pixel: Python (half-to-even) rounding of the corner and the
    off-by-one right/bottom padding, so crops are byte-identical to the official ones.
    """
    crop_size = math.ceil(math.sqrt(box.w * box.h) * factor)
    if crop_size < 1:
        raise InputError(f"box {box.as_list()} is too small to crop; give a box at least 1 pixel wide and high")
    height, width = image.shape[:2]
    x1 = round(box.x + 0.5 * box.w - crop_size * 0.5)
    y1 = round(box.y + 0.5 * box.h - crop_size * 0.5)
    x2, y2 = x1 + crop_size, y1 + crop_size
    left, top = max(0, -x1), max(0, -y1)
    right, bottom = max(x2 - width + 1, 0), max(y2 - height + 1, 0)
    canvas = np.zeros((crop_size, crop_size, image.shape[2]), dtype=image.dtype)
    mask = np.ones((crop_size, crop_size), dtype=np.float64)
    src = image[max(y1 + top, 0) : max(y2 - bottom, 0), max(x1 + left, 0) : max(x2 - right, 0)]
    if src.size:
        canvas[top : top + src.shape[0], left : left + src.shape[1]] = src
        mask[top : top + src.shape[0], left : left + src.shape[1]] = 0
    resized = cv2.resize(canvas, (output_size, output_size))
    pad_mask = cv2.resize(mask, (output_size, output_size)).astype(np.bool_)
    return Crop(resized, pad_mask, output_size / crop_size, crop_size)


class Normalizer:
    """uint8 RGB crops (H, W, 3) to float32 NCHW tensors: /255, minus mean, over std (config ``DATA.MEAN/STD``)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> None:
        self.device = device
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)

    def __call__(self, crop_rgb: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(crop_rgb).to(self.device).float().permute(2, 0, 1).unsqueeze(0)
        return (tensor / 255.0 - self.mean) / self.std


def hann2d(side: int) -> torch.Tensor:
    """The official centred Hann window (1, 1, side, side): 0.5 * (1 - cos(2*pi*k / (side + 1))), k = 1..side."""
    hann = 0.5 * (1 - torch.cos((2 * math.pi / (side + 1)) * torch.arange(1, side + 1).float()))
    return hann.reshape(1, 1, -1, 1) * hann.reshape(1, 1, 1, -1)
