"""Photometric and flip augmentation of training frames and crops, driven by ``DATA.AUGMENT``.

Images are (H, W, 3) RGB; boxes are float arrays (x, y, w, h) in the pixels of the image they belong to. Every
random choice is drawn from the ``numpy.random.Generator`` passed in, so a sample is a pure function of its seed.
The official recipe (``AugmentConfig`` defaults) is grayscale and flip on both frames, then per crop a brightness
factor and a flip; blur, motion blur and saturation/contrast jitter are ours and off unless the config asks.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from tracker.config import AugmentConfig

BLUR_SIGMA = (0.3, 1.5)  # Gaussian blur sigma range, in pixels of a 128-pixel crop (scaled with the crop)
MOTION_BLUR_LENGTH = (3.0, 0.06)  # motion-blur streak: from 3 pixels up to this fraction of the crop side
SMALL_TARGET_SIDE = (6.0, 24.0)  # shrunk target: range of sqrt(w * h) in pixels (drawn log-uniformly)
LOW_LIGHT_GAMMA = (1.5, 3.0)  # night: intensities (0..1) raised to this power, shadows sink, lamps stay
LOW_LIGHT_NOISE = (1.0, 6.0)  # ... and Gaussian sensor noise of this sigma (0..255) on the dark frame


def to_gray(image: np.ndarray) -> np.ndarray:
    """The image as gray in all three channels (same shape and dtype)."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)


def flip_image(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image[:, ::-1])


def flip_box(box: np.ndarray, width: float) -> np.ndarray:
    """Mirror an (x, y, w, h) box of an image ``width`` pixels wide about the vertical centre line."""
    x, y, w, h = box
    return np.array([width - x - w, y, w, h], dtype=np.float64)


def small_target_scale(box: np.ndarray, rng: np.random.Generator) -> float | None:
    """The factor that shrinks ``box`` to a drawn side in ``SMALL_TARGET_SIDE``; None when it is already smaller."""
    side = math.sqrt(max(float(box[2] * box[3]), 0.0))
    wanted = math.exp(rng.uniform(math.log(SMALL_TARGET_SIDE[0]), math.log(SMALL_TARGET_SIDE[1])))
    return wanted / side if wanted < side else None


def shrink(image: np.ndarray, box: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The whole frame scaled down by ``scale`` (area averaging, as a camera further away integrates light) and
    the box with it; each side keeps at least one pixel."""
    height, width = image.shape[:2]
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    small = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    return small, box * np.array([new_w / width, new_h / height, new_w / width, new_h / height])


def low_light_gamma(rng: np.random.Generator) -> float:
    return float(rng.uniform(*LOW_LIGHT_GAMMA))


def darken(image: np.ndarray, gamma: float, rng: np.random.Generator) -> np.ndarray:
    """A night version of an RGB uint8 frame: a gamma above 1 darkens mid-tones more than highlights (lights
    stay bright), then sensor noise."""
    dark = 255.0 * (image.astype(np.float32) / 255.0) ** np.float32(gamma)
    noise = rng.normal(0.0, rng.uniform(*LOW_LIGHT_NOISE), size=image.shape).astype(np.float32)
    return np.clip(dark + noise, 0.0, 255.0).astype(np.uint8)


def adjust_brightness(image: np.ndarray, factor: float) -> np.ndarray:
    """Scale intensities by ``factor`` and clip to 255, in float32 (as OSTrack's jitter does on [0, 1])."""
    return np.minimum(image.astype(np.float32) * np.float32(factor), 255.0)


def adjust_saturation_contrast(image: np.ndarray, saturation: float, contrast: float) -> np.ndarray:
    """Blend with the pixel's gray (saturation) and with the mean gray (contrast); float32, clipped to 0..255."""
    image = image.astype(np.float32)
    gray = image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    image = gray[..., None] + (image - gray[..., None]) * np.float32(saturation)
    mean = np.float32(gray.mean())
    return np.clip(mean + (image - mean) * np.float32(contrast), 0.0, 255.0)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma)


def motion_blur_kernel(length: float, angle_deg: float) -> np.ndarray:
    """A normalised line kernel of ``length`` pixels at ``angle_deg``: a straight streak as from camera motion."""
    side = max(3, math.ceil(length) | 1)
    kernel = np.zeros((side, side), dtype=np.float32)
    centre = side // 2
    dx = 0.5 * (length - 1) * math.cos(math.radians(angle_deg))
    dy = 0.5 * (length - 1) * math.sin(math.radians(angle_deg))
    start = (round(centre - dx), round(centre - dy))
    end = (round(centre + dx), round(centre + dy))
    cv2.line(kernel, start, end, 1.0, thickness=1)
    return kernel / kernel.sum()


def motion_blur(image: np.ndarray, length: float, angle_deg: float) -> np.ndarray:
    return cv2.filter2D(image, -1, motion_blur_kernel(length, angle_deg), borderType=cv2.BORDER_REFLECT)


def augment_crop(
    crop: np.ndarray, box: np.ndarray, aug: AugmentConfig, rng: np.random.Generator, allow_motion_blur: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per-crop augmentation: saturation/contrast, blur, motion blur, brightness, flip.

    ``crop`` is (S, S, 3) uint8 RGB and ``box`` the target in crop pixels; returns a float32 image in 0..255
    and the box moved with the flip.
    """
    side = crop.shape[1]
    image = crop
    if aug.color_jitter > 0:
        saturation = 1.0 + rng.uniform(-aug.color_jitter, aug.color_jitter)
        contrast = 1.0 + rng.uniform(-aug.color_jitter, aug.color_jitter)
        image = adjust_saturation_contrast(image, saturation, contrast)
    if rng.random() < aug.blur_prob:
        image = gaussian_blur(image, rng.uniform(*BLUR_SIGMA) * side / 128.0)
    if allow_motion_blur and rng.random() < aug.motion_blur_prob:
        longest = max(MOTION_BLUR_LENGTH[0], MOTION_BLUR_LENGTH[1] * side)
        image = motion_blur(image, rng.uniform(MOTION_BLUR_LENGTH[0], longest), rng.uniform(0.0, 180.0))
    low = max(0.0, 1.0 - aug.brightness_jitter)
    image = adjust_brightness(image, rng.uniform(low, 1.0 + aug.brightness_jitter))
    if rng.random() < aug.crop_flip_prob:
        image, box = flip_image(image), flip_box(box, side)
    return image, box
