"""Grounder: a text query in, per-frame matches out, causally (no look at later frames).

``set_query(text)`` encodes the query once (cached); ``step(frame_bgr)`` letterboxes the frame to the model's
square input, runs one network step with the memory of past frames, and returns a ``GroundingResult``: candidate
boxes in frame pixels (best first), the presence probability and the online start/end events.
"""

from __future__ import annotations

import math
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from tracker.config import Config, grounding_network_keys, load_config, with_overrides
from tracker.errors import CheckpointError, ConfigError, InputError
from tracker.models.grounding import GroundingNet, GroundingOutput, find_peaks
from tracker.models.text import TextEncoding, minilm_available
from tracker.preprocess import Normalizer, to_bgr_uint8
from tracker.resolve import mismatches, open_weights
from tracker.single import resolve_device
from tracker.types import Box, Candidate, GroundingResult
from tracker.weights import read_manifest, weights_folder

DEFAULT_CONFIG = "grounding_small"
FALLBACK_CONFIG = "grounding_hashed"
QUERY_CACHE_SIZE = 16  # encoded queries kept; users switch between a few
START, END = "start", "end"


@dataclass(frozen=True)
class Letterbox:
    """How a frame sits in the square input: input pixels = frame pixels * ``scale`` + (``pad_x``, ``pad_y``)."""

    scale: float
    pad_x: float
    pad_y: float
    width: int
    height: int

    def to_frame(self, cx: float, cy: float, w: float, h: float, size: int) -> Box:
        """A box (cx, cy, w, h) normalised to the input square -> frame pixels, clipped to the frame."""
        x1 = ((cx - 0.5 * w) * size - self.pad_x) / self.scale
        y1 = ((cy - 0.5 * h) * size - self.pad_y) / self.scale
        x2 = ((cx + 0.5 * w) * size - self.pad_x) / self.scale
        y2 = ((cy + 0.5 * h) * size - self.pad_y) / self.scale
        x1, x2 = min(max(x1, 0.0), self.width), min(max(x2, 0.0), self.width)
        y1, y2 = min(max(y1, 0.0), self.height), min(max(y2, 0.0), self.height)
        return Box.from_xyxy(x1, y1, x2, y2)


def letterbox(image: np.ndarray, size: int, fill: tuple[int, int, int]) -> tuple[np.ndarray, Letterbox]:
    """``image`` (H, W, 3) resized to fit a ``size`` square (aspect kept), centred, the rest filled with ``fill``."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    canvas = np.empty((size, size, 3), dtype=np.uint8)
    canvas[:] = fill
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = cv2.resize(
        image, (new_w, new_h), interpolation=interp
    )
    return canvas, Letterbox(scale, float(pad_x), float(pad_y), width, height)


def mean_fill(mean: tuple[float, ...]) -> tuple[int, int, int]:
    """The RGB colour that normalises to zero: padding then carries no signal."""
    return tuple(round(255 * m) for m in mean)  # type: ignore[return-value]


def clean_query(text: object) -> str:
    """A usable query: a non-empty string with whitespace collapsed; one-line InputError otherwise."""
    if not isinstance(text, str):
        raise InputError(f"a query must be text, got {type(text).__name__}; type what to look for")
    text = unicodedata.normalize("NFC", text)
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    text = " ".join(text.split())
    if not text:
        raise InputError("the query is empty; type what to look for, e.g. 'the white boat'")
    return text


class PresenceEvents:
    """Online hysteresis on the presence probability: ``start`` after ``frames`` steps at or above ``on``,
    ``end`` after ``frames`` steps below ``off`` once started. Uses only the current and past steps."""

    def __init__(self, on: float, off: float, frames: int) -> None:
        self.on, self.off, self.frames = on, off, frames
        self.present = False
        self._run = 0

    def reset(self) -> None:
        self.present = False
        self._run = 0

    def update(self, presence: float) -> tuple[str, ...]:
        crossing = presence < self.off if self.present else presence >= self.on
        self._run = self._run + 1 if crossing else 0
        if self._run < self.frames:
            return ()
        self._run = 0
        self.present = not self.present
        return (START,) if self.present else (END,)


@dataclass(frozen=True, eq=False)
class GroundingStep:
    """A step's result plus what the session needs to keep identities: one unit-length appearance vector per
    candidate (K, D), in the candidates' order."""

    result: GroundingResult
    embeddings: np.ndarray


