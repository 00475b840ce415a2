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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tracker.errors import ConfigError, first_line

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

# Backbone sizes the official builder hard-codes from MODEL.BACKBONE.TYPE: (embed_dim, depth, num_heads, mlp_ratio).
KNOWN_BACKBONES: dict[str, tuple[int, int, int, float]] = {
    "vit_base_patch16_224": (768, 12, 12, 4.0),
    "vit_base_patch16_224_ce": (768, 12, 12, 4.0),
    "vit_large_patch16_224": (1024, 24, 16, 4.0),
    "vit_large_patch16_224_ce": (1024, 24, 16, 4.0),
}
CE_TEMPLATE_RANGES = ("ALL", "CTR_POINT", "CTR_REC")
# How pixels become tokens: "patch" is the official 16x16 linear patchify; "conv" a stack of stride-2 3x3
# convolutions (early convolutions, Xiao et al. 2021), which a ViT trained from scratch on little data needs;
# "nanotrack_v3" NanoTrack v3's pretrained MobileNetV3 backbone (stride 16, 96 channels) and a 1x1 projection.
STEMS = ("patch", "conv", "nanotrack_v3")
NANOTRACK_STRIDE = 16  # the stride NanoTrack v3's backbone was built and trained with


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
    stem: str = "patch"


@dataclass(frozen=True)
class HeadConfig:
    type: str = "CENTER"
    num_channels: int = 256


@dataclass(frozen=True)
class ModelConfig:
    """``template_context_gain`` (ours; 1.0 is official): the template's pixels outside the target box are pulled
    this far towards the mean colour (in normalised units, a multiplication), at training and at test time alike.
    It tells a model which part of the template is the target, so the target's shape (its aspect) is in the input
    instead of having to be read from the object's outline."""

    pretrain_file: str = "mae_pretrain_vit_base.pth"
    extra_merger: bool = False
    return_inter: bool = False
    return_stages: tuple[int, ...] = (2, 5, 8, 11)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    template_context_gain: float = 1.0


@dataclass(frozen=True)
class SchedulerConfig:
    """LR schedule. ``type``: ``step`` (official: times ``decay_rate`` every ``TRAIN.LR_DROP_EPOCH`` epochs) or
    ``cosine`` (ours: half a cosine from the base LR to 0 over ``TRAIN.EPOCH``). ``warmup_epoch`` (ours, default 0 as
    in the official recipe): linear LR warm-up from 0 over this many epochs (fractions allowed)."""

    type: str = "step"
    decay_rate: float = 0.1
    warmup_epoch: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    """The official training keys plus ours for a pretrained stem (MODEL.BACKBONE.STEM nanotrack_v3):
    ``stem_freeze_epoch``, the epochs during which the stem's weights stay as loaded, and ``stem_multiplier``, the
    stem's LR as a fraction of the backbone's once it trains. The stem's BatchNorm statistics are never updated:
    batches of 16 pairs would only blur the ones learnt on millions of frames."""

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
    stem_freeze_epoch: float = 0.0
    stem_multiplier: float = 1.0
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)


@dataclass(frozen=True)
class DatasetsConfig:
    datasets_name: tuple[str, ...] = ("LASOT", "GOT10K_vottrain")
    datasets_ratio: tuple[float, ...] = (1, 1)
    sample_per_epoch: int = 60000


