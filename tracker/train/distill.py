"""Distillation targets from NanoTrack v3 (Apache-2.0, trained on millions of frames): its belief, on the very
crops the student sees, of where the target is, as a soft target for the student's score map.

The student's template and search crops are cut with the same context ratio as NanoTrack's (search twice the
template's side), so they are valid teacher inputs once resized to its 127 / 255 pixels and turned back into BGR
pixel values. The teacher's 15x15 target probabilities sit on points 16 of its pixels apart about the crop centre;
they are read off at the centres of the student's score-map cells by bilinear interpolation.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from tracker.models.nanotrack import NanoTrackV3Backbone, NanoTrackV3Head, fill_backbone, fill_head

EXEMPLAR_SIZE, INSTANCE_SIZE = 127, 255  # NanoTrack v3's crops
MAP_SIDE, MAP_STRIDE = 15, 16  # its response map: points MAP_STRIDE instance pixels apart about the crop centre


class TeacherMaps(nn.Module):
    """``forward(template, search)``: the student's normalised RGB crops (B,3,T,T) and (B,3,S,S) -> the teacher's
    probability that the target is centred at each cell of the student's score map, (B,1,fs,fs)."""

    def __init__(self, path: str | Path, mean: tuple[float, ...], std: tuple[float, ...], map_side: int) -> None:
        super().__init__()
        tensors = load_file(str(path))
        self.backbone = fill_backbone(NanoTrackV3Backbone(), tensors, str(path)).eval()
        self.head = fill_head(NanoTrackV3Head(), tensors, str(path)).eval()
        self.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.register_buffer("grid", student_grid(map_side))

    def train(self, mode: bool = True) -> TeacherMaps:
        return super().train(False)  # the teacher's BatchNorm statistics are the released ones, always

    @torch.no_grad()
    def forward(self, template: torch.Tensor, search: torch.Tensor) -> torch.Tensor:
        z = self.backbone(self._bgr_pixels(template, EXEMPLAR_SIZE))
        x = self.backbone(self._bgr_pixels(search, INSTANCE_SIZE))
        logits, _ = self.head(z, x)
        target = logits.float().softmax(dim=1)[:, 1:2]
        grid = self.grid.expand(target.shape[0], -1, -1, -1)
        return F.grid_sample(target, grid, mode="bilinear", padding_mode="border", align_corners=True)

    def _bgr_pixels(self, crop: torch.Tensor, size: int) -> torch.Tensor:
        rgb = (crop.float() * self.std + self.mean).clamp(0.0, 1.0) * 255.0
        resized = F.interpolate(rgb, size=(size, size), mode="bilinear", align_corners=False)
        return resized.flip(1)  # RGB -> BGR


def student_grid(map_side: int) -> torch.Tensor:
    """(1, fs, fs, 2) sampling positions, in ``grid_sample``'s [-1, 1] over the teacher's map (align_corners), of
    the student's cell centres. A student cell j of fs spans the crop's (j + 0.5) / fs; the teacher's points span
    the instance crop's centre +- (MAP_SIDE - 1) / 2 * MAP_STRIDE pixels."""
    offsets = (torch.arange(map_side, dtype=torch.float32) + 0.5) / map_side - 0.5  # of the crop side, about its centre
    half_span = (MAP_SIDE - 1) / 2 * MAP_STRIDE / INSTANCE_SIZE
    u = offsets / half_span
    ys, xs = torch.meshgrid(u, u, indexing="ij")
    return torch.stack([xs, ys], dim=-1).unsqueeze(0)


def distill_loss(score_map: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the student's score map (probabilities, as OSTrack's head clamps them) against the
    teacher's, summed over a crop's cells and averaged over crops: per crop, as the focal loss counts, so
    ``TRAIN.DISTILL_WEIGHT`` 1 weighs the two alike."""
    cells = F.binary_cross_entropy(score_map.float().clamp(1e-4, 1 - 1e-4), teacher.float(), reduction="none")
    return cells.flatten(1).sum(1).mean()
