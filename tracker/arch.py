"""Which model a weights file holds, read from its tensor shapes alone, and which config builds exactly it.

Only ``tensor.shape`` is read, so every function here also works on a state dict of meta tensors. The head
count is not stored in the weights (it only splits the attention width), and neither is candidate elimination
(CE): the CE and non-CE variants of one size have identical tensors. Both come from the matching config.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from tracker.config import NANOTRACK_STRIDE, Config, available_configs, load_config
from tracker.errors import CheckpointError
from tracker.models.ostrack import build_model

PATCH_KEY = "backbone.patch_embed.proj.weight"
FC1_KEY = "backbone.blocks.0.mlp.fc1.weight"
TEMPLATE_POS_KEY = "backbone.pos_embed_z"
SEARCH_POS_KEY = "backbone.pos_embed_x"
HEAD_KEY = "box_head.conv1_ctr.0.weight"
_BLOCK = re.compile(r"^backbone\.blocks\.(\d+)\.")
_STEM_CONV = re.compile(r"^backbone\.patch_embed\.body\.\d+\.weight$")  # 4-D ones are convs
NANOTRACK_STEM_KEY = "backbone.patch_embed.body.features.0.0.weight"
# State-dict entries that are buffers, not parameters (BatchNorm statistics).
_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class Architecture:
    """The sizes an OSTrack state dict fixes. Template and search sizes are crop sizes in pixels."""

    embed_dim: int
    depth: int
    stride: int
    mlp_ratio: float
    template_size: int
    search_size: int
    head_channels: int
    parameters: int

    def summary(self) -> str:
        return (
            f"ViT embed dim {self.embed_dim}, depth {self.depth}, MLP ratio {self.mlp_ratio:g}, "
            f"stride {self.stride}, template {self.template_size} px, search {self.search_size} px, "
            f"head channels {self.head_channels}, {self.parameters:,} parameters"
        )

    def yaml_keys(self) -> str:
        """The config keys a YAML needs to build this model (NUM_HEADS is free: any divisor of EMBED_DIM)."""
        return (
            f"MODEL.BACKBONE EMBED_DIM {self.embed_dim}, DEPTH {self.depth}, MLP_RATIO {self.mlp_ratio!r}, "
            f"STRIDE {self.stride} and a NUM_HEADS dividing {self.embed_dim}; "
            f"MODEL.HEAD NUM_CHANNELS {self.head_channels}; "
            f"DATA.TEMPLATE.SIZE {self.template_size}; DATA.SEARCH.SIZE {self.search_size}"
        )


def parameter_count(state_dict: Mapping[str, torch.Tensor]) -> int:
    """Elements in the learnable tensors: floating-point entries except the BatchNorm statistics."""
    return sum(
        math.prod(t.shape)
        for key, t in state_dict.items()
        if t.is_floating_point() and not key.endswith(_BUFFER_SUFFIXES)
    )


def read_architecture(state_dict: Mapping[str, torch.Tensor], source: str) -> Architecture:
    """The sizes of the OSTrack model ``state_dict`` belongs to; ``CheckpointError`` if it is not one."""
    try:
        return _architecture(state_dict)
    except ValueError as err:
        raise CheckpointError(f"{source} is not an OSTrack state dict ({err}); check the file") from None


def describe(state_dict: Mapping[str, torch.Tensor]) -> str:
    """One line about the model a state dict holds; never raises."""
    try:
        return _architecture(state_dict).summary()
    except ValueError as err:
        count = parameter_count(state_dict)
        return f"not an OSTrack layout ({len(state_dict)} tensors, {count:,} parameters; {err})"


def infer_config(
    state_dict: Mapping[str, torch.Tensor],
    source: str,
    hint: str | None = None,
    extra_configs: Iterable[str | Path] = (),
) -> Config:
    """The config whose model has exactly the keys and shapes of ``state_dict``.

    Candidates are the configs in ``configs/``, then ``extra_configs`` (YAML files, or folders of them).
    Several configs can fit, because CE and non-CE variants have identical tensors. Then ``hint`` decides: a
    config of that exact name, else the CE or non-CE variant the hint names (an official experiment name such
    as ``vitb_256_mae_ce_32x4_ep300`` has a ``ce`` part; ``vitb_256_mae_32x4_ep300`` names a non-CE ViT).
    Without a telling hint the CE variant wins, because the released OSTrack models are all CE models.
    Raises ``CheckpointError`` naming the inferred sizes when no candidate fits.
    """
    arch = read_architecture(state_dict, source)
    shapes = _shapes(state_dict)
    fitting = [cfg for cfg in _candidates(extra_configs) if _fits(cfg, arch, shapes)]
    if not fitting:
        raise CheckpointError(
            f"no config in configs/ fits {source} ({arch.summary()}); write a YAML with {arch.yaml_keys()} "
            "and pass it with --config"
        )
    return _pick(fitting, hint)


def config_advice(state_dict: Mapping[str, torch.Tensor]) -> str:
    """What to pass so that ``state_dict`` loads: ``use --config NAME``, or the keys a new YAML needs."""
    try:
        arch = _architecture(state_dict)
    except ValueError as err:
        return f"it is not an OSTrack state dict ({err})"
    try:
        return f"use --config {infer_config(state_dict, source='the file').name}"
    except CheckpointError:
        return f"no config in configs/ fits it ({arch.summary()}); write a YAML with {arch.yaml_keys()}"


# ------------------------------------------------------------------------------------------------------------


def _architecture(state: Mapping[str, torch.Tensor]) -> Architecture:
    missing = [k for k in (PATCH_KEY, FC1_KEY, TEMPLATE_POS_KEY, SEARCH_POS_KEY, HEAD_KEY) if k not in state]
    if missing:
        raise ValueError(f"no {', '.join(missing)}")
    patch = tuple(state[PATCH_KEY].shape)
    if len(patch) != 4 or patch[2] != patch[3]:
        raise ValueError(f"{PATCH_KEY} has shape {patch}, expected (dim, 3, k, k)")
    dim, stride = patch[0], _stem_stride(state) or patch[2]
    hidden = state[FC1_KEY].shape[0]
    return Architecture(
        embed_dim=dim,
        depth=len({int(m.group(1)) for k in state if (m := _BLOCK.match(k))}),
        stride=stride,
        mlp_ratio=hidden / dim,
        template_size=_grid_side(state, TEMPLATE_POS_KEY) * stride,
        search_size=_grid_side(state, SEARCH_POS_KEY) * stride,
        head_channels=state[HEAD_KEY].shape[0],
        parameters=parameter_count(state),
    )


def _stem_stride(state: Mapping[str, torch.Tensor]) -> int | None:
    """A conv stem's stride (each of its 3x3 convolutions halves the image), NanoTrack's for its backbone, or None
    for the official patchify."""
    if NANOTRACK_STEM_KEY in state:
        return NANOTRACK_STRIDE
    convs = [k for k, v in state.items() if _STEM_CONV.match(k) and len(v.shape) == 4]
    return 2 ** len(convs) if convs else None


def _grid_side(state: Mapping[str, torch.Tensor], key: str) -> int:
    """Side of the square token grid a positional table covers."""
    shape = tuple(state[key].shape)
    side = math.isqrt(shape[1]) if len(shape) == 3 else 0
    if side == 0 or side * side != shape[1]:
        raise ValueError(f"{key} has shape {shape}, expected (1, side*side, dim)")
    return side


def _shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def _candidates(extra: Iterable[str | Path]) -> list[Config]:
    configs = [load_config(name) for name in available_configs()]
    for item in extra:
        path = Path(item)
        files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]
        configs += [load_config(f) for f in files]
    return configs


def _fits(cfg: Config, arch: Architecture, shapes: dict[str, tuple[int, ...]]) -> bool:
    # The sizes rule out most configs without building anything; the exact key/shape check settles the rest.
    bb = cfg.backbone
    sizes = (bb.embed_dim, bb.depth, bb.stride, cfg.data.template.size, cfg.data.search.size)
    if sizes != (arch.embed_dim, arch.depth, arch.stride, arch.template_size, arch.search_size):
        return False
    if cfg.model.head.num_channels != arch.head_channels:
        return False
    return _model_shapes(cfg) == shapes


@functools.lru_cache(maxsize=16)
def _model_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = build_model(cfg)
    return _shapes(model.state_dict())


def _pick(fitting: list[Config], hint: str | None) -> Config:
    if hint:
        named = [cfg for cfg in fitting if cfg.name == hint]
        if named:
            return named[0]
        wants_ce = _hint_says_ce(hint)
        if wants_ce is not None:
            same = [cfg for cfg in fitting if _is_ce(cfg) == wants_ce]
            if same:
                return same[0]
    ce = [cfg for cfg in fitting if _is_ce(cfg)]
    return (ce or fitting)[0]


def _hint_says_ce(hint: str) -> bool | None:
    """True for a name with a ``ce`` part, False for a ViT name without one, None if it tells nothing."""
    parts = re.split(r"[^a-z0-9]+", hint.lower())
    if "ce" in parts:
        return True
    if any(part.startswith("vit") for part in parts):
        return False
    return None


def _is_ce(cfg: Config) -> bool:
    return bool(cfg.backbone.ce_loc)
