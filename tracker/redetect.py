"""The search for a lost target: crops that tile the whole frame at the target's last size, scored against the
stored template in one batched forward per frame, and a candidate that must hold its presence for a few frames in
a row before the target counts as found again.

Each lost frame scores ``TRACK.REDETECT.BATCH`` crops: the tracker's own search crop (it keeps tracking, so a
target that was only hidden for a moment is found where it went), one around the candidate under watch if there is
one, and the rest shared between the places most like the target in colour that were not looked at in the last
few frames (``tracker.colour_search``) and the next tiles in turn, nearest to the last box the target was tracked
at first. The cost per frame is fixed (one forward of a static batch). Colour points a crop at a target that came
back far away within a frame or two; the tiles, swept over as many frames as there are tiles divided by the tiles
per frame, find one that came back near where it left, or whose colours the frame shares.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tracker.accel import NetOutput, Network
from tracker.colour_search import colour_peaks
from tracker.config import TrackConfig
from tracker.models.head import decode_boxes
from tracker.preprocess import stack_rows
from tracker.single import SingleTracker, clip_box, crop_to_frame, memory_errors
from tracker.types import Box, TrackResult


@dataclass(frozen=True)
class Sighting:
    """A place the target may be: a frame-pixel box and the target's presence there."""

    box: Box
    score: float


@dataclass(frozen=True)
class SearchStep:
    """One lost frame: ``guess``, the tracker's own step (``lost=True``, its presence as the score: where it would
    say the target is, not a measurement), and ``found``, where the target is found again, if it is."""

    guess: TrackResult
    found: Sighting | None


def tile_centres(width: int, height: int, crop_side: float, step_share: float, near: Box) -> list[tuple[float, float]]:
    """Centres of square crops of side ``crop_side`` that together cover a ``width`` x ``height`` frame, the
    neighbours ``step_share`` of a side apart, ordered by distance from ``near``'s centre."""
    xs = _axis_centres(width, crop_side, step_share)
    ys = _axis_centres(height, crop_side, step_share)
    centres = [(x, y) for y in ys for x in xs]
    return sorted(centres, key=lambda c: (c[0] - near.cx) ** 2 + (c[1] - near.cy) ** 2)


def _axis_centres(length: int, side: float, step_share: float) -> list[float]:
    if side >= length:
        return [0.5 * length]
    count = math.ceil((length - side) / (step_share * side)) + 1
    return list(np.linspace(0.5 * side, length - 0.5 * side, count))


