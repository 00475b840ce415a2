"""Pretrained parts of a model to train: a ViT backbone (e.g. MAE's), or NanoTrack v3's backbone as the stem
(``MODEL.BACKBONE.STEM: nanotrack_v3``) with its freeze schedule (``TRAIN.STEM_FREEZE_EPOCH``)."""

from __future__ import annotations

import torch

from tracker.checkpoint import read_checkpoint
from tracker.config import Config
from tracker.errors import CheckpointError
from tracker.models.nanotrack import CHECKPOINT_PREFIX, fill_backbone
from tracker.models.ostrack import OSTrack
from tracker.models.vit import NanoTrackStem


def load_pretrained_backbone(model: OSTrack, path: str) -> str:
    """Load a ViT checkpoint (e.g. MAE's ``{'model': ...}``) into the backbone where names and shapes match,
    then fill the template/search position tables from its 224 table; or, for a NanoTrack stem, NanoTrack v3's
    weights into the stem. Returns a one-line report."""
    state = read_checkpoint(path).state_dict
    stem = nanotrack_stem(model)
    if stem is not None:
        return load_nanotrack_stem(stem, state, path)
    own = model.backbone.state_dict()
    usable = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not usable:
        raise CheckpointError(f"{path} has no tensor that fits the backbone; give a ViT checkpoint of this size")
    model.backbone.load_state_dict(usable, strict=False)
    if "pos_embed" in usable:
        model.backbone.load_pretrain_positions()
    derived = ("pos_embed_z", "pos_embed_x")  # made from pos_embed above, never in a ViT checkpoint
    missing = [k for k in own if k not in usable and k not in derived]
    return f"pretrained backbone: {len(usable)} tensors from {path}; {len(missing)} backbone tensors not in it"


# Where NanoTrack's pretrained body sits: the whole patch embedding (STEM nanotrack_v3), or beside the conv stem
# (STEM conv+nanotrack_v3).
ADDED_STEM_PREFIX = "backbone.patch_embed.pretrained."  # ConvPlusNanoTrackStem's pretrained branch
PRETRAINED_STEM_PREFIXES = ("backbone.patch_embed.body.features.", ADDED_STEM_PREFIX + "body.features.")


def nanotrack_stem(model: OSTrack) -> NanoTrackStem | None:
    """The model's NanoTrack v3 stem, whether it is the patch embedding or a part of it; None without one."""
    embed = model.backbone.patch_embed
    if isinstance(embed, NanoTrackStem):
        return embed
    part = getattr(embed, "pretrained", None)
    return part if isinstance(part, NanoTrackStem) else None


def load_nanotrack_stem(stem: NanoTrackStem, state: dict[str, torch.Tensor], path: str) -> str:
    """NanoTrack v3's ``backbone.features.*`` tensors into the stem's pretrained body, all of them or none."""
    fill_backbone(stem.body, state, path)
    count = sum(1 for key in state if key.startswith(CHECKPOINT_PREFIX))
    return f"pretrained stem: NanoTrack v3's backbone, {count} tensors from {path}"


def is_stem_parameter(name: str) -> bool:
    """Whether a parameter belongs to a pretrained stem's body (its projection trains with the backbone)."""
    return name.startswith(PRETRAINED_STEM_PREFIXES)


def freeze_stem_while_scheduled(model: OSTrack, cfg: Config, step: int, steps_per_epoch: int) -> None:
    """A pretrained stem keeps its loaded weights for ``TRAIN.STEM_FREEZE_EPOCH`` epochs (for good with
    ``STEM_MULTIPLIER`` 0), then trains."""
    stem = nanotrack_stem(model)
    if stem is not None:
        thawed = step >= cfg.train.stem_freeze_epoch * steps_per_epoch and cfg.train.stem_multiplier > 0
        stem.body_frozen = not thawed
