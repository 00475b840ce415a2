"""Centre head: score, size and offset maps from the search tokens, and box decoding from them.

Maps live on the (fs, fs) grid of search tokens; decoded boxes are (cx, cy, w, h) normalised to the search crop.
"""

from __future__ import annotations

import torch
from torch import nn

SIGMOID_CLAMP = 1e-4  # sigmoid outputs are clamped to [eps, 1 - eps], as the official head does


def _conv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=True), nn.BatchNorm2d(out_ch), nn.ReLU(True))


def _branch(prefix: str, module: nn.Module, in_ch: int, channels: int, out_ch: int) -> None:
    """Register ``conv1_<prefix>`` .. ``conv5_<prefix>``: C -> ch -> ch/2 -> ch/4 -> ch/8 -> out."""
    widths = [in_ch, channels, channels // 2, channels // 4, channels // 8]
    for i in range(4):
        module.add_module(f"conv{i + 1}_{prefix}", _conv_bn_relu(widths[i], widths[i + 1]))
    module.add_module(f"conv5_{prefix}", nn.Conv2d(widths[4], out_ch, kernel_size=1))


def _clamped_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(x.sigmoid(), min=SIGMOID_CLAMP, max=1 - SIGMOID_CLAMP)


class CenterHead(nn.Module):
    def __init__(self, in_channels: int, channels: int, feat_size: int) -> None:
        super().__init__()
        self.feat_size = feat_size
        for name, out_ch in (("ctr", 1), ("offset", 2), ("size", 2)):
            _branch(name, self, in_channels, channels, out_ch)
        for param in self.parameters():
            if param.dim() > 1:
                nn.init.xavier_uniform_(param)

    def _run(self, prefix: str, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, 6):
            x = getattr(self, f"conv{i}_{prefix}")(x)
        return x

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """feat (B, C, fs, fs) -> score (B,1,fs,fs), size (B,2,fs,fs), offset (B,2,fs,fs)."""
        score = _clamped_sigmoid(self._run("ctr", feat))
        size = _clamped_sigmoid(self._run("size", feat))
        offset = self._run("offset", feat)
        return score, size, offset


def decode_boxes(score: torch.Tensor, size: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Box at the score argmax: (B, 4) as (cx, cy, w, h) normalised to the search crop (channel 0 = x/w)."""
    batch, _, side, _ = score.shape
    idx = score.flatten(1).max(dim=1, keepdim=True).indices
    iy = torch.div(idx, side, rounding_mode="floor")
    ix = idx % side
    gather_idx = idx.unsqueeze(1).expand(batch, 2, 1)
    wh = size.flatten(2).gather(2, gather_idx).squeeze(-1)
    off = offset.flatten(2).gather(2, gather_idx).squeeze(-1)
    cx = (ix.to(off.dtype) + off[:, :1]) / side
    cy = (iy.to(off.dtype) + off[:, 1:]) / side
    return torch.cat([cx, cy, wh], dim=1)
