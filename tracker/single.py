"""SingleTracker: the official OSTrack tracking step around one model.

``init(frame, box)`` crops the template once; ``update(frame)`` crops the search region around the previous box,
runs the network, picks the Hann-windowed score peak, maps the box back to frame pixels and clips it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import numpy as np
import torch

from tracker.accel import NetOutput, Network, build_network
from tracker.config import Config
from tracker.errors import InputError, TrackerError
from tracker.models.candidate import template_focus_mask
from tracker.models.head import decode_boxes
from tracker.models.ostrack import OSTrack
from tracker.preprocess import (
    Normalizer,
    box_in_crop,
    crop_around,
    crop_around_torch,
    dim_template_context,
    hann2d,
    stack_rows,
    to_bgr_uint8,
)
from tracker.scale_filter import ScaleFilter, gray_frame
from tracker.types import Box, TrackResult


class DeviceMemoryError(TrackerError):
    """The device ran out of memory in a tracking step (the step is lost; the tracker keeps its last state)."""


@contextmanager
def memory_errors(device: torch.device) -> Iterator[None]:
    """Turn an out-of-memory failure into one line for the user instead of a CUDA traceback."""
    try:
        yield
    except torch.cuda.OutOfMemoryError:  # also raised for the CPU allocator (torch.OutOfMemoryError)
        if device.type == "cuda":
            torch.cuda.empty_cache()  # give back what the failed step held, so the user can retry
            raise DeviceMemoryError(
                "the GPU ran out of memory while tracking; close other programs using it, or use --device cpu"
            ) from None
        raise DeviceMemoryError("the computer ran out of memory while tracking; close other programs") from None


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` is CUDA when available, else CPU; ``cuda`` without a GPU is a clear error."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device '{name}'; use cpu, cuda or auto") from None


class SingleTracker:
    """Follows one box through a stream of BGR frames. Not thread-safe: one caller drives it.

    ``backend`` and ``precision`` choose how the network runs (tracker.accel; ``eager``/``fp32`` is the reference).
    ``gpu_crop`` crops, resizes and normalises with torch on the model's device instead of OpenCV on the CPU (same
    bytes); by default it is on when the device is a GPU. ``fused_attention`` uses the fused SDPA kernel where CE
    needs no probabilities (near-exact, see tracker.accel). ``network`` shares an already built network (another
    tracker's ``.network``, same model): further targets then cost no second compile, export or graph capture.
    """

    def __init__(
        self,
        model: OSTrack,
        cfg: Config,
        device: str | torch.device = "auto",
        backend: str = "eager",
        precision: str = "auto",
        gpu_crop: bool | None = None,
        fused_attention: bool = False,
        network: Network | None = None,
    ) -> None:
        self.cfg = cfg
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        if network is None:
            network = build_network(self.model, cfg, self.device, backend, precision, fused_attention)
        self.network = network
        self.gpu_crop = self.device.type == "cuda" if gpu_crop is None else gpu_crop
        self.normalize = Normalizer(cfg.data.mean, cfg.data.std, self.device)
        self.window = hann2d(cfg.search_tokens_side).to(self.device)
        focus = None
        if cfg.backbone.ce_loc:
            focus = template_focus_mask(cfg.template_tokens_side, cfg.backbone.ce_template_range)
        self.focus = None if focus is None else focus.unsqueeze(0).to(self.device)
        self.template: torch.Tensor | None = None
        self.template_tokens: torch.Tensor | None = None  # the template's embedding, computed once per target
        self.flipped_template_tokens: torch.Tensor | None = None  # the mirrored template's (TRACK.FLIP_AVERAGE)
        self.state: Box | None = None
        self.frame_size: tuple[int, int] | None = None
        self.scale_filter: ScaleFilter | None = None
        self.last_output: NetOutput | None = None  # the latest network step, for checks and diagnostics

    @property
    def initialized(self) -> bool:
        return self.template is not None

    def init(self, frame_bgr: np.ndarray, box: Box) -> None:
        """Take the target in ``box`` (frame pixels) of this frame as the template."""
        image = to_bgr_uint8(frame_bgr)
        box = validate_init_box(box, image.shape[1], image.shape[0])
        with memory_errors(self.device):
            factor, size = self.cfg.test.template_factor, self.cfg.test.template_size
            template, _ = self._crop(image, box, factor, size)
            in_crop = box_in_crop(np.array(box.as_list()), box, factor, size)
            self.template = dim_template_context(template, in_crop, self.cfg.model.template_context_gain)
            self.template_tokens = self.network.embed_template(self.template)
            if self.cfg.track.flip_average:
                self.flipped_template_tokens = self.network.embed_template(self.template.flip(-1))
        self.state = box
        self.scale_filter = None
        if self.cfg.track.scale_filter.weight > 0:
            self.scale_filter = ScaleFilter(self.cfg.track.scale_filter, gray_frame(image), box)
        self.frame_size = (image.shape[1], image.shape[0])

    def move_to(self, image_bgr: np.ndarray, box: Box) -> None:
        """Follow the target from ``box`` on (found again elsewhere, or put back): the template stays."""
        self.state = box
        if self.scale_filter is not None:
            self.scale_filter = ScaleFilter(self.cfg.track.scale_filter, gray_frame(image_bgr), box)

    def update(self, frame_bgr: np.ndarray) -> TrackResult:
        """Track into this frame; the returned box becomes the state for the next one."""
        return update_together([self], frame_bgr)[0]

    def search_crop(self, image_bgr: np.ndarray, around: Box | None = None) -> tuple[torch.Tensor, float]:
        """The network's search input around ``around`` (default: the current state) and its resize factor."""
        if self.template is None or self.state is None:
            raise InputError("the tracker has no target yet; call init(frame, box) first")
        return self._crop(image_bgr, around or self.state, self.cfg.test.search_factor, self.cfg.test.search_size)

    def finish(self, image_bgr: np.ndarray, out: NetOutput, resize_factor: float, start: float) -> TrackResult:
        """The step's box from this target's row of the network output: windowed peak, size update, map back to
        frame pixels, clip; it becomes the state for the next frame."""
        self.last_output = out
        height, width = image_bgr.shape[:2]
        score = out.score_map
        weighted, size_rate = self.window * score, self.cfg.track.size_update
        if self.cfg.track.scale_penalty > 0:
            penalty = self._size_change_penalty(out.size_map, resize_factor)
            weighted = weighted * penalty
            size_rate *= float(penalty.flatten()[weighted.flatten().argmax()])
        box = decode_boxes(weighted, out.size_map, out.offset_map).view(-1, 4)
        # The official tracker scales in float32 before leaving torch; keep that to match it to the bit.
        in_crop = (box.mean(dim=0) * self.cfg.test.search_size / resize_factor).tolist()
        raw_score = float(score.max())
        if not all(math.isfinite(v) for v in in_crop) or not math.isfinite(raw_score):
            # A broken step (NaN/inf from the network) keeps the last box and reports no confidence.
            return TrackResult(self.state, 0.0, (time.perf_counter() - start) * 1e3)
        moved = self._map_back(in_crop, resize_factor, size_rate)
        if self.scale_filter is not None:
            moved = self._filtered_size(image_bgr, moved)
        self.state = clip_box(moved, width, height, self.cfg.track.clip_margin)
        self.frame_size = (width, height)
        return TrackResult(self.state, raw_score, (time.perf_counter() - start) * 1e3)

    def _filtered_size(self, image_bgr: np.ndarray, box: Box) -> Box:
        """The box's size moved, in log space, ``TRACK.SCALE_FILTER.WEIGHT`` of the way to the scale filter's
        estimate at the box's centre; the filter then learns the target at the result."""
        gray = gray_frame(image_bgr)
        weight = self.cfg.track.scale_filter.weight
        filter_w, filter_h = self.scale_filter.estimate(gray, box.cx, box.cy)
        w = math.exp((1 - weight) * math.log(box.w) + weight * math.log(filter_w))
        h = math.exp((1 - weight) * math.log(box.h) + weight * math.log(filter_h))
        resized = Box(box.cx - 0.5 * w, box.cy - 0.5 * h, w, h)
        self.scale_filter.update(gray, resized)
        return resized

    def _crop(self, image_bgr: np.ndarray, box: Box, factor: float, size: int) -> tuple[torch.Tensor, float]:
        """The normalised RGB network input (1, 3, size, size) around ``box`` and its resize factor.

        Colour is converted on the crop, not the frame: the resize works per channel, so the bytes are the same.
        """
        if self.gpu_crop:
            crop, resize_factor = crop_around_torch(image_bgr, box, factor, size, self.device)
            return self.normalize(crop.flip(-1)), resize_factor
        crop = crop_around(image_bgr, box, factor, size, with_mask=False)
        return self.normalize(cv2.cvtColor(crop.image, cv2.COLOR_BGR2RGB)), crop.resize_factor

    def _size_change_penalty(self, size_map: torch.Tensor, resize_factor: float) -> torch.Tensor:
        """``exp(-k * (r * s - 1))`` per candidate: ``s`` and ``r`` are how many times its side and aspect differ
        from the previous box's (each 1 or more), ``k`` is ``TRACK.SCALE_PENALTY``; shaped like the score map."""
        to_frame = self.cfg.test.search_size / resize_factor
        width, height = size_map[:, 0:1] * to_frame, size_map[:, 1:2] * to_frame
        side = torch.sqrt((width * height).clamp_min(1e-6) / (self.state.w * self.state.h))
        aspect = (width / height.clamp_min(1e-6)) / (self.state.w / self.state.h)
        change = torch.maximum(side, 1 / side) * torch.maximum(aspect, 1 / aspect.clamp_min(1e-6))
        return torch.exp(-self.cfg.track.scale_penalty * (change - 1))

    def _map_back(self, in_crop: list[float], resize_factor: float, size_rate: float) -> Box:
        """Crop-pixel (cx, cy, w, h) to a frame-pixel box, relative to the previous (unrounded) centre; the size
        moves ``size_rate`` of the way from the previous box's to the predicted one (1.0: official)."""
        return crop_to_frame(in_crop, self.state, resize_factor, self.cfg.test.search_size, size_rate)


def crop_to_frame(in_crop: list[float], around: Box, resize_factor: float, search_size: int, size_rate: float) -> Box:
    """A box found in the search crop centred on ``around`` (crop pixels scaled to frame pixels: cx, cy, w, h) as a
    frame-pixel box, placed relative to ``around``'s unrounded centre as the official tracker does; its size moves
    ``size_rate`` of the way from ``around``'s to the found one (1.0: official)."""
    cx, cy, w, h = in_crop
    if size_rate < 1.0:
        w = around.w + size_rate * (w - around.w)
        h = around.h + size_rate * (h - around.h)
    half = 0.5 * search_size / resize_factor
    cx_frame = cx + (around.cx - half)
    cy_frame = cy + (around.cy - half)
    return Box(cx_frame - 0.5 * w, cy_frame - 0.5 * h, w, h)


def padded_rows(rows: int) -> int:
    """The static batch that ``rows`` crops run in: the next power of two, so a few batch sizes serve any count
    of targets (each is exported or captured once)."""
    return 1 << max(0, rows - 1).bit_length()


@torch.no_grad()
def update_together(trackers: list[SingleTracker], frame_bgr: np.ndarray) -> list[TrackResult]:
    """Every tracker steps into this frame in one batched forward (they must share one ``network``); the same
    results as stepping each alone, up to float rounding. Each result's time is the whole batched step's."""
    if not trackers:
        return []
    for tracker in trackers:
        if tracker.template is None or tracker.state is None:
            raise InputError("the tracker has no target yet; call init(frame, box) first")
    lead = trackers[0]
    start = time.perf_counter()
    image = to_bgr_uint8(frame_bgr)
    with memory_errors(lead.device):
        crops = [t.search_crop(image) for t in trackers]
        search = stack_rows([crop for crop, _ in crops])
        network = lead.network.with_batch(padded_rows(len(trackers)))
        out = network(torch.cat([t.template_tokens for t in trackers]), search)
        if lead.cfg.track.flip_average:
            mirrored = network(torch.cat([t.flipped_template_tokens for t in trackers]), search.flip(-1))
            out = flip_averaged(out, mirrored)
    return [
        tracker.finish(image, out.rows(i, i + 1), crops[i][1], start) for i, tracker in enumerate(trackers)
    ]


def flip_averaged(out: NetOutput, mirrored: NetOutput) -> NetOutput:
    """The mean of a step and the step on the mirrored inputs, mirrored back. A mirrored cell's x offset ``o``
    is ``1 - o`` in the unmirrored one (offsets run from the cell's left edge)."""
    offset = mirrored.offset_map.flip(-1).clone()
    offset[:, 0] = 1 - offset[:, 0]
    return NetOutput(
        0.5 * (out.score_map + mirrored.score_map.flip(-1)),
        0.5 * (out.size_map + mirrored.size_map.flip(-1)),
        0.5 * (out.offset_map + offset),
        out.removed,
    )


def clip_box(box: Box, width: int, height: int, margin: int) -> Box:
    """The official clip: keep the box inside the frame with at least ``margin`` pixels of extent (OSTrack: 10)."""
    x2, y2 = box.x + box.w, box.y + box.h
    x1 = min(max(0, box.x), width - margin)
    x2 = min(max(margin, x2), width)
    y1 = min(max(0, box.y), height - margin)
    y2 = min(max(margin, y2), height)
    return Box(x1, y1, max(margin, x2 - x1), max(margin, y2 - y1))


def validate_init_box(box: Box, width: int, height: int) -> Box:
    """A usable initial box: finite, positive size, overlapping the frame (clear errors otherwise); a box larger
    than the frame is cut to the frame."""
    if not isinstance(box, Box):
        box = Box.from_xywh(box)
    if not box.is_finite():
        raise InputError(f"init box {box.as_list()} has a non-finite value; give x,y,w,h as numbers")
    if box.w <= 0 or box.h <= 0:
        raise InputError(f"init box {box.as_list()} has zero or negative size; give a width and height above 0")
    if box.x >= width or box.y >= height or box.x + box.w <= 0 or box.y + box.h <= 0:
        raise InputError(f"init box {box.as_list()} lies outside the {width}x{height} frame; draw it on the target")
    if box.w > width or box.h > height:
        # Only the part inside the frame has pixels, and crops are several times the box: a box far larger than the
        # frame would allocate gigabytes (or overflow). Follow the visible part.
        box = Box.from_xyxy(max(box.x, 0.0), max(box.y, 0.0), min(box.x + box.w, width), min(box.y + box.h, height))
    return box
