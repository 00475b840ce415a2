"""Typed, frozen config tree and its strict YAML loader.

The YAML schema is the official OSTrack experiment schema (``MODEL``, ``DATA``, ``TRAIN``, ``TEST`` with upper-case
keys), so the official experiment files load as they are. Field ``foo_bar`` is written ``FOO_BAR`` in YAML. A few keys
are ours and optional: the backbone sizes (``EMBED_DIM``, ``DEPTH``, ``NUM_HEADS``, ``MLP_RATIO``; the official code
derives them from ``TYPE``) and the ``TRACK`` section (session behaviour). Unknown or ill-typed keys are errors that
name the key and the file.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tracker.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

# Backbone sizes the official builder hard-codes from MODEL.BACKBONE.TYPE: (embed_dim, depth, num_heads, mlp_ratio).
KNOWN_BACKBONES: dict[str, tuple[int, int, int, float]] = {
    "vit_base_patch16_224": (768, 12, 12, 4.0),
    "vit_base_patch16_224_ce": (768, 12, 12, 4.0),
    "vit_large_patch16_224": (1024, 24, 16, 4.0),
    "vit_large_patch16_224_ce": (1024, 24, 16, 4.0),
}
CE_TEMPLATE_RANGES = ("ALL", "CTR_POINT", "CTR_REC")


@dataclass(frozen=True)
class BackboneConfig:
    type: str = "vit_base_patch16_224"
    stride: int = 16
    mid_pe: bool = False
    sep_seg: bool = False
    cat_mode: str = "direct"
    merge_layer: int = 0
    add_cls_token: bool = False
    cls_token_use_mode: str = "ignore"
    ce_loc: tuple[int, ...] = ()
    ce_keep_ratio: tuple[float, ...] = ()
    ce_template_range: str = "ALL"
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    mlp_ratio: float | None = None


@dataclass(frozen=True)
class HeadConfig:
    type: str = "CENTER"
    num_channels: int = 256


@dataclass(frozen=True)
class ModelConfig:
    pretrain_file: str = "mae_pretrain_vit_base.pth"
    extra_merger: bool = False
    return_inter: bool = False
    return_stages: tuple[int, ...] = (2, 5, 8, 11)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)


@dataclass(frozen=True)
class SchedulerConfig:
    type: str = "step"
    decay_rate: float = 0.1


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 0.0001
    weight_decay: float = 0.0001
    epoch: int = 500
    lr_drop_epoch: int = 400
    batch_size: int = 16
    num_worker: int = 8
    optimizer: str = "ADAMW"
    backbone_multiplier: float = 0.1
    giou_weight: float = 2.0
    l1_weight: float = 5.0
    focal_weight: float = 1.0
    freeze_layers: tuple[int, ...] = (0,)
    print_interval: int = 50
    val_epoch_interval: int = 20
    grad_clip_norm: float = 0.1
    amp: bool = False
    ce_start_epoch: int = 20
    ce_warm_epoch: int = 80
    drop_path_rate: float = 0.1
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)


@dataclass(frozen=True)
class DatasetsConfig:
    datasets_name: tuple[str, ...] = ("LASOT", "GOT10K_vottrain")
    datasets_ratio: tuple[float, ...] = (1, 1)
    sample_per_epoch: int = 60000


@dataclass(frozen=True)
class CropConfig:
    """Training crop of one branch: output size in pixels, context factor and augmentation jitter."""

    size: int = 128
    factor: float = 2.0
    center_jitter: float = 0.0
    scale_jitter: float = 0.0
    number: int = 1


@dataclass(frozen=True)
class DataConfig:
    sampler_mode: str = "causal"
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    max_sample_interval: int = 200
    train: DatasetsConfig = field(default_factory=DatasetsConfig)
    val: DatasetsConfig = field(
        default_factory=lambda: DatasetsConfig(("GOT10K_votval",), (1,), 10000)
    )
    search: CropConfig = field(default_factory=lambda: CropConfig(320, 5.0, 4.5, 0.5, 1))
    template: CropConfig = field(default_factory=CropConfig)


@dataclass(frozen=True)
class TestConfig:
    template_factor: float = 2.0
    template_size: int = 128
    search_factor: float = 5.0
    search_size: int = 320
    epoch: int = 500


@dataclass(frozen=True)
class TrackConfig:
    """Session behaviour (ours): when a target counts as lost and when it is recovered.

    ``lost_score``: a step whose score is below this is weak; ``lost_frames`` weak steps in a row mean lost.
    ``recover_score``: a lost target whose score reaches this for ``recover_frames`` steps is recovered.
    ``trail_length``: how many past centres the renderer draws.
    """

    lost_score: float = 0.25
    lost_frames: int = 5
    recover_score: float = 0.4
    recover_frames: int = 2
    trail_length: int = 24


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    test: TestConfig = field(default_factory=TestConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    name: str = ""

    @property
    def backbone(self) -> BackboneConfig:
        return self.model.backbone

    @property
    def template_tokens_side(self) -> int:
        return self.data.template.size // self.backbone.stride

    @property
    def search_tokens_side(self) -> int:
        return self.data.search.size // self.backbone.stride

    def ce_keep_counts(self) -> list[int]:
        """Search tokens kept after each CE block, as the official code computes them (static per config)."""
        kept, counts = self.search_tokens_side**2, []
        for ratio in self.backbone.ce_keep_ratio:
            kept = math.ceil(ratio * kept)
            counts.append(kept)
        return counts

    def to_yaml_dict(self) -> dict[str, Any]:
        return _to_yaml_dict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_yaml_dict(), sort_keys=False)


# ----------------------------------------------------------------------------------------------------------------
# Loading


def available_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A config name from ``configs/`` (``ostrack_vitb256_ce``) or a path to a YAML file."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {text} does not exist; give a YAML path or one of: {_known()}")
        return path
    candidate = CONFIG_DIR / f"{text}.yaml"
    if candidate.is_file():
        return candidate
    raise ConfigError(f"unknown config '{text}'; use one of: {_known()} (or a path to a YAML file)")


def load_config(name_or_path: str | Path | Config) -> Config:
    """Load a config by name or path; a ``Config`` passes through unchanged."""
    if isinstance(name_or_path, Config):
        return name_or_path
    path = resolve_config_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: not a readable YAML file ({_first_line(err)}); fix or replace it") from None
    name = path.stem if path.parent.resolve() == CONFIG_DIR.resolve() else str(path)
    return config_from_dict(raw or {}, source=str(path), name=name)


def config_from_yaml_text(text: str, source: str, name: str = "") -> Config:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: embedded config is not valid YAML ({_first_line(err)})") from None
    return config_from_dict(raw or {}, source=source, name=name)


def config_from_dict(raw: dict[str, Any], source: str = "<dict>", name: str = "") -> Config:
    raw = dict(raw)
    raw.pop("NAME", None)
    cfg = _build(Config, raw, "", source)
    cfg = dataclasses.replace(cfg, name=name)
    return _validated(_with_backbone_sizes(cfg, source), source)


def _with_backbone_sizes(cfg: Config, source: str) -> Config:
    bb = cfg.backbone
    sizes = (bb.embed_dim, bb.depth, bb.num_heads, bb.mlp_ratio)
    if None not in sizes:
        return cfg
    if bb.type not in KNOWN_BACKBONES:
        missing = [k for k, v in zip(("EMBED_DIM", "DEPTH", "NUM_HEADS", "MLP_RATIO"), sizes) if v is None]
        raise ConfigError(
            f"{source}: MODEL.BACKBONE.TYPE '{bb.type}' is not a known backbone, so MODEL.BACKBONE needs "
            f"{', '.join(missing)}; add them or use a TYPE of: {', '.join(KNOWN_BACKBONES)}"
        )
    defaults = KNOWN_BACKBONES[bb.type]
    filled = [d if v is None else v for v, d in zip(sizes, defaults)]
    new_bb = dataclasses.replace(bb, embed_dim=filled[0], depth=filled[1], num_heads=filled[2], mlp_ratio=filled[3])
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, backbone=new_bb))


def _validated(cfg: Config, source: str) -> Config:
    bb = cfg.backbone

    def fail(message: str) -> None:
        raise ConfigError(f"{source}: {message}")

    if bb.embed_dim % bb.num_heads:
        fail(f"MODEL.BACKBONE.EMBED_DIM {bb.embed_dim} is not divisible by NUM_HEADS {bb.num_heads}")
    if len(bb.ce_loc) != len(bb.ce_keep_ratio):
        fail("MODEL.BACKBONE.CE_LOC and CE_KEEP_RATIO must have the same length")
    if any(not 0 <= i < bb.depth for i in bb.ce_loc):
        fail(f"MODEL.BACKBONE.CE_LOC {list(bb.ce_loc)} names blocks outside 0..{bb.depth - 1}")
    if any(not 0 < r <= 1 for r in bb.ce_keep_ratio):
        fail("MODEL.BACKBONE.CE_KEEP_RATIO values must be in (0, 1]")
    if bb.ce_template_range not in CE_TEMPLATE_RANGES:
        fail(f"MODEL.BACKBONE.CE_TEMPLATE_RANGE '{bb.ce_template_range}' is not one of {CE_TEMPLATE_RANGES}")
    if bb.cat_mode != "direct":
        fail(f"MODEL.BACKBONE.CAT_MODE '{bb.cat_mode}' is not supported; use 'direct'")
    if cfg.model.head.type != "CENTER":
        fail(f"MODEL.HEAD.TYPE '{cfg.model.head.type}' is not supported; use 'CENTER'")
    if cfg.model.head.num_channels % 8:
        fail(f"MODEL.HEAD.NUM_CHANNELS {cfg.model.head.num_channels} must be a multiple of 8")
    for label, size in (("DATA.TEMPLATE.SIZE", cfg.data.template.size), ("DATA.SEARCH.SIZE", cfg.data.search.size)):
        if size <= 0 or size % bb.stride:
            fail(f"{label} {size} must be a positive multiple of MODEL.BACKBONE.STRIDE {bb.stride}")
    if len(cfg.data.mean) != 3 or len(cfg.data.std) != 3:
        fail("DATA.MEAN and DATA.STD need three values (R, G, B)")
    return cfg


def _build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'top level'} must be a mapping of keys")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "name"}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        fname = str(key).lower()
        if fname not in fields or str(key) != str(key).upper():
            known = ", ".join(n.upper() for n in fields)
            raise ConfigError(f"{source}: unknown key {prefix}{key}; known keys here: {known}")
        hint = hints[fname]
        if dataclasses.is_dataclass(hint):
            values[fname] = _build(hint, value if value is not None else {}, f"{prefix}{key}.", source)
        else:
            values[fname] = _coerce(value, hint, f"{prefix}{key}", source)
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, key, source)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key} must be a list, got {value!r}")
        return tuple(_coerce(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value))
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    type_name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{source}: {key} must be {type_name}, got {value!r}")


def _to_yaml_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {
            f.name.upper(): _to_yaml_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.name != "name"
        }
    if isinstance(obj, tuple):
        return [_to_yaml_dict(v) for v in obj]
    return obj


def _known() -> str:
    return ", ".join(available_configs()) or "(no configs found)"


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
