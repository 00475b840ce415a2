"""The OSTrack training objective: weighted focal loss on the score map against a Gaussian heat map, plus GIoU
and L1 on the box decoded at the score peak.

Boxes here are normalised to the search crop. The heat map target is drawn as CenterNet draws it (which OSTrack
uses): a Gaussian at the rounded centre cell, with a radius from the box size at which a box shifted by that
radius still overlaps the true one by ``MIN_OVERLAP``, and sigma = (2 * radius + 1) / 6.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tracker.config import Config

MIN_OVERLAP = 0.7  # CenterNet's heat-map radius criterion, as OSTrack sets it
FOCAL_ALPHA = 2.0  # CornerNet focal loss: down-weights easy pixels
FOCAL_BETA = 4.0  # ... and negatives near the centre, by (1 - target) ** beta
LOG_CLAMP = 1e-12


def xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    x, y, w, h = boxes.unbind(-1)
    return torch.stack([x, y, x + w, y + h], dim=-1)


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def gaussian_radius(width: torch.Tensor, height: torch.Tensor, min_overlap: float = MIN_OVERLAP) -> torch.Tensor:
    """CenterNet's radius for boxes of ``width`` x ``height`` (grid cells): the least of three corner-shift cases.

    Each case solves a quadratic ``a r^2 + b r + c = 0``; the root is taken as ``(b + sqrt(b^2 - 4ac)) / 2`` for
    all three, exactly as the CenterNet code OSTrack uses computes it (not divided by ``a``), so our heat maps
    match the official training targets.
    """
    size_sum, area = width + height, width * height
    b1, c1 = size_sum, area * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1**2 - 4 * c1)) / 2
    b2, c2 = 2 * size_sum, (1 - min_overlap) * area
    r2 = (b2 + torch.sqrt(b2**2 - 16 * c2)) / 2
    b3, c3 = -2 * min_overlap * size_sum, (min_overlap - 1) * area
    r3 = (b3 + torch.sqrt(b3**2 - 16 * min_overlap * c3)) / 2
    return torch.minimum(r1, torch.minimum(r2, r3))


def gaussian_heatmap(boxes: torch.Tensor, feat_size: int) -> torch.Tensor:
    """Heat map targets (B, 1, fs, fs) for boxes (B, 4) as normalised (x, y, w, h) in the search crop.

    Peak 1 at the rounded centre cell; values exp(-d^2 / (2 sigma^2)) within the integer radius (a square window),
    0 outside it.
    """
    cells = boxes.detach().float() * feat_size
    wh = cells[:, 2:]
    centre = (cells[:, :2] + 0.5 * wh).round().clamp(0, feat_size - 1)
    radius = gaussian_radius(wh[:, 0], wh[:, 1]).clamp(min=0).floor()
    sigma = (2 * radius + 1) / 6
    grid = torch.arange(feat_size, dtype=torch.float32, device=boxes.device)
    dx = grid.view(1, 1, -1) - centre[:, 0].view(-1, 1, 1)
    dy = grid.view(1, -1, 1) - centre[:, 1].view(-1, 1, 1)
    r = radius.view(-1, 1, 1)
    inside = (dx.abs() <= r) & (dy.abs() <= r)
    heat = torch.exp(-(dx**2 + dy**2) / (2 * sigma.view(-1, 1, 1) ** 2)) * inside
    return heat.unsqueeze(1)


def focal_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CornerNet/OSTrack focal loss, summed over the batch and divided by the number of peaks (target == 1)."""
    positive = target.eq(1).float()
    negative = target.lt(1).float()
    prediction = prediction.clamp(min=LOG_CLAMP)
    pos_loss = (torch.log(prediction) * (1 - prediction) ** FOCAL_ALPHA * positive).sum()
    neg_weights = (1 - target) ** FOCAL_BETA
    neg_loss = (
        torch.log((1 - prediction).clamp(min=LOG_CLAMP)) * prediction**FOCAL_ALPHA * neg_weights * negative
    ).sum()
    num_positive = positive.sum()
    if num_positive == 0:
        return -neg_loss
    return -(pos_loss + neg_loss) / num_positive


def giou_and_iou(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised IoU and IoU of matching (N, 4) xyxy boxes: two (N,) tensors."""
    area_p = (pred[:, 2] - pred[:, 0]).clamp(min=0) * (pred[:, 3] - pred[:, 1]).clamp(min=0)
    area_g = (gt[:, 2] - gt[:, 0]).clamp(min=0) * (gt[:, 3] - gt[:, 1]).clamp(min=0)
    top_left = torch.maximum(pred[:, :2], gt[:, :2])
    bottom_right = torch.minimum(pred[:, 2:], gt[:, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=1)
    union = area_p + area_g - inter
    iou = inter / union.clamp(min=1e-12)
    enclose = (torch.maximum(pred[:, 2:], gt[:, 2:]) - torch.minimum(pred[:, :2], gt[:, :2])).clamp(min=0)
    enclose_area = enclose.prod(dim=1).clamp(min=1e-12)
    return iou - (enclose_area - union) / enclose_area, iou


@dataclass(frozen=True, eq=False)
class LossTerms:
    """The weighted total (a tensor to back-propagate) and its parts as plain numbers for the log."""

    total: torch.Tensor
    giou: float
    l1: float
    focal: float
    mean_iou: float


class TrackingLoss:
    """``TRAIN.GIOU_WEIGHT * GIoU + TRAIN.L1_WEIGHT * L1 + TRAIN.FOCAL_WEIGHT * focal`` for one model output."""

    def __init__(self, cfg: Config) -> None:
        self.weights = (cfg.train.giou_weight, cfg.train.l1_weight, cfg.train.focal_weight)
        self.feat_size = cfg.search_tokens_side

    def __call__(self, outputs: dict, search_box: torch.Tensor) -> LossTerms:
        pred = cxcywh_to_xyxy(outputs["pred_boxes"].reshape(-1, 4).float())
        if not torch.isfinite(pred).all():
            raise FloatingPointError("the network predicted non-finite boxes; lower TRAIN.LR or check the data")
        gt = xywh_to_xyxy(search_box.float()).clamp(0.0, 1.0)
        giou, iou = giou_and_iou(pred, gt)
        giou_loss = (1 - giou).mean()
        l1_loss = F.l1_loss(pred, gt)
        heat = gaussian_heatmap(search_box, self.feat_size)
        focal = focal_loss(outputs["score_map"].float(), heat)
        w_giou, w_l1, w_focal = self.weights
        total = w_giou * giou_loss + w_l1 * l1_loss + w_focal * focal
        parts = (float(giou_loss.detach()), float(l1_loss.detach()), float(focal.detach()), float(iou.detach().mean()))
        return LossTerms(total, *parts)
