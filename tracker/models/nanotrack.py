"""NanoTrack v3 backbone (SiamTrackers commit 248663fd, Apache-2.0) in PyTorch, so its pretrained weights can be reused.

A trimmed MobileNetV3-small whose ``state_dict`` keys are exactly the checkpoint's ``backbone.features.*`` keys
without the ``backbone.`` prefix. The layout below was read off the checkpoint's tensor shapes and the released ONNX
graph (``nanotrack_backbone.onnx``, BatchNorm folded into the convolutions):

    features.0    conv 3x3 stride 2, 3 -> 16, BN, hard-swish
    block  kernel  width  out  stride  SE  activation
      1      3       16    16     2    yes  ReLU        (no expansion: depth-wise first)
      2      3       72    24     2    no   ReLU
      3      3       88    24     1    no   ReLU        residual
      4      5       96    40     2    yes  hard-swish
      5      5      240    40     1    yes  hard-swish  residual
      6      5      240    40     1    yes  hard-swish  residual
      7      5      120    48     1    yes  hard-swish
      8      5      144    48     1    yes  hard-swish  residual
      9      5      288    96     1    yes  hard-swish

Every convolution pads by kernel // 2, so each of the four stride-2 layers maps a side n to ceil(n / 2) and an
n x n input gives a ceil(n / 16) side: 96 -> 6, 127 -> 8, 128 -> 8, 192 -> 12, 255 -> 16, 256 -> 16.

``NanoTrackV3Head`` is the checkpoint's ``ban_head.*`` (layout in its docstring), loaded by ``fill_head``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from tracker.errors import CheckpointError, first_line

CHECKPOINT_PREFIX = "backbone."
HEAD_PREFIX = "ban_head."

# Per block features.1 .. features.9: kernel, depth-wise width, out channels, stride, SE squeeze width (0: no SE),
# hard-swish (else ReLU). The squeeze widths are the checkpoint's (width / 4 rounded to a multiple of 8).
_BLOCKS: tuple[tuple[int, int, int, int, int, bool], ...] = (
    (3, 16, 16, 2, 8, False),
    (3, 72, 24, 2, 0, False),
    (3, 88, 24, 1, 0, False),
    (5, 96, 40, 2, 24, True),
    (5, 240, 40, 1, 64, True),
    (5, 240, 40, 1, 64, True),
    (5, 120, 48, 1, 32, True),
    (5, 144, 48, 1, 40, True),
    (5, 288, 96, 1, 72, True),  # MobileNetV3-small strides here; v3 does not, which keeps the output stride at 16
)
_STEM_CHANNELS = 16


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, squeeze), nn.ReLU(), nn.Linear(squeeze, channels), nn.Hardsigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(dim=(2, 3)))[:, :, None, None]


class _InvertedResidual(nn.Module):
    def __init__(
        self, in_channels: int, kernel: int, width: int, out: int, stride: int, squeeze: int, hswish: bool
    ) -> None:
        super().__init__()
        act = nn.Hardswish if hswish else nn.ReLU
        # Identity keeps the checkpoint's Sequential indices where a block has no SE.
        se = _SqueezeExcite(width, squeeze) if squeeze else nn.Identity()
        depthwise = [
            nn.Conv2d(width, width, kernel, stride, kernel // 2, groups=width, bias=False),
            nn.BatchNorm2d(width),
        ]
        project = [nn.Conv2d(width, out, 1, bias=False), nn.BatchNorm2d(out)]
        if width == in_channels:
            # Without expansion the activation comes before SE; with it, after (as in the ONNX graph).
            layers = [*depthwise, act(), se, *project]
        else:
            expand = [nn.Conv2d(in_channels, width, 1, bias=False), nn.BatchNorm2d(width), act()]
            layers = [*expand, *depthwise, se, act(), *project]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class NanoTrackV3Backbone(nn.Module):
    """``forward(image_bgr)``: (B,3,H,W) BGR pixel values 0..255 as float32, not normalised -> (B,96,H',W') with
    H' = ceil(H / 16), W' = ceil(W / 16) (127 -> 8, 255 -> 16; see the module docstring)."""

    out_channels = 96
    stride = 16

    def __init__(self) -> None:
        super().__init__()
        stem = nn.Sequential(
            nn.Conv2d(3, _STEM_CHANNELS, 3, 2, 1, bias=False), nn.BatchNorm2d(_STEM_CHANNELS), nn.Hardswish()
        )
        layers: list[nn.Module] = [stem]
        in_channels = _STEM_CHANNELS
        for spec in _BLOCKS:
            layers.append(_InvertedResidual(in_channels, *spec))
            in_channels = spec[2]
        self.features = nn.Sequential(*layers)

    def forward(self, image_bgr: torch.Tensor) -> torch.Tensor:
        return self.features(image_bgr)


_HEAD_CHANNELS = 96  # the backbone's output width, kept through the head
_TEMPLATE_SIDE = 8  # a 127x127 exemplar's feature side: the point-wise correlation has one channel per template cell
_DW_KERNEL_SIDE = 4  # the depth-wise correlation uses the template's centre 4x4 cells
_TOWER_BLOCKS = 6


def _conv_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 convolution with bias, then BatchNorm, no activation (the correlations' adjust layers)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels))


class _ChannelAttention(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels, 1)
        self.fc2 = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))


class _PointwiseCorrelation(nn.Module):
    """Every template cell's 96-vector dotted with every search cell: (B,64,16,16), channel attention, then a 2x2
    depth-wise conv (-> 15x15) and a 1x1 conv."""

    def __init__(self) -> None:
        super().__init__()
        cells = _TEMPLATE_SIDE * _TEMPLATE_SIDE
        self.conv_kernel = _conv_bn(_HEAD_CHANNELS, _HEAD_CHANNELS)
        self.conv_search = _conv_bn(_HEAD_CHANNELS, _HEAD_CHANNELS)
        self.CA_layer = _ChannelAttention(cells)  # the checkpoint's name
        self.conv = nn.Sequential(
            nn.Conv2d(cells, cells, 2, groups=cells, bias=False),
            nn.BatchNorm2d(cells),
            nn.ReLU6(),
            nn.Conv2d(cells, cells, 1),
            nn.BatchNorm2d(cells),
        )

    def forward(self, template: torch.Tensor, search: torch.Tensor) -> torch.Tensor:
        kernel = self.conv_kernel(template).flatten(2)  # (B,96,64)
        search = self.conv_search(search)
        corr = (kernel.transpose(1, 2) @ search.flatten(2)).unflatten(2, search.shape[2:])  # (B,64,H,W)
        return self.conv(self.CA_layer(corr))


class _DepthwiseCorrelation(nn.Module):
    """The template's centre 4x4 cells as a per-channel kernel slid over the search map, padding 1: 16 -> 15."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_kernel = _conv_bn(_HEAD_CHANNELS, _HEAD_CHANNELS)
        self.conv_search = _conv_bn(_HEAD_CHANNELS, _HEAD_CHANNELS)

    def forward(self, template: torch.Tensor, search: torch.Tensor) -> torch.Tensor:
        start = (template.shape[-1] - _DW_KERNEL_SIDE) // 2
        end = start + _DW_KERNEL_SIDE
        kernel = self.conv_kernel(template[:, :, start:end, start:end])
        search = self.conv_search(search)
        batch, channels = kernel.shape[:2]
        out = nn.functional.conv2d(
            search.reshape(1, batch * channels, *search.shape[2:]),
            kernel.reshape(batch * channels, 1, *kernel.shape[2:]),
            padding=1,
            groups=batch * channels,
        )
        return out.reshape(batch, channels, *out.shape[2:])