class Grounder:
    """Finds the object a text query describes, frame by frame. Not thread-safe: one caller drives it."""

    def __init__(self, model: GroundingNet, cfg: Config, device: str | torch.device = "auto") -> None:
        self.cfg = cfg
        self.gcfg = cfg.grounding
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.normalize = Normalizer(cfg.data.mean, cfg.data.std, self.device)
        self.fill = mean_fill(cfg.data.mean)
        self.events = PresenceEvents(self.gcfg.presence_on, self.gcfg.presence_off, self.gcfg.event_frames)
        self.query: str | None = None
        self.query_truncated = False
        self._text: TextEncoding | None = None
        self._cache: dict[str, tuple[TextEncoding, bool]] = {}
        self.memory = self.model.empty_memory(1, self.device)

    @property
    def memory_length(self) -> int:
        return int(self.memory.tokens.shape[1])

    @torch.no_grad()
    def set_query(self, text: str) -> str:
        """Look for ``text`` from the next frame on; returns the query as used (whitespace collapsed). Queries
        longer than the encoder's ``max_tokens`` are cut (``query_truncated`` tells); memory and events restart."""
        query = clean_query(text)
        if query not in self._cache:
            if len(self._cache) >= QUERY_CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            truncated = self.model.text.token_count(query) > self.gcfg.max_tokens
            self._cache[query] = (self.model.encode_text([query]).to(self.device), truncated)
        self._text, self.query_truncated = self._cache[query]
        self.query = query
        self.reset()
        return query

    def reset(self) -> None:
        """Forget past frames (memory and events); the query stays."""
        self.memory = self.model.empty_memory(1, self.device)
        self.events.reset()

    def step(self, frame_bgr: np.ndarray) -> GroundingResult:
        return self.ground(frame_bgr).result

    @torch.no_grad()
    def ground(self, frame_bgr: np.ndarray) -> GroundingStep:
        """One causal step: this frame, the query and the memory of earlier frames."""
        if self._text is None:
            raise InputError("no query set; type what to look for (set_query) before grounding")
        start = time.perf_counter()
        image = to_bgr_uint8(frame_bgr)
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        square, placement = letterbox(rgb, self.gcfg.input_size, self.fill)
        out = self.model(self.normalize(square), self._text, self.memory)
        if not bool(torch.isfinite(out.state).all()):
            # A broken step (NaN/inf) must not poison the memory of every later frame.
            result = GroundingResult((), 0.0, (), (time.perf_counter() - start) * 1e3)
            return GroundingStep(result, np.zeros((0, out.state.shape[-1]), np.float32))
        self.memory = self.memory.push(out.state)
        presence = float(torch.sigmoid(out.presence_logit[0]))
        candidates, embeddings = self._candidates(out, placement)
        events = self.events.update(presence if math.isfinite(presence) else 0.0)
        result = GroundingResult(candidates, presence, events, (time.perf_counter() - start) * 1e3)
        return GroundingStep(result, embeddings)

    def _candidates(
        self, out: GroundingOutput, placement: Letterbox
    ) -> tuple[tuple[Candidate, ...], np.ndarray]:
        g = self.gcfg
        peaks = find_peaks(out, 0, g.top_k, g.peak_kernel, g.candidate_score)
        candidates, rows = [], []
        for peak in peaks:
            box = placement.to_frame(peak.cx, peak.cy, peak.w, peak.h, g.input_size)
            if box.w < 1 or box.h < 1 or not math.isfinite(peak.score):
                continue  # a peak in the letterbox padding has no frame box
            candidates.append(Candidate(box, peak.score))
            rows.append(peak.index)
        feats = out.patch_feat[0, rows] if rows else out.patch_feat.new_zeros(0, out.patch_feat.shape[-1])
        feats = torch.nn.functional.normalize(feats.float(), dim=-1)
        return tuple(candidates), feats.cpu().numpy()


# ----------------------------------------------------------------------------------------------------------------
# Building


def default_grounding_weights() -> Path | None:
    """The bundled grounding model: the manifest's ``kind: grounding`` entry marked default, else the first."""
    folder = weights_folder()
    ours = [e for e in read_manifest(folder).values() if e.kind == "grounding" and (folder / e.name).is_file()]
    ours.sort(key=lambda entry: not entry.default)
    return folder / ours[0].name if ours else None


def default_grounding_config() -> str:
    """The config for a fresh (untrained) grounder: the packaged MiniLM encoder if installed, else the fallback."""
    return DEFAULT_CONFIG if minilm_available() else FALLBACK_CONFIG


