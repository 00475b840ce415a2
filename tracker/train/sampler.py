"""Training pairs: which frames make a template/search pair, and the two crops cut from them.

Frames are chosen as OSTrack's ``causal`` mode chooses them: a visible template frame, then a visible search
frame after it, at most ``DATA.MAX_SAMPLE_INTERVAL`` frames later (the window widens by 5 until one is found).
Still photos give template and search from one photo (as OSTrack uses COCO), optionally warped into a pseudo
next frame. Crops are cut exactly as the tracker cuts them at test time (``tracker.preprocess.crop_around`` and
the ``Normalizer``), around a box jittered as OSTrack jitters it:
``size = wh * exp(randn * scale_jitter)``, ``centre += sqrt(prod(size)) * center_jitter * (rand - 0.5)``.

Every sample is a pure function of ``(seed, epoch, index)``: it draws from its own ``numpy`` generator, so the
data does not depend on the number of workers, their order, or where a resumed run starts.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from tracker.config import Config
from tracker.errors import ConfigError, InputError
from tracker.preprocess import Normalizer, box_in_crop, crop_around, dim_template_context
from tracker.train import augment, synth
from tracker.train.datasets import StillImage, TrackSequence, TrainingSource
from tracker.types import Box

GAP_INCREASE = 5  # OSTrack widens the search window by this many frames when no visible frame is found
MIN_SEQUENCE_FRAMES = 20  # OSTrack's minimum length of a usable training video
MIN_VISIBLE_FRAMES = 5  # ... and its minimum number of visible frames (more than 2 * (1 + 1))
MAX_TRIES = 100  # attempts at a valid pair before giving up on a sample


@dataclass(frozen=True, eq=False)
class Pair:
    """One training sample. ``template`` (3, T, T) and ``search`` (3, S, S) are normalised float32 crops;
    ``search_box`` (4,) is the target as (x, y, w, h) normalised to the search crop (0..1)."""

    template: torch.Tensor
    search: torch.Tensor
    search_box: torch.Tensor


@dataclass(frozen=True, eq=False)
class PairBatch:
    """A batch of pairs: template (B, 3, T, T), search (B, 3, S, S), search_box (B, 4)."""

    template: torch.Tensor
    search: torch.Tensor
    search_box: torch.Tensor

    def to(self, device: torch.device) -> PairBatch:
        move = {"device": device, "non_blocking": True}
        return PairBatch(self.template.to(**move), self.search.to(**move), self.search_box.to(**move))

    def pin_memory(self) -> PairBatch:
        return PairBatch(self.template.pin_memory(), self.search.pin_memory(), self.search_box.pin_memory())

    def __len__(self) -> int:
        return self.template.shape[0]


def collate_pairs(pairs: Sequence[Pair]) -> PairBatch:
    return PairBatch(
        torch.stack([p.template for p in pairs]),
        torch.stack([p.search for p in pairs]),
        torch.stack([p.search_box for p in pairs]),
    )


# ----------------------------------------------------------------------------------------------------------
# Frame choice


def sample_visible_id(visible: np.ndarray, low: int, high: int, rng: np.random.Generator) -> int | None:
    """A uniformly chosen visible frame index in ``[low, high)`` (clamped to the sequence), or None."""
    low, high = max(low, 0), min(high, len(visible))
    candidates = np.flatnonzero(visible[low:high]) + low if high > low else np.empty(0, dtype=np.int64)
    return int(rng.choice(candidates)) if len(candidates) else None


def causal_frame_ids(visible: np.ndarray, max_gap: int, rng: np.random.Generator) -> tuple[int, int]:
    """(template, search) frame indices: search after template, at most ``max_gap`` (+ widening) frames later."""
    gap_increase = 0
    for _ in range(MAX_TRIES * 10):
        template = sample_visible_id(visible, 0, len(visible) - 1, rng)
        if template is None:
            break
        search = sample_visible_id(visible, template + 1, template + max_gap + gap_increase, rng)
        if search is not None:
            return template, search
        gap_increase += GAP_INCREASE
    raise InputError("a training sequence has no two visible frames in order; check its annotation")


def usable_sequence(sequence: TrackSequence) -> bool:
    return len(sequence) >= MIN_SEQUENCE_FRAMES and int(sequence.visible.sum()) >= MIN_VISIBLE_FRAMES


# ----------------------------------------------------------------------------------------------------------
# Crop geometry


def jitter_box(box: np.ndarray, center_jitter: float, scale_jitter: float, rng: np.random.Generator) -> np.ndarray:
    """OSTrack's jitter: size times ``exp(randn * scale_jitter)``; centre moved by up to half of
    ``sqrt(prod(jittered size)) * center_jitter`` in each axis."""
    size = box[2:4] * np.exp(rng.standard_normal(2) * scale_jitter)
    max_offset = math.sqrt(float(size[0] * size[1])) * center_jitter
    centre = box[0:2] + 0.5 * box[2:4] + max_offset * (rng.random(2) - 0.5)
    return np.concatenate([centre - 0.5 * size, size])


def undersize_box(box: np.ndarray, min_factor: float, rng: np.random.Generator) -> np.ndarray:
    """The box shrunk about its centre, its side times a factor drawn log-uniformly from [min_factor, 1]."""
    factor = math.exp(rng.uniform(math.log(min_factor), 0.0))
    centre, size = box[0:2] + 0.5 * box[2:4], box[2:4] * factor
    return np.concatenate([centre - 0.5 * size, size])


def crop_is_possible(box: np.ndarray, factor: float) -> bool:
    return bool(np.isfinite(box).all()) and math.ceil(math.sqrt(max(box[2] * box[3], 0.0)) * factor) >= 1


@dataclass(frozen=True, eq=False)
class _Frames:
    """A chosen pair before cropping: images (RGB uint8) and target boxes in frame pixels."""

    template: np.ndarray
    template_box: np.ndarray
    search: np.ndarray
    search_box: np.ndarray
    lookalikes: tuple[np.ndarray, ...] = ()  # other objects of the target's kind in the same photo (pixels)
    detail_side: float | None = None  # a shrunk pair's target side (pixels): pasted copies are made as coarse


def lookalike_patches(image: np.ndarray, still: StillImage, target_index: int) -> tuple[np.ndarray, ...]:
    """The other labelled objects of ``still`` with the target's label (all others when unlabelled), as pixels.

    Another car from the same traffic photo is the negative a tracker meets among look-alikes: same kind, same
    light, same camera; a pasted object from another photo is told apart by its colour cast alone.
    """
    labels = still.labels
    same_kind = [
        k
        for k in range(len(still.boxes))
        if k != target_index and (not labels or labels[k] == labels[target_index])
    ]
    patches = (synth.cut_patch(image, still.boxes[k]) for k in same_kind)
    return tuple(p for p in patches if p is not None)


def at_most_side(patch: np.ndarray, side: float | None) -> np.ndarray | None:
    """``patch`` shrunk so sqrt(w * h) is at most ``side`` pixels (None: as it is); None when under 2x2 remain.

    A copy pasted beside a shrunk target must be as coarse as the target, or its sharpness gives it away.
    """
    height, width = patch.shape[:2]
    if side is None or side * side >= width * height:
        return patch
    scale = side / math.sqrt(width * height)
    new_w, new_h = round(width * scale), round(height * scale)
    if new_w < 2 or new_h < 2:
        return None
    return cv2.resize(patch, (new_w, new_h), interpolation=cv2.INTER_AREA)


# ----------------------------------------------------------------------------------------------------------
# The dataset


class PairDataset(Dataset):
    """Map-style dataset of ``Pair`` keyed by ``(epoch, index)``; the sample depends only on the key and seed.

    Datasets are drawn with probability proportional to ``ratios``; within one, a video uniformly (videos too
    short or with too few visible frames are skipped), or a labelled box of a photo uniformly.
    """

    def __init__(self, sources: Sequence[TrainingSource], ratios: Sequence[float], cfg: Config, seed: int) -> None:
        if cfg.data.sampler_mode != "causal":
            raise ConfigError(f"DATA.SAMPLER_MODE '{cfg.data.sampler_mode}' is not supported; use 'causal'")
        if len(ratios) != len(sources) or not sources:
            raise ConfigError("DATA.TRAIN.DATASETS_RATIO needs one ratio per dataset in DATASETS_NAME")
        self.cfg = cfg
        self.seed = seed
        self.sources = list(sources)
        self.videos = [tuple(s for s in src.sequences if usable_sequence(s)) for src in self.sources]
        for src, videos in zip(self.sources, self.videos, strict=True):
            if src.is_video and not videos:
                raise InputError(
                    f"dataset {src.name} has no sequence with at least {MIN_SEQUENCE_FRAMES} frames and "
                    f"{MIN_VISIBLE_FRAMES} visible targets; add longer sequences"
                )
        weights = np.asarray(ratios, dtype=np.float64)
        if (weights < 0).any() or weights.sum() <= 0:
            raise ConfigError("DATA.TRAIN.DATASETS_RATIO must be non-negative and not all zero")
        self.weights = weights / weights.sum()
        self.normalize = Normalizer(cfg.data.mean, cfg.data.std, torch.device("cpu"))

    def __len__(self) -> int:
        return self.cfg.data.train.sample_per_epoch

    def __getitem__(self, key: tuple[int, int]) -> Pair:
        epoch, index = key
        rng = np.random.default_rng([self.seed, epoch, index])
        for _ in range(MAX_TRIES):
            pair = self._try_pair(rng)
            if pair is not None:
                return pair
        raise InputError(f"no valid training pair after {MAX_TRIES} tries; check the boxes of the training data")

    # -- choosing frames ---------------------------------------------------------------------------------

    def _try_pair(self, rng: np.random.Generator) -> Pair | None:
        if rng.random() < self.cfg.data.augment.random_target_prob:
            return self._make_pair(self._random_target_frames(rng), rng)
        which = int(rng.choice(len(self.sources), p=self.weights))
        if self.sources[which].is_video:
            frames = self._video_frames(self.videos[which], rng)
        else:
            frames = self._still_frames(self.sources[which], rng)
        return self._make_pair(frames, rng)

    def _video_frames(self, videos: tuple[TrackSequence, ...], rng: np.random.Generator) -> _Frames:
        sequence = videos[int(rng.integers(len(videos)))]
        t_id, s_id = causal_frame_ids(sequence.visible, self.cfg.data.max_sample_interval, rng)
        return _Frames(
            sequence.frames.read(t_id), sequence.boxes[t_id], sequence.frames.read(s_id), sequence.boxes[s_id]
        )

    def _still_frames(self, source: TrainingSource, rng: np.random.Generator) -> _Frames:
        image_index, box_index = source.targets[int(rng.integers(len(source.targets)))]
        still: StillImage = source.stills[image_index]
        image, box = still.read(), still.boxes[box_index]
        search, search_box = image, box
        if rng.random() < self.cfg.data.augment.warp_prob:
            search, search_box = synth.warp_still(image, box, rng)
        return _Frames(image, box, search, search_box, lookalike_patches(image, still, box_index))

    def _random_target_frames(self, rng: np.random.Generator) -> _Frames:
        image, _ = self._other_target(rng)
        box = synth.random_box(image, rng)
        search, search_box = synth.warp_still(image, box, rng)
        return _Frames(image, box, search, search_box)

    def _other_target(self, rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
        """A frame from anywhere in the training data and its labelled boxes: distractor and occluder stock."""
        which = int(rng.choice(len(self.sources), p=self.weights))
        source = self.sources[which]
        if source.is_video:
            sequence = self.videos[which][int(rng.integers(len(self.videos[which])))]
            frame_id = sample_visible_id(sequence.visible, 0, len(sequence), rng)
            return sequence.frames.read(frame_id), [sequence.boxes[frame_id]]
        still = source.stills[int(rng.integers(len(source.stills)))]
        return still.read(), list(still.boxes)

    # -- cropping and augmenting ------------------------------------------------------------------------

    def _make_pair(self, frames: _Frames, rng: np.random.Generator) -> Pair | None:
        data, aug = self.cfg.data, self.cfg.data.augment
        t_img, t_box, s_img, s_box = frames.template, frames.template_box, frames.search, frames.search_box
        if rng.random() < aug.gray_prob:
            t_img, s_img = augment.to_gray(t_img), augment.to_gray(s_img)
        if rng.random() < aug.joint_flip_prob:
            t_box, s_box = augment.flip_box(t_box, t_img.shape[1]), augment.flip_box(s_box, s_img.shape[1])
            t_img, s_img = augment.flip_image(t_img), augment.flip_image(s_img)
        frames = self._far_or_dark(_Frames(t_img, t_box, s_img, s_box, frames.lookalikes), rng)
        t_img, t_box, s_img, s_box = frames.template, frames.template_box, frames.search, frames.search_box
        t_crop = self._crop(t_img, t_box, data.template, rng)
        s_crop = self._crop(s_img, s_box, data.search, rng)
        if t_crop is None or s_crop is None:
            return None
        (t_image, _), (s_image, s_in_crop) = t_crop, s_crop
        s_image = self._synthesise(s_image, s_in_crop, frames, rng)
        t_float, t_in_crop = augment.augment_crop(t_image, t_crop[1], aug, rng, allow_motion_blur=False)
        s_float, s_in_crop = augment.augment_crop(s_image, s_in_crop, aug, rng, allow_motion_blur=True)
        search_box = torch.from_numpy(s_in_crop / data.search.size).float()
        template = dim_template_context(self.normalize(t_float), t_in_crop, self.cfg.model.template_context_gain)
        return Pair(template[0], self.normalize(s_float)[0], search_box)

    def _far_or_dark(self, frames: _Frames, rng: np.random.Generator) -> _Frames:
        """The pair seen from further away (target a few pixels across) and/or at night, as the config asks.

        Both frames change alike: one camera, one scene. A draw is made only when its probability is set, so
        recipes without these keep their data.
        """
        aug = self.cfg.data.augment
        if aug.small_target_prob > 0 and rng.random() < aug.small_target_prob:
            scale = augment.small_target_scale(frames.template_box, rng)
            if scale is not None:
                (t_img, t_box), (s_img, s_box) = (
                    augment.shrink(frames.template, frames.template_box, scale),
                    augment.shrink(frames.search, frames.search_box, scale),
                )
                side = math.sqrt(float(s_box[2] * s_box[3]))
                frames = _Frames(t_img, t_box, s_img, s_box, frames.lookalikes, side)
        if aug.low_light_prob > 0 and rng.random() < aug.low_light_prob:
            gamma = augment.low_light_gamma(rng)
            template, search = augment.darken(frames.template, gamma, rng), augment.darken(frames.search, gamma, rng)
            frames = dataclasses.replace(frames, template=template, search=search)
        return frames

    def _crop(self, image, box, crop_cfg, rng) -> tuple[np.ndarray, np.ndarray] | None:
        """Crop around the jittered (and, when the config asks, undersized) box; None if impossible, all padding,
        or the target centre falls outside."""
        jittered = jitter_box(box, crop_cfg.center_jitter, crop_cfg.scale_jitter, rng)
        # The undersize draw is made only when it is set, so recipes without it keep their data.
        if crop_cfg.undersize_prob > 0 and rng.random() < crop_cfg.undersize_prob:
            jittered = undersize_box(jittered, crop_cfg.undersize_min, rng)
        if not crop_is_possible(jittered, crop_cfg.factor) or not crop_is_possible(box, 1.0):
            return None
        around = Box.from_xywh(jittered)
        crop = crop_around(image, around, crop_cfg.factor, crop_cfg.size)
        if crop.pad_mask.all():
            return None
        in_crop = box_in_crop(box, around, crop_cfg.factor, crop_cfg.size)
        centre = in_crop[:2] + 0.5 * in_crop[2:]
        if not ((centre >= 0) & (centre < crop_cfg.size)).all():
            return None
        return crop.image, in_crop

    def _synthesise(
        self, crop: np.ndarray, target: np.ndarray, frames: _Frames, rng: np.random.Generator
    ) -> np.ndarray:
        aug, lookalikes = self.cfg.data.augment, frames.lookalikes
        want_distractors = rng.random() < aug.distractor_prob
        want_occluder = rng.random() < aug.occluder_prob
        if not (want_distractors or want_occluder):
            return crop
        other, boxes = self._other_target(rng)
        if want_distractors:
            count = int(rng.integers(1, max(1, aug.max_distractors) + 1))
            # Drawn only when there is something to draw from, so recipes without look-alikes keep their data.
            if lookalikes and aug.lookalike_prob > 0 and rng.random() < aug.lookalike_prob:
                patches = [lookalikes[int(rng.integers(len(lookalikes)))] for _ in range(count)]
            else:
                picks = [boxes[int(rng.integers(len(boxes)))] for _ in range(count)]
                patches = [p for p in (synth.cut_patch(other, b) for b in picks) if p is not None]
            coarse = (at_most_side(p, frames.detail_side) for p in patches)
            crop = synth.paste_distractors(crop, target, [p for p in coarse if p is not None], rng)
        if want_occluder:
            crop = synth.add_occluder(crop, target, synth.random_region(other, rng), rng)
        return crop