@dataclass(frozen=True)
class CropConfig:
    """Training crop of one branch: output size in pixels, context factor and augmentation jitter.

    Ours, off by default: with ``undersize_prob`` the box the crop is cut around is also shrunk, its side times a
    factor drawn log-uniformly from [``undersize_min``, 1], the state a tracker is in once its box has shrunk
    below the target; trained on it, the head learns to grow the box back instead of shrinking it further."""

    size: int = 128
    factor: float = 2.0
    center_jitter: float = 0.0
    scale_jitter: float = 0.0
    number: int = 1
    undersize_prob: float = 0.0
    undersize_min: float = 0.4


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation (ours: ``DATA.AUGMENT``). The defaults are the official OSTrack recipe: grayscale on
    both frames (``gray_prob``), a flip of both frames (``joint_flip_prob``), then per crop a brightness factor in
    1 +- ``brightness_jitter`` and a flip (``crop_flip_prob``). The rest is off by default and used by the bundled
    model: saturation/contrast jitter (``color_jitter``), Gaussian and motion blur, an occluder over part of the
    target, up to ``max_distractors`` copies of other targets pasted into the search crop, and an affine warp that
    turns a still photo into a pseudo next frame (``warp_prob``, for still-image pairs only). With
    ``random_target_prob`` a pair's target is instead a random rectangle of any training frame, its search frame
    a warp of the same frame: self-supervised pairs that teach matching of anything, not just labelled objects.
    With ``lookalike_prob`` a photo pair's distractors are instead other objects of the target's label from the
    same photo (hard negatives). With ``small_target_prob`` both frames of a pair are shrunk until the target
    is a few pixels across, as drones see cars and people; with ``low_light_prob`` both are darkened and given
    sensor noise, as at night."""

    gray_prob: float = 0.05
    joint_flip_prob: float = 0.5
    crop_flip_prob: float = 0.5
    brightness_jitter: float = 0.2
    color_jitter: float = 0.0
    blur_prob: float = 0.0
    motion_blur_prob: float = 0.0
    occluder_prob: float = 0.0
    distractor_prob: float = 0.0
    random_target_prob: float = 0.0
    max_distractors: int = 2
    lookalike_prob: float = 0.0
    warp_prob: float = 0.0
    small_target_prob: float = 0.0
    low_light_prob: float = 0.0


@dataclass(frozen=True)
class DataConfig:
    sampler_mode: str = "causal"
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    max_sample_interval: int = 200
    train: DatasetsConfig = field(default_factory=DatasetsConfig)
    val: DatasetsConfig = field(default_factory=lambda: DatasetsConfig(("GOT10K_votval",), (1,), 10000))
    search: CropConfig = field(default_factory=lambda: CropConfig(320, 5.0, 4.5, 0.5, 1))
    template: CropConfig = field(default_factory=CropConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass(frozen=True)
class TestConfig:
    """Tracking-time settings (official keys) plus ours: ``ce_keep_ratio``, the candidate-elimination keep ratios
    the tracker uses, one per MODEL.BACKBONE.CE_LOC block; empty means the trained ones (MODEL.BACKBONE.CE_KEEP_RATIO),
    as the official tracker does. Training never reads it."""

    template_factor: float = 2.0
    template_size: int = 128
    search_factor: float = 5.0
    search_size: int = 320
    epoch: int = 500
    ce_keep_ratio: tuple[float, ...] = ()


@dataclass(frozen=True)
class ScaleFilterConfig:
    """The online scale filter of ``tracker.scale_filter`` (ours; DSST's published settings as defaults).

    ``weight``: the share, in log size, of each step's box size that comes from the filter (0: off, the size is the
    network's; 1: the filter's, at the first box's aspect). ``scales`` rungs ``step`` apart in side; a Gaussian
    label of ``sigma_factor * sqrt(scales)`` rungs; ``learning_rate`` per frame; ``reg`` the filter's
    regulariser; the target is sampled at ``model_area`` pixels.
    """

    weight: float = 0.0
    scales: int = 33
    step: float = 1.02
    sigma_factor: float = 0.25
    learning_rate: float = 0.025
    reg: float = 0.01
    model_area: int = 512


@dataclass(frozen=True)
class TrackConfig:
    """Session behaviour (ours): when a target counts as lost and when it is recovered.

    ``lost_score``: a step whose score is below this is weak; ``lost_frames`` weak steps in a row mean lost.
    ``recover_score``: a lost target whose score reaches this for ``recover_frames`` steps is recovered.
    ``trail_length``: how many past centres the renderer draws.
    ``size_update``: the share of each step's predicted size that the tracked box takes (the rest stays from the
    previous box). 1.0 is OSTrack's own update, the size as predicted; a small model trained from scratch has a
    size bias that compounds from frame to frame, and a partial update damps it.
    ``clip_margin``: the fewest pixels of width and height the tracked box keeps, and keeps inside the frame.
    OSTrack's own clip uses 10; below that, a target smaller than 10 px can be boxed at its own size.
    ``scale_penalty``: 0 is OSTrack's own peak choice. Above 0, each candidate's score is weighed down by how much
    its predicted size and aspect differ from the previous box, ``exp(-k * (r * s - 1))`` with ``r`` and ``s`` the
    aspect and side ratios (each 1 or more), as the SiamRPN family does; the peak's penalty also scales that step's
    size update, so an abrupt change of size needs an abrupt change of evidence.
    ``flip_average``: each step also runs the mirrored template and search and averages the two outputs (mirrored
    back); twice the network cost.
    ``scale_filter``: an online scale filter that sets part or all of each step's size (off by default).
    """

    lost_score: float = 0.25
    lost_frames: int = 5
    recover_score: float = 0.4
    recover_frames: int = 2
    trail_length: int = 24
    size_update: float = 1.0
    clip_margin: int = 10
    scale_penalty: float = 0.0
    flip_average: bool = False
    scale_filter: ScaleFilterConfig = field(default_factory=ScaleFilterConfig)


@dataclass(frozen=True)
class GroundingTrainConfig:
    """Grounding training (ours): schedule, data mix and loss weights of ``tracker.train.grounding_trainer``.

    Ratios are the chance that a sample comes from synthetic scenes / real sequences (the rest are pseudo-sequences
    cut from labelled photographs); ``negative_ratio`` is the chance its caption names something absent.
    """

    steps: int = 3000
    batch_size: int = 8
    clip_length: int = 4
    lr: float = 0.0005
    weight_decay: float = 0.05
    warmup_steps: int = 100
    grad_clip_norm: float = 1.0
    synthetic_ratio: float = 0.35
    sequence_ratio: float = 0.3
    negative_ratio: float = 0.25
    focal_weight: float = 1.0
    giou_weight: float = 2.0
    l1_weight: float = 5.0
    presence_weight: float = 1.0
    event_weight: float = 0.5
    checkpoint_interval: int = 200
    log_interval: int = 20
    seed: int = 0


@dataclass(frozen=True)
class GroundingConfig:
    """Streaming text grounding (ours): the text encoder, the grounding network, and how results become events.

    ``text_encoder``: ``minilm`` (the packaged all-MiniLM-L6-v2, frozen), ``hf`` (a Hugging Face folder at
    ``text_path``: BERT, RoBERTa or a CLIP text tower, frozen) or ``hashed`` (small trainable fallback with
    ``text_buckets`` hashed word/trigram embeddings and ``text_layers`` transformer layers). Queries are cut to
    ``max_tokens`` tokens. Frames are letterboxed to ``input_size`` squares; ``memory_length`` past-frame state
    tokens are kept (FIFO). Candidates: up to ``top_k`` heat-map peaks (``peak_kernel`` local maxima) scoring at
    least ``candidate_score``. Events: presence above ``presence_on`` (below ``presence_off``) for
    ``event_frames`` frames in a row starts (ends) the target. Session: a target seen for ``handoff_frames``
    frames is handed to the box tracker; grounding re-checks every ``recheck_interval`` frames and re-targets
    when its best box overlaps the tracked one by less than ``retarget_iou``; up to ``max_targets`` tracks (the
    best match, and further matches scoring at least ``extra_target_score``) keep
    identities by assignment with cost ``(1 - appearance_weight) * (1 - IoU) + appearance_weight * (1 - cos)``,
    pairs costing more than ``match_cost_limit`` left unmatched.
    """

    text_encoder: str = "minilm"
    text_path: str = ""
    max_tokens: int = 24
    text_buckets: int = 8192
    text_layers: int = 2
    input_size: int = 256
    stride: int = 16
    embed_dim: int = 128
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0
    memory_length: int = 8
    ce_loc: tuple[int, ...] = (2,)
    ce_keep_ratio: tuple[float, ...] = (0.7,)
    head_channels: int = 64
    top_k: int = 5
    candidate_score: float = 0.25
    peak_kernel: int = 3
    presence_on: float = 0.6
    presence_off: float = 0.4
    event_frames: int = 3
    handoff_frames: int = 3
    recheck_interval: int = 15
    retarget_iou: float = 0.3
    max_targets: int = 4
    extra_target_score: float = 0.5
    match_cost_limit: float = 0.8
    appearance_weight: float = 0.3
    train: GroundingTrainConfig = field(default_factory=GroundingTrainConfig)


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    test: TestConfig = field(default_factory=TestConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    grounding: GroundingConfig = field(default_factory=GroundingConfig)
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

    @property
    def tracking_keep_ratios(self) -> tuple[float, ...]:
        """The CE keep ratios the built model applies when no rate is passed: TEST.CE_KEEP_RATIO, else the trained
        MODEL.BACKBONE.CE_KEEP_RATIO. (Training passes its scheduled rate explicitly.)"""
        return self.test.ce_keep_ratio or self.backbone.ce_keep_ratio

    def ce_keep_counts(self) -> list[int]:
        """Search tokens kept after each CE block when tracking, computed as the official code does (static)."""
        kept, counts = self.search_tokens_side**2, []
        for ratio in self.tracking_keep_ratios:
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
        raise ConfigError(f"{path}: not a readable YAML file ({first_line(err)}); fix or replace it") from None
    name = path.stem if path.parent.resolve() == CONFIG_DIR.resolve() else str(path)
    return config_from_dict(raw or {}, source=str(path), name=name)


def config_from_yaml_text(text: str, source: str, name: str = "") -> Config:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: embedded config is not valid YAML ({first_line(err)})") from None
    return config_from_dict(raw or {}, source=source, name=name)


def config_from_dict(raw: dict[str, Any], source: str = "<dict>", name: str = "") -> Config:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys (MODEL, DATA, TEST, ...), not a list")
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
        missing = [
            k for k, v in zip(("EMBED_DIM", "DEPTH", "NUM_HEADS", "MLP_RATIO"), sizes, strict=False) if v is None
        ]
        raise ConfigError(
            f"{source}: MODEL.BACKBONE.TYPE '{bb.type}' is not a known backbone, so MODEL.BACKBONE needs "
            f"{', '.join(missing)}; add them or use a TYPE of: {', '.join(KNOWN_BACKBONES)}"
        )
    defaults = KNOWN_BACKBONES[bb.type]
    filled = [d if v is None else v for v, d in zip(sizes, defaults, strict=False)]
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
    if bb.stem not in STEMS:
        fail(f"MODEL.BACKBONE.STEM '{bb.stem}' is not one of {STEMS}")
    if bb.stem == "conv" and (bb.stride & (bb.stride - 1) or bb.stride < 2):
        fail(f"MODEL.BACKBONE.STEM conv needs a STRIDE that is a power of two, not {bb.stride}")
    if bb.stem == "nanotrack_v3" and bb.stride != NANOTRACK_STRIDE:
        fail(f"MODEL.BACKBONE.STEM nanotrack_v3 has stride {NANOTRACK_STRIDE}; set STRIDE to it, not {bb.stride}")
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
    if not all(math.isfinite(v) for v in cfg.data.mean) or not all(math.isfinite(v) and v > 0 for v in cfg.data.std):
        fail("DATA.MEAN values must be finite numbers and DATA.STD values finite and above 0")
    for label, crop in (("DATA.TEMPLATE", cfg.data.template), ("DATA.SEARCH", cfg.data.search)):
        if not 0 <= crop.undersize_prob <= 1:  # also false for NaN
            fail(f"{label}.UNDERSIZE_PROB must be a probability between 0 and 1, got {crop.undersize_prob}")
        if not 0 < crop.undersize_min <= 1:
            fail(f"{label}.UNDERSIZE_MIN must be a side factor above 0 and at most 1, got {crop.undersize_min}")
    if not (math.isfinite(cfg.train.stem_freeze_epoch) and cfg.train.stem_freeze_epoch >= 0):
        fail(f"TRAIN.STEM_FREEZE_EPOCH must be 0 or more epochs, got {cfg.train.stem_freeze_epoch}")
    if not (math.isfinite(cfg.train.stem_multiplier) and cfg.train.stem_multiplier >= 0):
        fail(f"TRAIN.STEM_MULTIPLIER must be 0 (a stem that never trains) or more, got {cfg.train.stem_multiplier}")
    _validate_test_and_track(cfg, fail)
    _validate_grounding(cfg.grounding, fail)
    return cfg


def _validate_test_and_track(cfg: Config, fail) -> None:
    """The tracker's crop sizes must be what the model was built for; thresholds must be usable numbers."""
    test, track = cfg.test, cfg.track
    for label, size, built in (
        ("TEST.TEMPLATE_SIZE", test.template_size, cfg.data.template.size),
        ("TEST.SEARCH_SIZE", test.search_size, cfg.data.search.size),
    ):
        if size != built:
            fail(f"{label} {size} differs from the model's input size {built} (DATA.*.SIZE); make them equal")
    if test.ce_keep_ratio and len(test.ce_keep_ratio) != len(cfg.backbone.ce_loc):
        fail(f"TEST.CE_KEEP_RATIO needs one ratio per MODEL.BACKBONE.CE_LOC block ({len(cfg.backbone.ce_loc)})")
    if any(not 0 < r < 1 for r in test.ce_keep_ratio):
        fail("TEST.CE_KEEP_RATIO values must be above 0 and below 1 (leave it out to track with the trained ratios)")
    for label, factor in (("TEST.TEMPLATE_FACTOR", test.template_factor), ("TEST.SEARCH_FACTOR", test.search_factor)):
        if not (math.isfinite(factor) and factor > 0):
            fail(f"{label} must be a number above 0, got {factor}")
    for label, score in (("TRACK.LOST_SCORE", track.lost_score), ("TRACK.RECOVER_SCORE", track.recover_score)):
        if not 0 <= score <= 1:  # also false for NaN
            fail(f"{label} must be a score between 0 and 1, got {score}")
    for label, frames in (("TRACK.LOST_FRAMES", track.lost_frames), ("TRACK.RECOVER_FRAMES", track.recover_frames)):
        if frames < 1:
            fail(f"{label} must be at least 1, got {frames}")
    if track.trail_length < 0:
        fail(f"TRACK.TRAIL_LENGTH must be 0 or more, got {track.trail_length}")
    if not 0 < track.size_update <= 1:
        fail(f"TRACK.SIZE_UPDATE must be above 0 and at most 1, got {track.size_update}")
    if not 0 <= cfg.model.template_context_gain <= 1:
        fail(f"MODEL.TEMPLATE_CONTEXT_GAIN must be from 0 to 1, got {cfg.model.template_context_gain}")
    if track.scale_penalty < 0:
        fail(f"TRACK.SCALE_PENALTY must be 0 (off) or more, got {track.scale_penalty}")
    if track.clip_margin < 1:
        fail(f"TRACK.CLIP_MARGIN must be 1 pixel or more, got {track.clip_margin}")
    _validate_scale_filter(track.scale_filter, fail)


