"""The model and optimiser a run starts with: whole-model weights (``--init``), a pretrained backbone or stem, or
scratch; AdamW with OSTrack's parameter groups (head, backbone, pretrained stem)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from tracker.config import Config
from tracker.errors import InputError
from tracker.models.ostrack import OSTrack, build_model
from tracker.models.vit import ConvPlusNanoTrackStem
from tracker.resolve import load_state_into, open_weights
from tracker.train.distributed import DistInfo
from tracker.train.options import TrainOptions
from tracker.train.pretrained import ADDED_STEM_PREFIX, is_stem_parameter, load_pretrained_backbone

# Parameters the forward pass never uses: the 224-pixel pretrain position table and cls token only seed the
# template/search tables. Frozen so DDP does not wait for their gradients.
UNUSED_PARAMETERS = ("backbone.pos_embed", "backbone.cls_token")


def build_training_model(options: TrainOptions, info: DistInfo, log: Callable[[str], None]) -> OSTrack:
    """The model to train, on its device in training mode; ``log`` gets one line on where its weights came from."""
    cfg = options.config
    model = build_model(cfg)
    if options.init:
        if options.pretrained and not isinstance(model.backbone.patch_embed, ConvPlusNanoTrackStem):
            raise InputError(
                "--init with --pretrained adds a pretrained stem to a trained model, which needs "
                "MODEL.BACKBONE.STEM conv+nanotrack_v3; otherwise give --init or --pretrained, not both"
            )
        state = open_weights(options.init).state_dict
        if options.pretrained:
            state = _with_pretrained_stem(model, state, options, log)
        load_state_into(model, state, options.init, cfg)
        log(f"initial weights: the whole model from {options.init}")
        return _trainable(model).to(info.device).train()
    pretrained = options.pretrained or _existing_pretrain_file(cfg)
    if pretrained:
        log(load_pretrained_backbone(model, pretrained))
    elif cfg.model.pretrain_file:
        log(f"note: MODEL.PRETRAIN_FILE {cfg.model.pretrain_file} not found; training the backbone from scratch")
    return _trainable(model).to(info.device).train()


def _with_pretrained_stem(
    model: OSTrack, state: dict[str, torch.Tensor], options: TrainOptions, log: Callable[[str], None]
) -> dict[str, torch.Tensor]:
    """``state`` completed with the pretrained stem a model adds to the one ``--init`` was trained as (STEM
    conv+nanotrack_v3 on a conv-stem model): NanoTrack's weights from ``--pretrained`` and the stem's own fresh
    tensors (its projection starts at zero). Every other tensor must come from ``--init``."""
    log(load_pretrained_backbone(model, options.pretrained))
    if any(key.startswith(ADDED_STEM_PREFIX) for key in state):
        raise InputError(f"{options.init} already has a pretrained stem; drop --pretrained")
    added = {key: value for key, value in model.state_dict().items() if key.startswith(ADDED_STEM_PREFIX)}
    return state | added


def _trainable(model: OSTrack) -> OSTrack:
    for name, param in model.named_parameters():
        if name in UNUSED_PARAMETERS:
            param.requires_grad_(False)
    return model


def _existing_pretrain_file(cfg: Config) -> str | None:
    name = cfg.model.pretrain_file
    for candidate in (Path(name), Path("pretrained_models") / name, Path("weights") / name):
        if name and candidate.is_file():
            return str(candidate)
    return None


def build_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """AdamW with the head at ``TRAIN.LR``, the backbone at ``LR * BACKBONE_MULTIPLIER`` (OSTrack's groups) and a
    pretrained stem's body at that times ``STEM_MULTIPLIER``."""
    if cfg.train.optimizer.upper() != "ADAMW":
        raise InputError(f"TRAIN.OPTIMIZER '{cfg.train.optimizer}' is not supported; use ADAMW")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    head = [p for n, p in named if "backbone" not in n]
    stem = [p for n, p in named if is_stem_parameter(n)]
    backbone = [p for n, p in named if "backbone" in n and not is_stem_parameter(n)]
    backbone_lr = cfg.train.lr * cfg.train.backbone_multiplier
    groups = [
        {"params": head, "lr": cfg.train.lr},
        {"params": backbone, "lr": backbone_lr},
        {"params": stem, "lr": backbone_lr * cfg.train.stem_multiplier},
    ]
    return torch.optim.AdamW(groups, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
