"""One-stream ViT backbone: shared patch embedding, separate template/search positional tables, joint encoding.

Parameter names follow the official OSTrack ``VisionTransformerCE`` so its checkpoints load unchanged.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, PatchEmbed, trunc_normal_
from torch import nn

from tracker.config import Config
from tracker.models.candidate import eliminate, restore_search_order
from tracker.models.nanotrack import NanoTrackV3Backbone

PRETRAIN_GRID = 14  # the 224-pixel pretrain table: 14x14 patches plus a cls entry


class Attention(nn.Module):
    """Multi-head self-attention that can also hand back its softmax probabilities (CE ranks tokens by them)."""

    def __init__(self, dim: int, num_heads: int, attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        # The explicit softmax is the reference arithmetic: CE ranks tokens whose scores differ by ~1e-6, and a
        # fused kernel's rounding in earlier blocks flips such near-ties. Fast paths set ``fused`` (tracker.accel).
        self.fused = False

    def forward(self, x: torch.Tensor, need_probs: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, length, dim = x.shape
        qkv = self.qkv(x).reshape(batch, length, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.fused and not need_probs:
            drop = self.attn_drop.p if self.training else 0.0
            out, probs = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, scale=self.scale), None
        else:
            # Softmax in float32 even under mixed precision: CE ranks tokens by these probabilities. For float32
            # inputs both casts are no-ops, so the reference arithmetic is unchanged.
            probs = ((q @ k.transpose(-2, -1)) * self.scale).float().softmax(dim=-1)
            out = self.attn_drop(probs).to(v.dtype) @ v
        out = out.transpose(1, 2).reshape(batch, length, dim)
        return self.proj_drop(self.proj(out)), probs


class Block(nn.Module):
    """Pre-norm transformer block; with ``keep_ratio < 1`` it eliminates search tokens between attention and MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float, keep_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)
        self.keep_ratio = keep_ratio

    def forward(
        self,
        x: torch.Tensor,
        num_template: int,
        global_index: torch.Tensor,
        focus: torch.Tensor | None,
        keep_ratio: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        ratio = self.keep_ratio if keep_ratio is None or self.keep_ratio >= 1 else keep_ratio
        eliminating = ratio < 1
        attn_out, probs = self.attn(self.norm1(x), need_probs=eliminating)
        x = x + self.drop_path(attn_out)
        removed = None
        if eliminating:
            x, global_index, removed = eliminate(x, probs, num_template, ratio, global_index, focus)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, global_index, removed


class OneStreamViT(nn.Module):
    """Template and search patches embedded by one patch embedding and encoded jointly.

    ``forward`` returns ``(tokens, aux)``: tokens (B, Lz + Ls, C) with search tokens in original row-major order and
    eliminated ones as exact zeros; ``aux`` holds ``removed_indexes_s``: one (B, n) tensor of original search
    indices per CE block that removed tokens, in descending-score order.
    """

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        bb = cfg.backbone
        dim = bb.embed_dim
        self.num_template = cfg.template_tokens_side**2
        self.num_search = cfg.search_tokens_side**2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, PRETRAIN_GRID**2 + 1, dim))
        self.pos_embed_z = nn.Parameter(torch.zeros(1, self.num_template, dim))
        self.pos_embed_x = nn.Parameter(torch.zeros(1, self.num_search, dim))
        self.patch_embed = make_patch_embed(cfg)
        keep = dict(zip(bb.ce_loc, cfg.tracking_keep_ratios, strict=False))
        rates = [cfg.train.drop_path_rate * i / max(bb.depth - 1, 1) for i in range(bb.depth)]
        self.blocks = nn.ModuleList(
            Block(dim, bb.num_heads, bb.mlp_ratio, rates[i], keep.get(i, 1.0)) for i in range(bb.depth)
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self._init_weights()

    def _init_weights(self) -> None:
        for table in (self.pos_embed, self.pos_embed_z, self.pos_embed_x, self.cls_token):
            trunc_normal_(table, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def load_pretrain_positions(self) -> None:
        """Fill the template/search tables from the 224 pretrain table (bicubic), as the official build does."""
        with torch.no_grad():
            side_z = math.isqrt(self.num_template)
            side_x = math.isqrt(self.num_search)
            self.pos_embed_z.copy_(interpolate_pos_embed(self.pos_embed, side_z))
            self.pos_embed_x.copy_(interpolate_pos_embed(self.pos_embed, side_x))

    def forward(
        self,
        template: torch.Tensor,
        search: torch.Tensor,
        ce_template_mask: torch.Tensor | None = None,
        ce_keep_rate: float | None = None,
    ) -> tuple[torch.Tensor, dict]:
        return self.forward_embedded(self.embed_template(template), search, ce_template_mask, ce_keep_rate)

    def embed_template(self, template: torch.Tensor) -> torch.Tensor:
        """The template's tokens (B, Lz, C), positions added: what a tracker computes once per target."""
        return self.patch_embed(template) + self.pos_embed_z

    def forward_embedded(
        self,
        template_tokens: torch.Tensor,
        search: torch.Tensor,
        ce_template_mask: torch.Tensor | None = None,
        ce_keep_rate: float | None = None,
    ) -> tuple[torch.Tensor, dict]:
        """``forward`` from the template's tokens (``embed_template``) instead of its pixels."""
        x = self.patch_embed(search) + self.pos_embed_x
        batch = x.shape[0]
        tokens = torch.cat([template_tokens, x], dim=1)
        focus = self._focus(ce_template_mask)
        global_index = torch.arange(self.num_search, device=x.device).expand(batch, -1)
        removed: list[torch.Tensor] = []
        for block in self.blocks:
            tokens, global_index, removed_now = block(
                tokens, self.num_template, global_index, focus, ce_keep_rate
            )
            if removed_now is not None:
                removed.append(removed_now)
        tokens = self.norm(tokens)
        z_out, x_out = tokens[:, : self.num_template], tokens[:, self.num_template :]
        x_out = restore_search_order(x_out, global_index, removed, self.num_search)
        return torch.cat([z_out, x_out], dim=1), {"removed_indexes_s": removed}

    def _focus(self, ce_template_mask: torch.Tensor | None) -> torch.Tensor | None:
        """Template rows that rank search tokens: a (B, Lz) or (Lz,) bool mask, or None for all rows (official).

        An int64 1-D tensor is taken as the row indices themselves: the same rows, picked with a static shape, which
        compiled and graph-captured paths need (a bool index has a data-dependent size)."""
        if ce_template_mask is None:
            return None
        if ce_template_mask.dtype == torch.long and ce_template_mask.dim() == 1:
            return ce_template_mask
        return ce_template_mask.reshape(-1, self.num_template)[0].bool()


class ConvStem(nn.Module):
    """Early convolutions in place of the patchify: log2(stride) stride-2 3x3 conv-BN-ReLU layers doubling the
    width up to ``dim``, then a 1x1 projection, giving (B, tokens, dim) as ``PatchEmbed`` does.

    Their locality and overlap give a from-scratch ViT the shift tolerance the 16x16 linear patchify lacks, which
    is what lets a small tracker learn to match template and search on little data (Xiao et al., NeurIPS 2021).
    """

    def __init__(self, stride: int, dim: int) -> None:
        super().__init__()
        steps = stride.bit_length() - 1
        widths = [3] + [max(dim >> (steps - i), 8) for i in range(1, steps + 1)]
        layers: list[nn.Module] = []
        for width_in, width_out in itertools.pairwise(widths):
            layers += [nn.Conv2d(width_in, width_out, 3, 2, 1, bias=False), nn.BatchNorm2d(width_out), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.proj = nn.Conv2d(widths[-1], dim, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.proj(self.body(image)).flatten(2).transpose(1, 2)


class NanoTrackStem(nn.Module):
    """NanoTrack v3's pretrained MobileNetV3 backbone as the patch embedding, then a 1x1 projection to the width.

    The network was trained on BGR pixel values (0..255, not normalised); the tracker hands every stem the same
    normalised RGB crop, so the stem undoes the normalisation first. Its BatchNorm layers always use their
    pretrained statistics (see ``train``), in training as at test time.
    """

    def __init__(self, dim: int, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.body = NanoTrackV3Backbone()
        self.proj = nn.Conv2d(self.body.out_channels, dim, 1)
        # Normalised RGB -> BGR 0..255 is one per-channel affine map. Stored with the weights: the map the stem was
        # trained behind is part of the model, whatever DATA.MEAN/STD a later config says.
        bgr = [2, 1, 0]
        self.register_buffer("pixel_scale", 255.0 * torch.tensor(std)[bgr].view(1, 3, 1, 1))
        self.register_buffer("pixel_shift", 255.0 * torch.tensor(mean)[bgr].view(1, 3, 1, 1))
        self.body_frozen = False  # training: the pretrained body gets no gradient (its weights stay as loaded)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        pixels = image.flip(1) * self.pixel_scale + self.pixel_shift
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.body_frozen):
            features = self.body(pixels)
        return self.proj(features).flatten(2).transpose(1, 2)

    def train(self, mode: bool = True) -> NanoTrackStem:
        super().train(mode)
        self.body.eval()  # batch statistics of 16 pairs would overwrite those learnt on millions of frames
        return self


class ConvPlusNanoTrackStem(ConvStem):
    """The conv stem's tokens plus a projection of NanoTrack v3's pretrained features, that projection starting at
    zero.

    A model trained with the conv stem keeps its tensor names (``body``, ``proj``) and, at the start of a fine-tune,
    its outputs exactly; the fine-tune then draws on the pretrained features only as far as they help. The conv
    path keeps the colours and fine detail that NanoTrack's last layer has traded for invariance.
    """

    def __init__(self, stride: int, dim: int, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__(stride, dim)
        self.pretrained = NanoTrackStem(dim, mean, std)
        nn.init.zeros_(self.pretrained.proj.weight)
        nn.init.zeros_(self.pretrained.proj.bias)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return super().forward(image) + self.pretrained(image)


def make_patch_embed(cfg: Config) -> nn.Module:
    """The token embedding MODEL.BACKBONE.STEM names: "patch" (official, timm's PatchEmbed), "conv",
    "nanotrack_v3" or "conv+nanotrack_v3"."""
    bb = cfg.backbone
    if bb.stem == "conv":
        return ConvStem(bb.stride, bb.embed_dim)
    if bb.stem == "nanotrack_v3":
        return NanoTrackStem(bb.embed_dim, cfg.data.mean, cfg.data.std)
    if bb.stem == "conv+nanotrack_v3":
        return ConvPlusNanoTrackStem(bb.stride, bb.embed_dim, cfg.data.mean, cfg.data.std)
    return PatchEmbed(
        img_size=cfg.data.search.size, patch_size=bb.stride, in_chans=3, embed_dim=bb.embed_dim, strict_img_size=False
    )


def interpolate_pos_embed(pos_embed: torch.Tensor, side: int) -> torch.Tensor:
    """The 224 pretrain table (1, 1 + 14*14, C) resized bicubically to (1, side*side, C), row-major."""
    grid = pos_embed[:, 1:]
    channels = grid.shape[-1]
    old = math.isqrt(grid.shape[1])
    grid = grid.transpose(1, 2).reshape(1, channels, old, old)
    grid = F.interpolate(grid, size=(side, side), mode="bicubic", align_corners=False)
    return grid.flatten(2).transpose(1, 2)