def _validate_scale_filter(sf: ScaleFilterConfig, fail) -> None:
    if not 0 <= sf.weight <= 1:
        fail(f"TRACK.SCALE_FILTER.WEIGHT must be from 0 (off) to 1, got {sf.weight}")
    if sf.scales < 3 or sf.scales % 2 == 0:
        fail(f"TRACK.SCALE_FILTER.SCALES must be an odd number of 3 or more, got {sf.scales}")
    if not (math.isfinite(sf.step) and sf.step > 1):
        fail(f"TRACK.SCALE_FILTER.STEP must be a factor above 1, got {sf.step}")
    if not 0 < sf.learning_rate <= 1:
        fail(f"TRACK.SCALE_FILTER.LEARNING_RATE must be above 0 and at most 1, got {sf.learning_rate}")
    if not (sf.sigma_factor > 0 and sf.reg > 0 and sf.model_area >= 64):
        fail("TRACK.SCALE_FILTER.SIGMA_FACTOR and REG must be above 0, and MODEL_AREA 64 pixels or more")


TEXT_ENCODERS = ("minilm", "hf", "hashed")


def _validate_grounding(g: GroundingConfig, fail) -> None:
    if g.text_encoder not in TEXT_ENCODERS:
        fail(f"GROUNDING.TEXT_ENCODER '{g.text_encoder}' is not one of {TEXT_ENCODERS}")
    if g.text_encoder == "hf" and not g.text_path:
        fail("GROUNDING.TEXT_ENCODER 'hf' needs GROUNDING.TEXT_PATH (a Hugging Face model folder)")
    if g.embed_dim % g.num_heads:
        fail(f"GROUNDING.EMBED_DIM {g.embed_dim} is not divisible by NUM_HEADS {g.num_heads}")
    if g.stride != 16 or g.input_size <= 0 or g.input_size % g.stride:
        fail(f"GROUNDING.INPUT_SIZE {g.input_size} must be a positive multiple of STRIDE, and STRIDE must be 16")
    if len(g.ce_loc) != len(g.ce_keep_ratio):
        fail("GROUNDING.CE_LOC and CE_KEEP_RATIO must have the same length")
    if any(not 0 <= i < g.depth for i in g.ce_loc) or any(not 0 < r <= 1 for r in g.ce_keep_ratio):
        fail(f"GROUNDING.CE_LOC must name blocks in 0..{g.depth - 1} and CE_KEEP_RATIO values be in (0, 1]")
    if g.head_channels % 8:
        fail(f"GROUNDING.HEAD_CHANNELS {g.head_channels} must be a multiple of 8")
    positive = ("max_tokens", "memory_length", "top_k", "event_frames", "handoff_frames", "recheck_interval")
    for key in positive:
        if getattr(g, key) < 1:
            fail(f"GROUNDING.{key.upper()} must be at least 1")
    if not 0 <= g.presence_off <= g.presence_on <= 1:
        fail("GROUNDING.PRESENCE_OFF must not exceed PRESENCE_ON, both in 0..1")