class Redetector:
    """Looks for one lost target with its tracker's network and template; ``start`` when it is lost, ``step`` on
    every frame until ``step`` returns where it was found."""

    def __init__(
        self, tracker: SingleTracker, judge: Callable[[np.ndarray, Box, float], float], cfg: TrackConfig | None = None
    ) -> None:
        """``judge(image, box, peak)`` is the presence of the target at a box found with score-map ``peak``;
        ``cfg`` the thresholds (default: the tracker's config's)."""
        self.tracker = tracker
        self.judge = judge
        self.cfg = cfg or tracker.cfg.track
        self._last: Box | None = None
        self._colours: np.ndarray | None = None
        self._looked: list[tuple[int, Box]] = []  # (lost frame, crop) of the places chosen by colour
        self._lost_frames = 0
        self._tiles: list[tuple[float, float]] = []
        self._next_tile = 0
        self._candidate: Sighting | None = None
        self._held = 0  # frames in a row the candidate has held the score
        self._own_held = 0  # the same for the tracker's own step

    def prepare(self) -> None:
        """Build the network for this search's static batch (an export on ONNX), so that the first lost frame
        does not wait for it."""
        self._network()

    def _network(self) -> Network:
        return self.tracker.network.with_batch(self.cfg.redetect.batch)

    def start(self, last: Box, frame_size: tuple[int, int], colours: np.ndarray | None = None) -> None:
        """Search from now on for the target last tracked at ``last`` in frames of ``frame_size`` (w, h), and with
        the target's ``colours`` (a ``presence.colour_histogram``; None: by tiles alone)."""
        self._last = last
        self._colours = colours if self.cfg.redetect.colour_search else None
        self._looked, self._lost_frames = [], 0
        side = math.sqrt(last.w * last.h) * self.tracker.cfg.test.search_factor
        self._tiles = tile_centres(*frame_size, side, self.cfg.redetect.tile_step, last)
        self._next_tile = 0
        self._candidate, self._held, self._own_held = None, 0, 0

    def step(self, image_bgr: np.ndarray) -> SearchStep:
        """One lost frame: the tracker's own step (its state moves with it, as when tracking), the crop around the
        candidate under watch if there is one, and the rest at places chosen by colour and at the next tiles, all in
        one forward. The target is found when either the tracker's own step or the candidate holds
        ``TRACK.RECOVER_SCORE`` for ``TRACK.RECOVER_FRAMES`` frames in a row."""
        if self._last is None:
            raise RuntimeError("Redetector.step before start")
        start = time.perf_counter()
        self._lost_frames += 1
        watched = [self._candidate.box] if self._candidate is not None else []
        spare = self.cfg.redetect.batch - 1 - len(watched)
        places = self._colour_places(image_bgr, self._colour_share(spare), watched)
        places += [self._tile_box(c) for c in self._take_tiles(spare - len(places))]
        arounds = [self.tracker.state, *watched, *places]
        with memory_errors(self.tracker.device):
            crops = [self.tracker.search_crop(image_bgr, around) for around in arounds]
            out = self._network()(self.tracker.template_tokens, stack_rows([crop for crop, _ in crops]))
        own = self.tracker.finish(image_bgr, out.rows(0, 1), crops[0][1], start)
        own = Sighting(own.box, self.judge(image_bgr, own.box, own.score))
        self._own_held = self._own_held + 1 if own.score >= self.cfg.recover_score else 0
        sightings = [
            self._sighting(image_bgr, out.rows(i, i + 1), arounds[i], crops[i][1], windowed=i <= len(watched))
            for i in range(1, len(arounds))
        ]
        self._follow(sightings, bool(watched))
        found = None
        if self._own_held >= self.cfg.recover_frames:
            found = own
        elif self._candidate is not None and self._held >= self.cfg.recover_frames:
            found = self._candidate
        guess = TrackResult(own.box, own.score, (time.perf_counter() - start) * 1e3, lost=True)
        return SearchStep(guess, found)

    def _follow(self, sightings: list[Sighting], watching: bool) -> None:
        """Keep the candidate while the crop around it (the first sighting when ``watching``) holds the score;
        else take the best new sighting."""
        threshold = self.cfg.recover_score
        if watching and sightings[0].score >= threshold:
            self._candidate, self._held = sightings[0], self._held + 1
            return
        best = max(sightings, key=lambda s: s.score, default=None)
        if best is not None and best.score >= threshold:
            self._candidate, self._held = best, 1
        else:
            self._candidate, self._held = None, 0

    def _colour_share(self, spare: int) -> int:
        """How many of ``spare`` crops go to places chosen by colour: half, the odd one on every other lost frame.
        The other half sweeps the tiles nearest first: a target usually comes back near where it left, and colour
        points nowhere when the frame shares the target's colours."""
        if self._colours is None:
            return 0
        return (spare + self._lost_frames % 2) // 2

    def _colour_places(self, image_bgr: np.ndarray, count: int, watched: list[Box]) -> list[Box]:
        """Up to ``count`` boxes of the target's size at the places most like it in colour, away from the tracker's
        own crop, the candidate's, and the places chosen in the last ``TRACK.REDETECT.COLOUR_MEMORY`` lost frames."""
        if count <= 0:
            return []
        memory = self.cfg.redetect.colour_memory
        self._looked = [(frame, box) for frame, box in self._looked if self._lost_frames - frame < memory]
        avoid = [self.tracker.state, *watched, *(box for _, box in self._looked)]
        size = (self._last.w, self._last.h)
        peaks = colour_peaks(image_bgr, self._colours, size, count, avoid, self.cfg.redetect.colour_contrast)
        places = [self._tile_box(centre) for centre in peaks]
        self._looked += [(self._lost_frames, box) for box in places]
        return places

    def _take_tiles(self, count: int) -> list[tuple[float, float]]:
        taken = []
        for _ in range(min(count, len(self._tiles))):
            taken.append(self._tiles[self._next_tile])
            self._next_tile = (self._next_tile + 1) % len(self._tiles)
        return taken

    def _tile_box(self, centre: tuple[float, float]) -> Box:
        w, h = self._last.w, self._last.h
        return Box(centre[0] - 0.5 * w, centre[1] - 0.5 * h, w, h)

    def _sighting(
        self, image_bgr: np.ndarray, out: NetOutput, around: Box, resize_factor: float, windowed: bool
    ) -> Sighting:
        """The crop's peak as a frame box. The crop under watch is windowed as a tracking step is; a tile is not,
        since the target may be anywhere in it."""
        score = out.score_map
        weighted = self.tracker.window * score if windowed else score
        size = self.tracker.cfg.test.search_size
        height, width = image_bgr.shape[:2]
        box = decode_boxes(weighted, out.size_map, out.offset_map).view(-1, 4)
        in_crop = (box.mean(dim=0) * size / resize_factor).tolist()
        peak = float(score.max())
        if not (math.isfinite(peak) and all(math.isfinite(v) for v in in_crop)):
            return Sighting(around, 0.0)  # a broken step finds nothing
        found = clip_box(
            crop_to_frame(in_crop, around, resize_factor, size, self.cfg.size_update),
            width,
            height,
            self.cfg.clip_margin,
        )
        return Sighting(found, self.judge(image_bgr, found, peak))
