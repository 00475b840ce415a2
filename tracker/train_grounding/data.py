"""Grounding training clips: T consecutive input squares, a caption, and per-frame target boxes.

Three sources, mixed by ``GROUNDING.TRAIN`` ratios:

- real sequences (``train/sequences``: ``video.mp4`` + ``groundtruth.txt`` + ``language.txt``; readers for
  LaSOT ``nlp.txt``, TNL2K ``language.txt`` and OTB99-lang query files give the same type);
- pseudo-sequences from labelled photographs (``train/images/*/boxes.jsonl``): a slow pan and zoom over one
  photo, captioned from its labels with colour and position words measured from the pixels;
- synthetic scenes (``tracker.train_grounding.synth``).

A negative sample keeps the pictures and swaps the caption for something absent (presence 0, no boxes). Views
are letterboxed to the model's input square exactly as the grounder letterboxes frames at run time, then
zoomed/panned; a flip mirrors 'left' and 'right' in the caption. Every sample is a pure function of
``(seed, index)``.

Never point these readers at ``shared/data/sequences``: that folder is for evaluation only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from tracker.config import Config
from tracker.errors import InputError
from tracker.eval.datasets import read_lasot, read_otb, read_tnl2k
from tracker.eval.sequence import read_text_line
from tracker.grounding import mean_fill
from tracker.train.augment import adjust_brightness
from tracker.train.datasets import (
    DEFAULT_CACHE_DIR,
    ImageFolderFrames,
    StillImage,
    TrackSequence,
    read_ours_images,
    read_ours_sequences,
)
from tracker.train_grounding.captions import (
    absent_caption,
    contrast_caption,
    foreign_caption,
    kinds_of,
    label_caption,
    mirror_caption,
)
from tracker.train_grounding.synth import synthetic_clip

MIN_VISIBLE = 0.4  # a box counts as present when at least this share of it is inside the view
MIN_SIDE = 3.0  # ... and it is at least this many input pixels wide and high
MAX_GAP = 3  # frames skipped between clip frames of a real sequence, at most
ZOOM_CHANCE = 0.5  # a real sequence clip zooms towards its target (drone targets are often tiny)
FLIP_CHANCE = 0.5


@dataclass(frozen=True, eq=False)
class LanguageSequence(TrackSequence):
    """A training video (``TrackSequence``) with a caption."""

    caption: str


@dataclass(frozen=True, eq=False)
class Clip:
    """``frames`` (T, S, S, 3) uint8 RGB input squares; ``boxes`` per frame (n, 4) x, y, w, h in input pixels of
    the targets the caption names (empty where none is visible)."""

    frames: np.ndarray
    boxes: tuple[np.ndarray, ...]
    caption: str
    source: str

    @property
    def present(self) -> np.ndarray:
        return np.array([len(b) > 0 for b in self.boxes])


# ----------------------------------------------------------------------------------------------------
# Readers


def read_language_sequences(root: str | Path, cache_dir: Path = DEFAULT_CACHE_DIR) -> list[LanguageSequence]:
    """Our layout (``<name>/video.mp4``, ``groundtruth.txt``, ``language.txt``); sequences without a caption are
    skipped."""
    root = Path(root)
    if root.resolve().name == "sequences" and root.resolve().parent.name == "data":
        raise InputError(f"{root} is the evaluation set; train on shared/data/train/sequences instead")
    source = read_ours_sequences(root, cache_dir)
    out = []
    for seq in source.sequences:
        caption = read_text_line(root / seq.name / "language.txt")
        if caption:
            out.append(LanguageSequence(seq.name, seq.boxes, seq.visible, seq.frames, caption))
    return out


def _from_eval_sequences(sequences) -> list[LanguageSequence]:
    out = []
    for seq in sequences:
        if not seq.language or seq.frame_paths is None:
            continue
        visible = seq.visible
        out.append(
            LanguageSequence(seq.name, seq.groundtruth, visible, ImageFolderFrames(seq.frame_paths), seq.language)
        )
    return out


def read_lasot_language(root: str | Path) -> list[LanguageSequence]:
    """LaSOT: ``<class>/<class-n>/img/*.jpg``, ``groundtruth.txt``, ``nlp.txt`` (occlusion flags respected)."""
    return _from_eval_sequences(read_lasot(Path(root)))


def read_tnl2k_language(root: str | Path) -> list[LanguageSequence]:
    """TNL2K: ``<seq>/imgs/*``, ``groundtruth.txt``, ``language.txt``."""
    return _from_eval_sequences(read_tnl2k(Path(root)))


def read_otb_lang(root: str | Path) -> list[LanguageSequence]:
    """OTB99-lang: ``OTB_videos/<seq>/img`` + ``groundtruth_rect.txt`` and the queries in
    ``OTB_query_train/<seq>.txt`` or ``OTB_query_test/<seq>.txt`` (first line)."""
    root = Path(root)
    videos = root / "OTB_videos" if (root / "OTB_videos").is_dir() else root
    out = []
    for seq in read_otb(videos):
        base = seq.name.split("-")[0]
        for folder in ("OTB_query_train", "OTB_query_test"):
            caption = read_text_line(root / folder / f"{base}.txt")
            if caption:
                out.append(
                    LanguageSequence(
                        seq.name, seq.groundtruth, seq.visible, ImageFolderFrames(seq.frame_paths), caption
                    )
                )
                break
    return out


# ----------------------------------------------------------------------------------------------------
# Views: frame pixels -> input square, with zoom and pan


def view_matrix(width: int, height: int, size: int, zoom: float, centre: tuple[float, float]) -> np.ndarray:
    """2x3 affine from frame pixels to the input square: the letterbox scale times ``zoom``, ``centre`` (frame
    pixels) landing on the square's centre. ``zoom=1`` and the frame centre give the plain letterbox."""
    scale = size / max(width, height) * zoom
    return np.array([[scale, 0.0, size / 2 - scale * centre[0]], [0.0, scale, size / 2 - scale * centre[1]]])


def render_view(image: np.ndarray, matrix: np.ndarray, size: int, fill: tuple[int, int, int]) -> np.ndarray:
    interp = cv2.INTER_AREA if matrix[0, 0] < 1 else cv2.INTER_LINEAR
    return cv2.warpAffine(image, matrix, (size, size), flags=interp, borderMode=cv2.BORDER_CONSTANT, borderValue=fill)


def boxes_in_view(boxes: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Frame-pixel boxes (n, 4) -> input-pixel boxes clipped to the square; boxes mostly outside are dropped."""
    if not len(boxes):
        return np.zeros((0, 4))
    scale = matrix[0, 0]
    x1 = boxes[:, 0] * scale + matrix[0, 2]
    y1 = boxes[:, 1] * scale + matrix[1, 2]
    x2, y2 = x1 + boxes[:, 2] * scale, y1 + boxes[:, 3] * scale
    cx1, cy1, cx2, cy2 = (np.clip(v, 0, size) for v in (x1, y1, x2, y2))
    area = (x2 - x1) * (y2 - y1)
    inside = (cx2 - cx1) * (cy2 - cy1)
    keep = (inside >= MIN_VISIBLE * np.maximum(area, 1e-6)) & (cx2 - cx1 >= MIN_SIDE) & (cy2 - cy1 >= MIN_SIDE)
    return np.stack([cx1, cy1, cx2 - cx1, cy2 - cy1], axis=1)[keep]


def _pan_path(width: int, height: int, focus: np.ndarray | None, length: int, rng: np.random.Generator, zoom_in: bool):
    """Per-frame (zoom, centre) for a clip: the whole frame, or zoomed towards ``focus`` (x, y, w, h), drifting."""
    if zoom_in and focus is not None:
        fit = 0.35 * max(width, height) / max(focus[2], focus[3], 1.0)
        zoom = float(np.clip(fit * rng.uniform(0.5, 1.5), 1.0, 4.0))
    else:
        zoom = float(rng.uniform(0.85, 1.25))
    span = max(width, height) / zoom
    if focus is not None and zoom > 1.05:
        centre = focus[:2] + 0.5 * focus[2:] + rng.uniform(-0.3, 0.3, size=2) * span
    else:
        centre = np.array([width / 2, height / 2]) + rng.uniform(-0.1, 0.1, size=2) * span
    drift = rng.uniform(-0.03, 0.03, size=2) * span
    zoom_rate = float(rng.uniform(-0.03, 0.03))
    return [(zoom * (1 + zoom_rate * t), tuple(centre + drift * t)) for t in range(length)]


# ----------------------------------------------------------------------------------------------------
# The dataset


class GroundingDataset(Dataset):
    """``dataset[i]`` -> ``Clip``; ``len`` is the number of samples per epoch (steps x batch size)."""

    def __init__(
        self,
        cfg: Config,
        sequences: Sequence[LanguageSequence],
        stills: Sequence[StillImage],
        length: int,
        seed: int,
    ) -> None:
        self.cfg = cfg
        self.train = cfg.grounding.train
        self.size = cfg.grounding.input_size
        self.clip_length = self.train.clip_length
        self.fill = mean_fill(cfg.data.mean)
        self.sequences = [s for s in sequences if s.visible.sum() >= self.clip_length]
        self.stills = list(stills)
        self.captions = sorted({s.caption for s in sequences if s.caption})
        self.length = length
        self.seed = seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Clip:
        rng = np.random.default_rng([self.seed, index])
        negative = rng.random() < self.train.negative_ratio
        pick = rng.random()
        if pick < self.train.synthetic_ratio or not (self.sequences or self.stills):
            clip = self._synthetic(rng, negative)
        elif (pick < self.train.synthetic_ratio + self.train.sequence_ratio and self.sequences) or not self.stills:
            clip = self._sequence(rng, negative)
        else:
            clip = self._still(rng, negative)
        return self._photometric(clip, rng)

    def _synthetic(self, rng: np.random.Generator, negative: bool) -> Clip:
        photo = None
        if self.stills and rng.random() < 0.5:
            photo = self.stills[int(rng.integers(len(self.stills)))].read()
        frames, boxes, caption = synthetic_clip(self.size, self.clip_length, rng, negative, photo)
        return Clip(frames, tuple(boxes), caption, "synthetic")

    def _sequence(self, rng: np.random.Generator, negative: bool) -> Clip:
        seq = self.sequences[int(rng.integers(len(self.sequences)))]
        gap = int(rng.integers(1, MAX_GAP + 1))
        span = gap * (self.clip_length - 1)
        starts = np.flatnonzero(seq.visible[: max(len(seq) - span, 1)])
        start = int(starts[int(rng.integers(len(starts)))]) if len(starts) else 0
        ids = [min(start + gap * t, len(seq) - 1) for t in range(self.clip_length)]
        first = seq.frames.read(ids[0])
        height, width = first.shape[:2]
        path = _pan_path(width, height, seq.boxes[start], self.clip_length, rng, rng.random() < ZOOM_CHANCE)
        frames, boxes = [], []
        for t, frame_id in enumerate(ids):
            image = first if t == 0 else seq.frames.read(frame_id)
            matrix = view_matrix(width, height, self.size, *path[t])
            frames.append(render_view(image, matrix, self.size, self.fill))
            target = seq.boxes[frame_id : frame_id + 1] if seq.visible[frame_id] else np.zeros((0, 4))
            boxes.append(boxes_in_view(target, matrix, self.size))
        caption = seq.caption
        if negative:
            caption = self._absent(kinds_of(seq.caption), rng)
            if caption is None:
                negative, caption = False, seq.caption
            else:
                boxes = [np.zeros((0, 4)) for _ in boxes]
        return self._maybe_flip(Clip(np.stack(frames), tuple(boxes), caption, "sequence"), rng)

    def _still(self, rng: np.random.Generator, negative: bool) -> Clip:
        still = self.stills[int(rng.integers(len(self.stills)))]
        image = still.read()
        height, width = image.shape[:2]
        label = still.labels[int(rng.integers(len(still.labels)))] if still.labels else ""
        caption, named = label_caption(image, still.boxes, still.labels, label, rng)
        chosen = still.boxes[named]
        focus = chosen[int(rng.integers(len(chosen)))]
        path = _pan_path(width, height, focus, self.clip_length, rng, rng.random() < 0.3)
        frames, boxes = [], []
        for t in range(self.clip_length):
            matrix = view_matrix(width, height, self.size, *path[t])
            frames.append(render_view(image, matrix, self.size, self.fill))
            boxes.append(boxes_in_view(chosen, matrix, self.size))
        if len(named) == 1 and any(len(b) == 0 for b in boxes) and ("left" in caption or "right" in caption):
            # A positional word about the whole photo is not about a cropped view of it.
            caption = caption.replace(" on the left", "").replace(" on the right", "")
        if negative:
            absent = contrast_caption(image, still.boxes, still.labels, label, rng) if (
                rng.random() < self.train.contrast_ratio) else None
            if absent is None:
                absent = self._absent(set().union(*(kinds_of(lab) for lab in still.labels)), rng)
            if absent is not None:
                caption, boxes = absent, [np.zeros((0, 4)) for _ in boxes]
        return self._maybe_flip(Clip(np.stack(frames), tuple(boxes), caption, "still"), rng)

    def _absent(self, scene_kinds: set[str], rng: np.random.Generator) -> str | None:
        """A caption of something that cannot be in the scene: another clip's description, or a short one."""
        if rng.random() < self.train.foreign_ratio:
            caption = foreign_caption(scene_kinds, self.captions, rng)
            if caption is not None:
                return caption
        return absent_caption(scene_kinds, rng)

    def _maybe_flip(self, clip: Clip, rng: np.random.Generator) -> Clip:
        if rng.random() >= FLIP_CHANCE:
            return clip
        frames = np.ascontiguousarray(clip.frames[:, :, ::-1])
        boxes = tuple(np.stack([self.size - b[:, 0] - b[:, 2], b[:, 1], b[:, 2], b[:, 3]], 1) for b in clip.boxes)
        return Clip(frames, boxes, mirror_caption(clip.caption), clip.source)

    def _photometric(self, clip: Clip, rng: np.random.Generator) -> Clip:
        """Brightness per clip (no hue change: colour words must stay true)."""
        factor = float(rng.uniform(0.75, 1.25))
        frames = np.stack([adjust_brightness(f, factor).astype(np.uint8) for f in clip.frames])
        return Clip(frames, clip.boxes, clip.caption, clip.source)


@dataclass(frozen=True, eq=False)
class ClipBatch:
    """``frames`` (B, T, 3, S, S) uint8; ``boxes[b][t]`` (n, 4) float32 normalised x, y, w, h; ``present`` (B, T)."""

    frames: torch.Tensor
    boxes: list[list[torch.Tensor]]
    present: torch.Tensor
    captions: list[str]


def collate_clips(clips: Sequence[Clip]) -> ClipBatch:
    size = clips[0].frames.shape[1]
    frames = torch.from_numpy(np.stack([c.frames for c in clips])).permute(0, 1, 4, 2, 3).contiguous()
    boxes = [[torch.as_tensor(b / size, dtype=torch.float32).reshape(-1, 4) for b in c.boxes] for c in clips]
    present = torch.tensor(np.stack([c.present for c in clips]))
    return ClipBatch(frames, boxes, present, [c.caption for c in clips])


def load_training_data(
    sequences_root: str | Path | None, images_root: str | Path | None, cache_dir: Path = DEFAULT_CACHE_DIR
) -> tuple[list[LanguageSequence], list[StillImage]]:
    """Our training sequences and labelled photos (either may be None to leave it out)."""
    sequences = read_language_sequences(sequences_root, cache_dir) if sequences_root else []
    stills = list(read_ours_images(Path(images_root)).stills) if images_root else []
    return sequences, stills