def parse_overrides(entries: list[str], source: str = "--set") -> dict[str, str]:
    """``["TEST.SEARCH_FACTOR=3.5", ...]`` as a mapping for ``with_overrides``."""
    overrides = {}
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{source} '{entry}' must look like KEY=VALUE, e.g. DATA.SEARCH.SCALE_JITTER=0.5")
        overrides[key.strip()] = value.strip()
    return overrides


def with_overrides(cfg: Config, overrides: Mapping[str, str] | None, source: str = "overrides") -> Config:
    """``cfg`` with dotted keys replaced (``{"TEST.SEARCH_FACTOR": "3.5"}``); values are YAML (``[0.9, 0.9]`` is a
    list). The result is validated like a file, so an unknown key or a bad value is one ``ConfigError`` line.
    With no overrides, ``cfg`` itself."""
    if not overrides:
        return cfg
    raw = cfg.to_yaml_dict()
    for dotted, text in overrides.items():
        *parents, leaf = dotted.split(".")
        node = raw
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf not in node:
            raise ConfigError(f"{source}: unknown key {dotted}; use a dotted config key such as TEST.SEARCH_FACTOR")
        try:
            node[leaf] = yaml.safe_load(text)
        except yaml.YAMLError:
            message = f"{source}: {dotted}={text} is not a readable value; give a number, a word or a [list]"
            raise ConfigError(message) from None
    return config_from_dict(raw, source=source, name=cfg.name)


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
    elif hint is str and isinstance(value, str):
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
