"""Streaming grounding network: ``[presence | text tokens | memory tokens | frame patches]`` in one ViT stream.

One step sees one frame, the encoded query and a fixed-length memory of state tokens from past frames only, so
the cost per frame is constant over an endless stream and no output can depend on a later frame. Frame patches
that the text tokens attend to least are eliminated in the CE blocks (``tracker.models.candidate``). Heads:
a centre heat map with size and offset on the patch grid (``CenterHead``), a presence logit read from the presence
token, start/end event logits, and the state token that the caller pushes into the memory for the next frame.

Maps live on the (fs, fs) patch grid of the letterboxed input square; boxes decoded from them are (cx, cy, w, h)
normalised to that square. Mapping to frame pixels is the caller's job (``tracker.grounding``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn

from tracker.config import Config, GroundingConfig, load_config
from tracker.errors import CheckpointError
from tracker.models.candidate import eliminate, restore_search_order
from tracker.models.head import CenterHead
from tracker.models.text import TextEncoding, build_text_encoder
from tracker.models.vit import Attention, Block, ConvPlusNanoTrackStem, ConvStem


@dataclass(frozen=True, eq=False)
class GroundingOutput:
    """One step's outputs for a batch of B frames.

    ``score_map`` (B,1,fs,fs) in 0..1, ``size_map`` (B,2,fs,fs) normalised (w, h), ``offset_map`` (B,2,fs,fs) in
    cells, ``presence_logit`` (B,), ``event_logits`` (B,2) (start, end), ``state`` (B,D) the token to remember,
    ``patch_feat`` (B,fs*fs,D) final patch features (eliminated patches are zeros).
    """

    score_map: torch.Tensor
    size_map: torch.Tensor
    offset_map: torch.Tensor
    presence_logit: torch.Tensor
    event_logits: torch.Tensor
    state: torch.Tensor
    patch_feat: torch.Tensor


@dataclass(frozen=True, eq=False)
class Memory:
    """Past state tokens, newest first: ``tokens`` (B, M, D) and ``valid`` (B, M) bool (False = empty slot)."""

    tokens: torch.Tensor
    valid: torch.Tensor

    @classmethod
    def empty(cls, batch: int, length: int, dim: int, device: torch.device | None = None) -> Memory:
        return cls(
            torch.zeros(batch, length, dim, device=device),
            torch.zeros(batch, length, dtype=torch.bool, device=device),
        )

    def push(self, state: torch.Tensor) -> Memory:
        """FIFO: ``state`` (B, D) becomes slot 0 and the oldest slot falls off; the length never changes."""
        tokens = torch.cat([state.unsqueeze(1), self.tokens[:, :-1]], dim=1)
        valid = torch.cat([torch.ones_like(self.valid[:, :1]), self.valid[:, :-1]], dim=1)
        return Memory(tokens, valid)

    def detach(self) -> Memory:
        return Memory(self.tokens.detach(), self.valid)


def masked_attention(
    attn: Attention, x: torch.Tensor, key_padding: torch.Tensor, need_probs: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``attn`` (the ViT's own module and weights) over ``x`` (B, L, C), ignoring keys where ``key_padding``
    (B, L) is True. Returns the projected output and, when asked, the softmax probabilities (B, H, L, L)."""
    batch, length, dim = x.shape
    heads = attn.num_heads
    qkv = attn.qkv(x).reshape(batch, length, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    bias = torch.zeros(batch, 1, 1, length, dtype=x.dtype, device=x.device)
    bias = bias.masked_fill(key_padding[:, None, None, :], float("-inf"))
    if need_probs:
        probs = ((q @ k.transpose(-2, -1)) * attn.scale + bias).softmax(dim=-1)
        out = attn.attn_drop(probs) @ v
    else:
        drop = attn.attn_drop.p if attn.training else 0.0
        out, probs = (
            F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=drop, scale=attn.scale),
            None,
        )
    out = out.transpose(1, 2).reshape(batch, length, dim)
    return attn.proj_drop(attn.proj(out)), probs


class GroundingBlock(Block):
    """The tracker's ViT block with a key padding mask; CE ranks frame patches by the text rows' attention."""

    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor,
        num_prefix: int,
        key_padding: torch.Tensor,
        global_index: torch.Tensor,
        focus: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        eliminating = self.keep_ratio < 1
        attn_out, probs = masked_attention(self.attn, self.norm1(x), key_padding, eliminating)
        x = x + self.drop_path(attn_out)
        removed = None
        if eliminating:
            x, global_index, removed = eliminate(x, probs, num_prefix, self.keep_ratio, global_index, focus)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, global_index, removed


