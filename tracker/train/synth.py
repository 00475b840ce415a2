"""Synthetic variation for a small training set: pseudo next frames from still photos, pasted distractors and
occluders.

A tracker learns from pairs where the search frame differs from the template frame. Still photos give only one
frame, so ``warp_still`` makes a plausible next frame (the camera turned, zoomed and moved a little). Few
training videos show look-alike objects or occlusion, so ``paste_distractors`` puts copies of other targets into
the search crop (the ground truth stays on the real target) and ``add_occluder`` covers part of the target with
a patch of another picture (the ground truth keeps the full, amodal box, as tracking datasets annotate it).

Images are (H, W, 3) uint8 RGB; boxes are float arrays (x, y, w, h) in the pixels of the image they belong to.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

WARP_MAX_ROTATION_DEG = 8.0  # camera roll between the two pseudo frames
WARP_SCALE_SIGMA = 0.08  # log-scale change of the target (zoom)
WARP_MAX_SHIFT = 0.15  # target motion, as a fraction of the box size
DISTRACTOR_SCALE_SIGMA = 0.25  # log-size of a pasted copy relative to the target
DISTRACTOR_MAX_IOU = 0.1  # a pasted copy may overlap the target at most this much
OCCLUDER_SIDE = (0.3, 0.7)  # occluder side as a fraction of the target side
SOLID_OCCLUDER_PROB = 0.3  # share of occluders that are one flat colour instead of a picture patch
FEATHER_PIXELS = 2.0  # soft edge of a pasted copy, so its border is not a giveaway
PLACEMENT_TRIES = 10
RANDOM_TARGET_SIDE = (0.06, 0.4)  # random targets: side range as a fraction of the shorter image side
RANDOM_TARGET_ASPECT = 2.5  # ... and the widest aspect ratio either way
RANDOM_TARGET_MIN_STD = 25.0  # ... and the least spread of pixel values (0..255) that counts as texture


def warp_still(image: np.ndarray, box: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A pseudo next frame: the photo rotated and scaled about the target centre and shifted a little.

    The returned box keeps its axes: its centre follows the warp and its size follows the scale (the rotation
    is small, so the tight box of the rotated target is close to this one).
    """
    height, width = image.shape[:2]
    x, y, w, h = box
    centre = (x + 0.5 * w, y + 0.5 * h)
    angle = rng.uniform(-WARP_MAX_ROTATION_DEG, WARP_MAX_ROTATION_DEG)
    scale = math.exp(rng.normal(0.0, WARP_SCALE_SIGMA))
    shift = rng.uniform(-WARP_MAX_SHIFT, WARP_MAX_SHIFT, size=2) * np.array([w, h])
    matrix = cv2.getRotationMatrix2D(centre, angle, scale)
    matrix[:, 2] += shift
    warped = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    new_w, new_h = w * scale, h * scale
    new_cx, new_cy = centre[0] + shift[0], centre[1] + shift[1]
    return warped, np.array([new_cx - 0.5 * new_w, new_cy - 0.5 * new_h, new_w, new_h])