def load_grounding_model(
    config: str | Path | Config | None = None, weights: str | Path | None = None
) -> tuple[GroundingNet, Config]:
    """A grounding network in eval mode and its config. With ``weights`` the config embedded in the file is used
    (unless ``config`` is given) and the tensors are loaded strictly; without, weights are random."""
    if weights is None:
        cfg = load_config(config if config is not None else default_grounding_config())
        return GroundingNet(cfg).eval(), cfg
    ckpt = open_weights(weights)
    if config is not None:
        cfg = load_config(config)
    elif ckpt.config is not None:
        cfg = ckpt.config
    else:
        raise CheckpointError(f"{weights} carries no config; pass the grounding config it was trained with")
    model = GroundingNet(cfg)
    load_strict(model, ckpt.state_dict, str(weights))
    return model.eval(), cfg


def load_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load every tensor or raise one CheckpointError naming the first mismatches."""
    problems = mismatches(model.state_dict(), state)
    if problems:
        raise CheckpointError(
            f"{source} does not fit this grounding config ({len(problems)} mismatches: {'; '.join(problems[:5])}); "
            "pass the config it was trained with"
        )
    model.load_state_dict(state, strict=True)


def build_grounder(
    config: str | Path | Config | None = None,
    weights: str | Path | None = None,
    device: str = "auto",
    settings: Mapping[str, str] | None = None,
) -> Grounder:
    """A ``Grounder``: with neither argument the bundled grounding model (random weights if none is bundled
    and a config is given); ``weights`` a safetensors file written by the grounding trainer. ``settings``
    change run-time keys of its config (``{"GROUNDING.REJECTED_MEMORY": "0"}``)."""
    if weights is None and config is None:
        weights = default_grounding_weights()
        if weights is None:
            raise CheckpointError(
                "no bundled grounding model is installed; pass grounding weights, or a grounding config for an "
                "untrained one"
            )
    model, cfg = load_grounding_model(config, weights)
    changed = with_overrides(cfg, settings, source="grounding settings")
    old, new = cfg.grounding, changed.grounding
    shaping = [key for key in grounding_network_keys() if getattr(new, key) != getattr(old, key)]
    if shaping:
        keys = ", ".join(f"GROUNDING.{key.upper()}" for key in shaping)
        raise ConfigError(f"{keys} shapes the grounding network, which its weights fix; change run-time keys only")
    return Grounder(model, changed, device)


# ----------------------------------------------------------------------------------------------------------------
# Association


def linear_assignment(cost: np.ndarray, limit: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Minimum-cost one-to-one matching of rows to columns, leaving pairs costlier than ``limit`` unmatched.

    Returns ``(matches, unmatched_rows, unmatched_cols)``. Example: ``linear_assignment(np.array([[0.1, 0.9]]),
    0.5)`` -> ``([(0, 0)], [], [1])``.
    """
    import lap

    rows, cols = cost.shape
    if rows == 0 or cols == 0:
        return [], list(range(rows)), list(range(cols))
    _, row_to_col, col_to_row = lap.lapjv(
        np.asarray(cost, dtype=np.float64), extend_cost=True, cost_limit=limit
    )
    matches = [(r, int(c)) for r, c in enumerate(row_to_col) if c >= 0]
    return (
        matches,
        [r for r in range(rows) if row_to_col[r] < 0],
        [c for c in range(cols) if col_to_row[c] < 0],
    )


def association_cost(
    boxes_a: list[Box], feats_a: np.ndarray, boxes_b: list[Box], feats_b: np.ndarray, appearance_weight: float
) -> np.ndarray:
    """(A, B) cost: ``(1 - w) * (1 - IoU) + w * (1 - cosine)`` of unit-length appearance vectors (cosine
    clipped to 0..1); rows without an appearance vector use IoU alone."""
    iou = np.array([[a.iou(b) for b in boxes_b] for a in boxes_a], dtype=np.float64).reshape(len(boxes_a), -1)
    if len(feats_a) != len(boxes_a) or len(feats_b) != len(boxes_b) or appearance_weight <= 0:
        return 1.0 - iou
    cosine = np.clip(np.asarray(feats_a, np.float64) @ np.asarray(feats_b, np.float64).T, 0.0, 1.0)
    return (1 - appearance_weight) * (1.0 - iou) + appearance_weight * (1.0 - cosine)
