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
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from tracker.errors import CheckpointError, first_line

CHECKPOINT_PREFIX = "backbone."

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
    state = {k[len(CHECKPOINT_PREFIX) :]: v for k, v in tensors.items() if k.startswith(CHECKPOINT_PREFIX)}
    problem = _mismatch(model.state_dict(), state)
    if problem:
        raise CheckpointError(
            f"{source} does not fit the NanoTrack v3 backbone: {problem}; give nanotrack_v3.safetensors"
        )
    model.load_state_dict(state, strict=True)
    return model


def _mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str:
    """What keeps ``found`` from loading strict into a module whose state is ``expected`` ('' when nothing)."""
    if not found:
        return f"no {CHECKPOINT_PREFIX}* tensors"
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
