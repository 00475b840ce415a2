"""Grounding losses for one frame of a clip batch: focal heat map, GIoU + L1 boxes, presence and start/end BCE.

Boxes are normalised (x, y, w, h) in the input square. Box losses are taken twice: at each target's centre cell
(dense, as OSTrack trains its head) and on the predicted peaks matched one-to-one to the targets with ``lap``
(so the boxes the grounder actually reports are trained too, also when a caption names several objects).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tracker.config import GroundingTrainConfig
from tracker.grounding import linear_assignment
from tracker.models.grounding import GroundingOutput
from tracker.train.losses import cxcywh_to_xyxy, focal_loss, gaussian_heatmap, giou_and_iou, xywh_to_xyxy

EXTRA_PEAKS = 2  # peaks offered to the matcher beyond the number of targets
MATCH_COST_LIMIT = (
    2.5  # L1 + (1 - GIoU) above this leaves a target unmatched (a far-off peak teaches nothing)
)


@dataclass(frozen=True, eq=False)
class GroundingLoss:
    total: torch.Tensor
    terms: dict[str, float]


def heat_targets(boxes: list[torch.Tensor], side: int) -> torch.Tensor:
    """(B, 1, side, side): the Gaussian of every target of each row (maximum where they overlap), zeros if none."""
    maps = []
    for row in boxes:
        if len(row):
            maps.append(gaussian_heatmap(row, side).amax(dim=0))
        else:
            maps.append(torch.zeros(1, side, side))
    return torch.stack(maps)


def decode_at(out: GroundingOutput, row: int, cells: torch.Tensor) -> torch.Tensor:
    """Boxes (n, 4) as normalised (cx, cy, w, h) predicted at flat grid ``cells`` (n,) of batch row ``row``."""
    side = out.score_map.shape[-1]
    size = out.size_map[row].flatten(1)[:, cells]
    offset = out.offset_map[row].flatten(1)[:, cells]
    cx = ((cells % side).float() + offset[0]) / side
    cy = (torch.div(cells, side, rounding_mode="floor").float() + offset[1]) / side
    return torch.stack([cx, cy, size[0], size[1]], dim=1)


def centre_cells(boxes: torch.Tensor, side: int) -> torch.Tensor:
    centre = (boxes[:, :2] + 0.5 * boxes[:, 2:]) * side
    cell = centre.round().clamp(0, side - 1).long()
    return cell[:, 1] * side + cell[:, 0]


def box_terms(pred_cxcywh: torch.Tensor, gt_xywh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed (1 - GIoU) and L1 between matching rows."""
    pred = cxcywh_to_xyxy(pred_cxcywh)
    gt = xywh_to_xyxy(gt_xywh)
    giou, _ = giou_and_iou(pred, gt)
    return (1 - giou).sum(), F.l1_loss(pred, gt, reduction="sum")


def matched_peaks(out: GroundingOutput, row: int, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted peak boxes and the targets ``lap`` matches them to: (m, 4) cxcywh and (m, 4) xywh."""
    side = out.score_map.shape[-1]
    score = out.score_map[row : row + 1].detach()
    local = score == F.max_pool2d(score, 3, stride=1, padding=1)
    flat = torch.where(local, score, torch.zeros_like(score)).flatten()
    cells = flat.topk(min(len(gt) + EXTRA_PEAKS, side * side)).indices
    pred = decode_at(out, row, cells)
    with torch.no_grad():
        pred_xyxy, gt_xyxy = cxcywh_to_xyxy(pred), xywh_to_xyxy(gt)
        l1 = torch.cdist(pred_xyxy, gt_xyxy, p=1)
        giou = torch.stack(
            [giou_and_iou(pred_xyxy[i].expand_as(gt_xyxy), gt_xyxy)[0] for i in range(len(pred))]
        )
        cost = (l1 + (1 - giou)).numpy()
    matches, _, _ = linear_assignment(np.asarray(cost, dtype=np.float64), MATCH_COST_LIMIT)
    if not matches:
        return pred[:0], gt[:0]
    rows = torch.tensor([r for r, _ in matches])
    cols = torch.tensor([c for _, c in matches])
    return pred[rows], gt[cols]


def grounding_loss(
    out: GroundingOutput,
    boxes: list[torch.Tensor],
    present: torch.Tensor,
    events: torch.Tensor,
    weights: GroundingTrainConfig,
) -> GroundingLoss:
    """Loss of one frame for a batch: ``boxes[b]`` (n, 4) normalised xywh targets, ``present`` (B,) bool,
    ``events`` (B, 2) float start/end targets."""
    side = out.score_map.shape[-1]
    focal = focal_loss(out.score_map, heat_targets(boxes, side).to(out.score_map.device))
    giou_sum = l1_sum = out.score_map.new_zeros(())
    count = 0
    for row, gt in enumerate(boxes):
        if not len(gt):
            continue
        gt = gt.to(out.score_map.device)
        giou_c, l1_c = box_terms(decode_at(out, row, centre_cells(gt, side)), gt)
        pred_m, gt_m = matched_peaks(out, row, gt)
        giou_m, l1_m = box_terms(pred_m, gt_m) if len(gt_m) else (giou_c * 0, l1_c * 0)
        giou_sum = giou_sum + giou_c + giou_m
        l1_sum = l1_sum + l1_c + l1_m
        count += len(gt) + len(gt_m)
    giou = giou_sum / max(count, 1)
    l1 = l1_sum / max(count, 1) / 4
    presence = F.binary_cross_entropy_with_logits(out.presence_logit, present.float())
    event = F.binary_cross_entropy_with_logits(out.event_logits, events.float())
    total = (
        weights.focal_weight * focal
        + weights.giou_weight * giou
        + weights.l1_weight * l1
        + weights.presence_weight * presence
        + weights.event_weight * event
    )
    terms = {"focal": focal, "giou": giou, "l1": l1, "presence": presence, "event": event}
    return GroundingLoss(total, {k: float(v.detach()) for k, v in terms.items()})


def event_targets(present: torch.Tensor) -> torch.Tensor:
    """(B, T, 2) start/end targets from presence (B, T): start where the target is seen and was not on the
    previous frame (or it is the first frame), end where it was seen on the previous frame and is not now."""
    before = torch.cat([torch.zeros_like(present[:, :1]), present[:, :-1]], dim=1)
    start = present & ~before
    end = ~present & before
    return torch.stack([start, end], dim=-1).float()