def cut_patch(image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """The pixels of ``box`` (clipped to the image), or None when fewer than 2x2 pixels remain."""
    height, width = image.shape[:2]
    x1, y1 = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
    x2 = min(width, math.ceil(box[0] + box[2]))
    y2 = min(height, math.ceil(box[1] + box[3]))
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    return image[y1:y2, x1:x2]


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def blend_patch(canvas: np.ndarray, patch: np.ndarray, x: int, y: int, feather: float) -> None:
    """Alpha-blend ``patch`` into ``canvas`` (in place) with its top-left corner at (x, y); clipped at borders."""
    height, width = canvas.shape[:2]
    ph, pw = patch.shape[:2]
    x1, y1, x2, y2 = max(0, x), max(0, y), min(width, x + pw), min(height, y + ph)
    if x2 <= x1 or y2 <= y1:
        return
    alpha = np.ones((ph, pw), dtype=np.float32)
    if feather > 0 and min(ph, pw) > 4:
        alpha = np.pad(alpha[1:-1, 1:-1], 1)  # zero rim, blurred into a soft edge
        alpha = cv2.GaussianBlur(alpha, (0, 0), sigmaX=feather)
    alpha = alpha[y1 - y : y2 - y, x1 - x : x2 - x, None]
    region = canvas[y1:y2, x1:x2].astype(np.float32)
    mixed = alpha * patch[y1 - y : y2 - y, x1 - x : x2 - x].astype(np.float32) + (1 - alpha) * region
    canvas[y1:y2, x1:x2] = np.clip(mixed + 0.5, 0, 255).astype(canvas.dtype)


def paste_distractors(
    crop: np.ndarray, target: np.ndarray, patches: list[np.ndarray], rng: np.random.Generator
) -> np.ndarray:
    """Paste each patch, resized to about the target's size, where it barely overlaps the target.

    ``crop`` (S, S, 3) uint8 and ``target`` (x, y, w, h) in crop pixels; returns a new crop.
    """
    out = crop.copy()
    side = crop.shape[0]
    target_side = math.sqrt(max(target[2] * target[3], 1.0))
    for patch in patches:
        ph, pw = patch.shape[:2]
        size = target_side * math.exp(rng.normal(0.0, DISTRACTOR_SCALE_SIGMA)) / math.sqrt(ph * pw)
        new_w = int(np.clip(round(pw * size), 2, side // 2))
        new_h = int(np.clip(round(ph * size), 2, side // 2))
        resized = cv2.resize(patch, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        for _ in range(PLACEMENT_TRIES):
            x = int(rng.integers(0, side - new_w + 1))
            y = int(rng.integers(0, side - new_h + 1))
            if box_iou(np.array([x, y, new_w, new_h], dtype=np.float64), target) <= DISTRACTOR_MAX_IOU:
                blend_patch(out, resized, x, y, FEATHER_PIXELS)
                break
    return out


def add_occluder(
    crop: np.ndarray, target: np.ndarray, texture: np.ndarray | None, rng: np.random.Generator
) -> np.ndarray:
    """Cover part of the target with a rectangle of ``texture`` (or a flat colour); returns a new crop."""
    out = crop.copy()
    x, y, w, h = target
    occ_w = max(2, round(w * rng.uniform(*OCCLUDER_SIDE)))
    occ_h = max(2, round(h * rng.uniform(*OCCLUDER_SIDE)))
    # The occluder's centre falls inside the target box, so it always hides part of it.
    cx = x + w * rng.uniform(0.0, 1.0)
    cy = y + h * rng.uniform(0.0, 1.0)
    if texture is None or rng.random() < SOLID_OCCLUDER_PROB:
        patch = np.empty((occ_h, occ_w, 3), dtype=crop.dtype)
        patch[:] = rng.integers(0, 256, size=3).astype(crop.dtype)
    else:
        patch = cv2.resize(texture, (occ_w, occ_h), interpolation=cv2.INTER_LINEAR)
    blend_patch(out, patch, round(cx - 0.5 * occ_w), round(cy - 0.5 * occ_h), feather=0.0)
    return out


def random_box(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random target (x, y, w, h) inside ``image`` with some texture (a patch of flat sky or water cannot be
    told from its surroundings): the first of PLACEMENT_TRIES draws whose grey level varies by at least
    RANDOM_TARGET_MIN_STD, else the last draw."""
    for _ in range(PLACEMENT_TRIES):
        box = _draw_box(image, rng)
        patch = cut_patch(image, box)
        if patch is not None and float(patch.std()) >= RANDOM_TARGET_MIN_STD:
            break
    return box


def _draw_box(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Side log-uniform in RANDOM_TARGET_SIDE of the shorter image side, aspect log-uniform in RANDOM_TARGET_ASPECT."""
    height, width = image.shape[:2]
    side = math.exp(rng.uniform(*np.log(RANDOM_TARGET_SIDE))) * min(height, width)
    aspect = math.exp(rng.uniform(-1.0, 1.0) * math.log(RANDOM_TARGET_ASPECT))
    w = min(width - 1.0, max(4.0, side * math.sqrt(aspect)))
    h = min(height - 1.0, max(4.0, side / math.sqrt(aspect)))
    return np.array([rng.uniform(0, width - w), rng.uniform(0, height - h), w, h])


def random_region(image: np.ndarray, rng: np.random.Generator, min_fraction: float = 0.1) -> np.ndarray:
    """A random rectangle of ``image`` at least ``min_fraction`` of each side: texture for an occluder."""
    height, width = image.shape[:2]
    rw = int(rng.integers(max(2, int(width * min_fraction)), width + 1))
    rh = int(rng.integers(max(2, int(height * min_fraction)), height + 1))
    x = int(rng.integers(0, width - rw + 1))
    y = int(rng.integers(0, height - rh + 1))
    return image[y : y + rh, x : x + rw]