def _tower() -> nn.Sequential:
    """Six blocks of depth-wise 3x3 conv, BN, ReLU6, 1x1 conv, BN (no activation after the 1x1)."""
    layers: list[nn.Module] = []
    for _ in range(_TOWER_BLOCKS):
        layers += [
            nn.Conv2d(_HEAD_CHANNELS, _HEAD_CHANNELS, 3, 1, 1, groups=_HEAD_CHANNELS, bias=False),
            nn.BatchNorm2d(_HEAD_CHANNELS),
            nn.ReLU6(),
            nn.Conv2d(_HEAD_CHANNELS, _HEAD_CHANNELS, 1, bias=False),
            nn.BatchNorm2d(_HEAD_CHANNELS),
        ]
    return nn.Sequential(*layers)


class NanoTrackV3Head(nn.Module):
    """NanoTrack v3's head (the checkpoint's ``ban_head.*``, keys without the prefix): the teacher's response maps
    for distilling NanoTrack v3 into the project's tracker.

    ``forward(template_features, search_features)``: the backbone's (B,96,8,8) for a 127x127 exemplar and
    (B,96,16,16) for a 255x255 search crop -> ``cls_logits`` (B,2,15,15) (softmax over dim 1; channel 1 is the
    target) and ``distances`` (B,4,15,15) = exp(regression) > 0: left, top, right, bottom in search-crop pixels
    from each cell's point (stride 16, centred on the crop centre).

    Layout, read off the tensor shapes and ``nanotrack_head.onnx`` (BatchNorm folded there). Per branch (cls, reg):

        corr_pw   1x1 conv + BN on each map; template cells (64) x search cells (256) dot products -> (B,64,16,16);
                  channel attention (mean, 1x1, ReLU, 1x1, sigmoid, scale); dw 2x2 conv, BN, ReLU6, 1x1, BN -> 15x15
        corr_dw   1x1 conv + BN on the template's centre 4x4 and on the search map; depth-wise cross-correlation,
                  padding 1 -> (B,96,15,15)
        down      concat (64 + 96 = 160) -> 1x1 conv to 96
        tower     6 x (dw 3x3 conv, BN, ReLU6, 1x1 conv, BN)
        output    1x1 conv: cls_logits 96 -> 2; bbox_pred 96 -> 4, then exp
    """

    def __init__(self) -> None:
        super().__init__()
        cells = _TEMPLATE_SIDE * _TEMPLATE_SIDE
        self.corr_pw_cls = _PointwiseCorrelation()
        self.corr_pw_reg = _PointwiseCorrelation()
        self.corr_dw_cls = _DepthwiseCorrelation()
        self.corr_dw_reg = _DepthwiseCorrelation()
        self.down_cls = nn.Sequential(nn.Conv2d(cells + _HEAD_CHANNELS, _HEAD_CHANNELS, 1))
        self.down_reg = nn.Sequential(nn.Conv2d(cells + _HEAD_CHANNELS, _HEAD_CHANNELS, 1))
        self.cls_tower = _tower()
        self.bbox_tower = _tower()
        self.cls_logits = nn.Sequential(nn.Conv2d(_HEAD_CHANNELS, 2, 1))
        self.bbox_pred = nn.Sequential(nn.Conv2d(_HEAD_CHANNELS, 4, 1))

    def forward(
        self, template_features: torch.Tensor, search_features: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        z, x = template_features, search_features
        cls = self.down_cls(torch.cat([self.corr_pw_cls(z, x), self.corr_dw_cls(z, x)], dim=1))
        reg = self.down_reg(torch.cat([self.corr_pw_reg(z, x), self.corr_dw_reg(z, x)], dim=1))
        return self.cls_logits(self.cls_tower(cls)), torch.exp(self.bbox_pred(self.bbox_tower(reg)))


def load_nanotrack_v3_backbone(path: str | Path) -> NanoTrackV3Backbone:
    """The backbone with the ``backbone.*`` tensors of a NanoTrack v3 safetensors file (``nanotrack_v3.safetensors``),
    loaded strict, in eval mode. Raises CheckpointError when the file cannot be read or its tensors do not fit."""
    path = Path(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({first_line(err, 200)}); give nanotrack_v3.safetensors"
        ) from None
    return fill_backbone(NanoTrackV3Backbone(), tensors, str(path)).eval()


def fill_backbone(model: NanoTrackV3Backbone, tensors: dict[str, torch.Tensor], source: str) -> NanoTrackV3Backbone:
    """Load the ``backbone.*`` tensors of NanoTrack v3's state dict (as released) into ``model``, all or none.
    Raises CheckpointError naming what does not fit."""
    return _fill(model, tensors, CHECKPOINT_PREFIX, "backbone", source)


def fill_head(model: NanoTrackV3Head, tensors: dict[str, torch.Tensor], source: str) -> NanoTrackV3Head:
    """Load the ``ban_head.*`` tensors of NanoTrack v3's state dict (as released) into ``model``, all or none.
    Raises CheckpointError naming what does not fit."""
    return _fill(model, tensors, HEAD_PREFIX, "head", source)


_Module = TypeVar("_Module", bound=nn.Module)


def _fill(model: _Module, tensors: dict[str, torch.Tensor], prefix: str, part: str, source: str) -> _Module:
    """Load the ``prefix``-ed tensors, prefix stripped, strict into ``model``; CheckpointError when they do not fit."""
    state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    problem = _mismatch(model.state_dict(), state, prefix)
    if problem:
        raise CheckpointError(
            f"{source} does not fit the NanoTrack v3 {part}: {problem}; give nanotrack_v3.safetensors"
        )
    model.load_state_dict(state, strict=True)
    return model


def _mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], prefix: str) -> str:
    """What keeps ``found`` from loading strict into a module whose state is ``expected`` ('' when nothing)."""
    if not found:
        return f"no {prefix}* tensors"
    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(found.keys() - expected.keys())
    misshapen = [
        f"{k} {tuple(found[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in found and found[k].shape != v.shape
    ]
    parts = [
        f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("misshapen", misshapen))
        if keys
    ]
    return "; ".join(parts)