class GroundingNet(nn.Module):
    """``forward(image, text, memory)`` -> ``GroundingOutput`` for one frame per batch row.

    ``image`` (B,3,S,S) normalised letterboxed frames; ``text`` from ``encode_text``; ``memory`` the state tokens of
    earlier frames (``Memory.empty`` at the start of a stream). Nothing in a step reads a later frame.
    """

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        g: GroundingConfig = cfg.grounding
        self.cfg = cfg
        dim = g.embed_dim
        self.side = g.input_size // g.stride
        self.num_patches = self.side**2
        self.memory_length = g.memory_length
        self.max_tokens = g.max_tokens
        self.text = build_text_encoder(g)
        self.stem = grounding_stem(cfg)  # the tracker's stem, so a trained tracker can initialise it
        self.pos_patch = nn.Parameter(torch.zeros(1, self.num_patches, dim))
        self.presence_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.text_type = nn.Parameter(torch.zeros(1, 1, dim))
        self.memory_age = nn.Parameter(torch.zeros(1, g.memory_length, dim))
        keep = dict(zip(g.ce_loc, g.ce_keep_ratio, strict=True))
        self.blocks = nn.ModuleList(
            GroundingBlock(dim, g.num_heads, g.mlp_ratio, 0.0, keep.get(i, 1.0)) for i in range(g.depth)
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = CenterHead(dim, g.head_channels, self.side)
        self.presence_head = nn.Linear(dim, 1)
        self.event_head = nn.Linear(dim, 2)
        self.state_proj = nn.Sequential(nn.Linear(2 * dim, dim), nn.LayerNorm(dim))
        self._init_weights()

    def _init_weights(self) -> None:
        for table in (self.pos_patch, self.presence_token, self.text_type, self.memory_age):
            trunc_normal_(table, std=0.02)
        for module in (self.blocks, self.presence_head, self.event_head, self.state_proj):
            for sub in module.modules():
                if isinstance(sub, nn.Linear):
                    trunc_normal_(sub.weight, std=0.02)
                    nn.init.zeros_(sub.bias)

    @property
    def num_prefix(self) -> int:
        return 1 + self.max_tokens + self.memory_length

    def encode_text(self, texts: list[str]) -> TextEncoding:
        """Captions -> text tokens padded to ``max_tokens`` (static shapes): cache this per query."""
        return self.text(texts)

    def empty_memory(self, batch: int, device: torch.device | None = None) -> Memory:
        return Memory.empty(batch, self.memory_length, self.pos_patch.shape[-1], device)

    def forward(self, image: torch.Tensor, text: TextEncoding, memory: Memory) -> GroundingOutput:
        batch = image.shape[0]
        patches = self.stem(image) + self.pos_patch
        prefix = torch.cat(
            [
                self.presence_token.expand(batch, -1, -1),
                text.tokens.expand(batch, -1, -1) + self.text_type,
                memory.tokens + self.memory_age,
            ],
            dim=1,
        )
        prefix_padding = torch.cat(
            [
                torch.zeros(batch, 1, dtype=torch.bool, device=image.device),
                text.padding.expand(batch, -1),
                ~memory.valid,
            ],
            dim=1,
        )
        tokens, patch_out = self._encode(prefix, prefix_padding, patches)
        return self._heads(tokens[:, 0], patch_out)

    def _encode(
        self, prefix: torch.Tensor, prefix_padding: torch.Tensor, patches: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, num_prefix = prefix.shape[:2]
        focus = torch.zeros(num_prefix, dtype=torch.bool, device=prefix.device)
        focus[1 : 1 + self.max_tokens] = True  # the text rows rank the frame patches
        tokens = torch.cat([prefix, patches], dim=1)
        global_index = torch.arange(self.num_patches, device=prefix.device).expand(batch, -1)
        removed: list[torch.Tensor] = []
        for block in self.blocks:
            key_padding = torch.cat(
                [prefix_padding, prefix_padding.new_zeros(batch, tokens.shape[1] - num_prefix)], dim=1
            )
            tokens, global_index, removed_now = block(tokens, num_prefix, key_padding, global_index, focus)
            if removed_now is not None:
                removed.append(removed_now)
        tokens = self.norm(tokens)
        patch_out = restore_search_order(tokens[:, num_prefix:], global_index, removed, self.num_patches)
        return tokens, patch_out

    def _heads(self, presence_out: torch.Tensor, patch_out: torch.Tensor) -> GroundingOutput:
        batch, _, dim = patch_out.shape
        feat = patch_out.transpose(1, 2).reshape(batch, dim, self.side, self.side)
        score, size, offset = self.head(feat)
        # The remembered state: what the presence token concluded plus the features where the target seems to be.
        weights = score.flatten(1)
        weights = weights / weights.sum(dim=1, keepdim=True)
        focused = (weights.unsqueeze(-1) * patch_out).sum(dim=1)
        state = self.state_proj(torch.cat([presence_out, focused], dim=-1))
        return GroundingOutput(
            score_map=score,
            size_map=size,
            offset_map=offset,
            presence_logit=self.presence_head(presence_out).squeeze(-1),
            event_logits=self.event_head(presence_out),
            state=state,
            patch_feat=patch_out,
        )


@dataclass(frozen=True)
class Peak:
    """One heat-map peak: (cx, cy, w, h) normalised to the input square, its score and its grid cell index."""

    cx: float
    cy: float
    w: float
    h: float
    score: float
    index: int


def find_peaks(out: GroundingOutput, row: int, top_k: int, kernel: int, min_score: float) -> list[Peak]:
    """Up to ``top_k`` local maxima (``kernel`` x ``kernel``) of batch row ``row``'s heat map, best first; the best
    peak is always kept so callers can show it, further ones only when they score at least ``min_score``."""
    score = out.score_map[row : row + 1]
    side = score.shape[-1]
    pooled = F.max_pool2d(score, kernel, stride=1, padding=kernel // 2)
    flat = torch.where(score == pooled, score, torch.zeros_like(score)).flatten()
    values, indices = flat.topk(min(top_k, flat.numel()))
    size = out.size_map[row].flatten(1)
    offset = out.offset_map[row].flatten(1)
    peaks = []
    for rank, (value, index) in enumerate(zip(values.tolist(), indices.tolist(), strict=True)):
        if rank > 0 and value < min_score:
            break
        iy, ix = divmod(index, side)
        peaks.append(
            Peak(
                cx=(ix + float(offset[0, index])) / side,
                cy=(iy + float(offset[1, index])) / side,
                w=float(size[0, index]),
                h=float(size[1, index]),
                score=value,
                index=index,
            )
        )
    return peaks


def build_grounding_model(config: str | Path | Config) -> GroundingNet:
    """A fresh grounding network (random trainable weights; pretrained text encoders loaded) for a config."""
    return GroundingNet(load_config(config))


def grounding_stem(cfg: Config) -> ConvStem:
    """The patch embedding ``GROUNDING.STEM`` names. NanoTrack v3's pretrained body never trains here: it keeps
    the weights it was released with, and only its projection (from zero) and the rest of the network learn."""
    g = cfg.grounding
    if g.stem == "conv":
        return ConvStem(g.stride, g.embed_dim)
    stem = ConvPlusNanoTrackStem(g.stride, g.embed_dim, cfg.data.mean, cfg.data.std)
    stem.pretrained.body.requires_grad_(False)
    stem.pretrained.body_frozen = True
    return stem


def tracker_weights_for(
    model: GroundingNet, tracker_state: dict[str, torch.Tensor], source: str
) -> dict[str, torch.Tensor]:
    """The parts of a trained one-stream tracker that fit ``model``, under ``model``'s names.

    Stem, the first ``depth`` blocks, the final norm and the centre head carry over as they are; the search
    position table is resized to the patch grid. A tracker's features already separate objects from background,
    a better start for grounding than noise. Raises ``CheckpointError`` when the widths or depths do not fit.
    """
    renames = {"backbone.patch_embed.": "stem.", "backbone.norm.": "norm.", "box_head.": "head."}
    renames |= {f"backbone.blocks.{i}.": f"blocks.{i}." for i in range(len(model.blocks))}
    own = model.state_dict()
    picked: dict[str, torch.Tensor] = {}
    for name, tensor in tracker_state.items():
        for old, new in renames.items():
            if name.startswith(old):
                picked[new + name[len(old):]] = tensor
    if "backbone.pos_embed_x" in tracker_state:
        picked["pos_patch"] = resize_grid(tracker_state["backbone.pos_embed_x"], model.side)
    wanted = [name for name in own if name.startswith(("stem.", "norm.", "head.", "blocks."))]
    missing = [name for name in wanted if name not in picked]
    wrong = [name for name, tensor in picked.items() if name in own and tensor.shape != own[name].shape]
    if missing or wrong:
        detail = f"{len(missing)} missing (e.g. {missing[:1]})" if missing else f"shapes differ (e.g. {wrong[:1]})"
        raise CheckpointError(f"{source} does not fit the grounding model: {detail}; use a tracker of the same "
                              f"width ({model.cfg.grounding.embed_dim}) and at least "
                              f"{len(model.blocks)} blocks with a conv stem")
    return {name: tensor for name, tensor in picked.items() if name in own}


def fit_input_size(model: GroundingNet, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A grounder's ``state`` for ``model`` when the two differ only in ``GROUNDING.INPUT_SIZE``: the patch
    position table resized to ``model``'s grid (the one tensor whose shape follows the input size)."""
    table = state.get("pos_patch")
    if table is None or table.shape == model.pos_patch.shape:
        return state
    return {**state, "pos_patch": resize_grid(table, model.side)}


def resize_grid(table: torch.Tensor, side: int) -> torch.Tensor:
    """(1, n*n, C) position table -> (1, side*side, C), bicubic on the grid."""
    n = math.isqrt(table.shape[1])
    grid = table.reshape(1, n, n, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(side, side), mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, side * side, -1)
