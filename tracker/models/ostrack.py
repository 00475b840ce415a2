"""OSTrack: the one-stream ViT backbone plus the centre head; ``build_model(config)``."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tracker.config import Config, load_config
from tracker.models.head import CenterHead, decode_boxes
from tracker.models.vit import OneStreamViT


class OSTrack(nn.Module):
    """``forward(template, search, ce_template_mask=None)`` -> dict of maps, boxes and CE bookkeeping.

    Inputs are normalised NCHW crops: template (B,3,T,T), search (B,3,S,S). Outputs: ``score_map`` (B,1,fs,fs),
    ``size_map`` and ``offset_map`` (B,2,fs,fs), ``pred_boxes`` (B,1,4) as normalised (cx,cy,w,h) at the raw score
    argmax, ``backbone_feat`` (B, Lz+Ls, C) and ``removed_indexes_s`` (list of (B,n)).
    """

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = OneStreamViT(cfg)
        self.feat_size = cfg.search_tokens_side
        self.box_head = CenterHead(cfg.backbone.embed_dim, cfg.model.head.num_channels, self.feat_size)

    def forward(
        self,
        template: torch.Tensor,
        search: torch.Tensor,
        ce_template_mask: torch.Tensor | None = None,
        ce_keep_rate: float | None = None,
    ) -> dict:
        return self.forward_embedded(self.embed_template(template), search, ce_template_mask, ce_keep_rate)

    def embed_template(self, template: torch.Tensor) -> torch.Tensor:
        """The template's tokens (B, Lz, C): the part of a step that depends on the template alone."""
        return self.backbone.embed_template(template)

    def forward_embedded(
        self,
        template_tokens: torch.Tensor,
        search: torch.Tensor,
        ce_template_mask: torch.Tensor | None = None,
        ce_keep_rate: float | None = None,
    ) -> dict:
        """``forward`` from the template's tokens (``embed_template``), as a tracker runs every step."""
        tokens, aux = self.backbone.forward_embedded(template_tokens, search, ce_template_mask, ce_keep_rate)
        search_tokens = tokens[:, -self.feat_size**2 :]
        batch, _, channels = search_tokens.shape
        feat = search_tokens.transpose(1, 2).reshape(batch, channels, self.feat_size, self.feat_size)
        score, size, offset = self.box_head(feat)
        boxes = decode_boxes(score, size, offset)
        return {
            "score_map": score,
            "size_map": size,
            "offset_map": offset,
            "pred_boxes": boxes.view(batch, 1, 4),
            "backbone_feat": tokens,
            **aux,
        }


def build_model(config: str | Path | Config) -> OSTrack:
    """A fresh model (random weights) for a config name from ``configs/``, a YAML path, or a ``Config``."""
    return OSTrack(load_config(config))
