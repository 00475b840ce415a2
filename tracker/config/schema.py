"""The config tree: typed, frozen dataclasses, one per section of the YAML.

The YAML schema is the official OSTrack experiment schema (``MODEL``, ``DATA``, ``TRAIN``, ``TEST`` with upper-case
keys), so the official experiment files load as they are. Field ``foo_bar`` is written ``FOO_BAR`` in YAML. A few keys
are ours and optional: the backbone sizes (``EMBED_DIM``, ``DEPTH``, ``NUM_HEADS``, ``MLP_RATIO``; the official code
derives them from ``TYPE``) and the ``TRACK`` section (session behaviour). Reading YAML into this tree is
``tracker.config.loading``; the checks a whole config must pass are ``tracker.config.validation``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import yaml

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
STEMS = ("patch", "conv", "nanotrack_v3", "conv+nanotrack_v3")
NANOTRACK_STRIDE = 16  # the stride NanoTrack v3's backbone was built and trained with
TEXT_ENCODERS = ("minilm", "hf", "hashed")  # GROUNDING.TEXT_ENCODER choices
GROUNDING_STEMS = ("conv", "conv+nanotrack_v3")  # GROUNDING.STEM choices


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
    batches of 16 pairs would only blur the ones learnt on millions of frames.

    ``distill_weight`` > 0 adds that times the binary cross-entropy between the student's score map and NanoTrack
    v3's target probabilities on the same crops (``tracker.train.distill``), read from ``distill_teacher``, the
    released ``nanotrack_v3.safetensors``."""

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
    distill_weight: float = 0.0
    distill_teacher: str = ""
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
class PresenceConfig:
    """How the tracker's score becomes the probability that the target is in the picture (ours; ``tracker.presence``):
    ``sigmoid(score_weight * peak + colour_weight * colour + bias)``, where ``peak`` is the score map's peak and
    ``colour`` the similarity (0..1) of the box's colours to the target's: at init, or their running average over
    confident steps (presence at least ``TRACK.RECOVER_SCORE``), which moves ``colour_update`` of the way to each
    (0: the colours at init only). Fitted per model by ``benchmarks/calibrate_presence.py`` on training footage;
    the defaults are the first bundled model's, and a weights file carries its own.
    """

    score_weight: float = 9.567
    colour_weight: float = 9.062
    bias: float = -10.24
    colour_update: float = 0.05


@dataclass(frozen=True)
class RedetectConfig:
    """Re-detection while a target is lost (ours): beside the tracker's own step, crops that tile the whole frame
    at the target's last size, and crops at the places most like it in colour, are scored against the stored
    template.

    ``enabled``: search the frame while lost (off: only the tracker's own step can find the target again).
    ``batch``: crops scored per lost frame in one batched forward (static): the tracker's own search crop, one
    around the candidate under watch if there is one, the rest shared between colour places and the next tiles in
    turn (1: the tracker's own crop only); a lost step costs less than this many normal steps.
    ``tile_step``: the distance between neighbouring tiles as a share of a crop's side (below 1: they overlap).
    ``colour_search``: half the crops after the candidate's (the odd one on every other lost frame) go to the
    places whose colours are most like the target's at init (``tracker.colour_search``), the rest to the tiles;
    ``colour_contrast``: a place counts only if it holds the target's colours this many times as densely as the
    frame does on average (else its crop goes to a tile); ``colour_memory``: a place looked at is not chosen by
    colour again for this many lost frames, so that the search moves on from a look-alike.
    A crop whose presence reaches ``TRACK.RECOVER_SCORE`` becomes the candidate under watch; the target is found
    again when the candidate, or the tracker's own step, holds that for ``TRACK.RECOVER_FRAMES`` frames in a row.
    """

    enabled: bool = True
    batch: int = 2
    tile_step: float = 0.5
    colour_search: bool = True
    colour_contrast: float = 2.0
    colour_memory: int = 10


@dataclass(frozen=True)
class TrackConfig:
    """Session behaviour (ours): when a target counts as lost and when it is recovered.

    The score these thresholds apply to is the target's presence, the calibrated probability that it is in the
    picture (``presence``, ``tracker.presence``), not the raw score-map peak.
    ``lost_score``: a step whose presence is below this is weak; ``lost_frames`` weak steps in a row mean lost.
    ``recover_score``: a lost target whose presence reaches this for ``recover_frames`` steps is recovered.
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
    ``max_targets``: how many box-started targets one session follows at once (all step in one batched forward).
    ``presence``: the calibration of the score (``PresenceConfig``); ``redetect``: the search for a lost target
    (``RedetectConfig``).
    """

    lost_score: float = 0.4
    lost_frames: int = 2
    recover_score: float = 0.6
    recover_frames: int = 3
    trail_length: int = 24
    size_update: float = 1.0
    clip_margin: int = 10
    scale_penalty: float = 0.0
    flip_average: bool = False
    scale_filter: ScaleFilterConfig = field(default_factory=ScaleFilterConfig)
    max_targets: int = 8
    presence: PresenceConfig = field(default_factory=PresenceConfig)
    redetect: RedetectConfig = field(default_factory=RedetectConfig)


@dataclass(frozen=True)
class GroundingTrainConfig:
    """Grounding training (ours): schedule, data mix and loss weights of ``tracker.train_grounding``.

    Ratios are the chance that a sample comes from synthetic scenes / real sequences (the rest are pseudo-sequences
    cut from labelled photographs); ``negative_ratio`` is the chance its caption names something absent, and
    ``contrast_ratio`` the chance that a photo's absent caption differs from the truth in one attribute only
    (colour: 'the red car' where every car is measured white or grey); ``foreign_ratio`` the chance that an absent
    caption is another training clip's full description (of a kind that cannot be in the scene).
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
    contrast_ratio: float = 0.0
    foreign_ratio: float = 0.0
    focal_weight: float = 1.0
    giou_weight: float = 2.0
    l1_weight: float = 5.0
    presence_weight: float = 1.0
    event_weight: float = 0.5
    checkpoint_interval: int = 200
    log_interval: int = 20
    seed: int = 0


def shapes_network(default: Any) -> Any:
    """A ``GroundingConfig`` field the network is built from: weights fix it, so run-time settings may not change
    it (``grounding_network_keys``)."""
    return field(default=default, metadata={"shapes_network": True})


@dataclass(frozen=True)
class GroundingConfig:
    """Streaming text grounding (ours): the text encoder, the grounding network, and how results become events.

    ``text_encoder``: ``minilm`` (the packaged all-MiniLM-L6-v2, frozen), ``hf`` (a Hugging Face folder at
    ``text_path``: BERT, RoBERTa or a CLIP text tower, frozen) or ``hashed`` (small trainable fallback with
    ``text_buckets`` hashed word/trigram embeddings and ``text_layers`` transformer layers). Queries are cut to
    ``max_tokens`` tokens. Frames are letterboxed to ``input_size`` squares and embedded by ``stem``: ``conv`` (the
    tracker's conv stem) or ``conv+nanotrack_v3`` (plus NanoTrack v3's pretrained features, frozen, through a
    projection that starts at zero, as the tracker's stem of that name); ``memory_length`` past-frame state
    tokens are kept (FIFO). Candidates: up to ``top_k`` heat-map peaks (``peak_kernel`` local maxima) scoring at
    least ``candidate_score``. Events: presence above ``presence_on`` (below ``presence_off``) for
    ``event_frames`` frames in a row starts (ends) the target. Session: a target seen for ``handoff_frames``
    frames is handed to the box tracker; grounding re-checks every ``recheck_interval`` frames and re-targets
    when its best box overlaps the tracked one by less than ``retarget_iou``; up to ``max_targets`` tracks (the
    best match, and further matches scoring at least ``extra_target_score``) keep
    identities by assignment with cost ``(1 - appearance_weight) * (1 - IoU) + appearance_weight * (1 - cos)``,
    pairs costing more than ``match_cost_limit`` left unmatched. The grounded appearances of up to
    ``rejected_memory`` candidates the session passed over while its target was confirmed (at hand-over, and at
    re-checks that matched the target) are kept: a weak or lost target is never moved to a candidate that looks
    more like one of them than like itself (0: no such memory).
    """

    text_encoder: str = shapes_network("minilm")
    text_path: str = shapes_network("")
    max_tokens: int = shapes_network(24)
    text_buckets: int = shapes_network(8192)
    text_layers: int = shapes_network(2)
    input_size: int = shapes_network(256)
    stride: int = shapes_network(16)
    stem: str = shapes_network("conv")
    embed_dim: int = shapes_network(128)
    depth: int = shapes_network(4)
    num_heads: int = shapes_network(4)
    mlp_ratio: float = shapes_network(4.0)
    memory_length: int = shapes_network(8)
    ce_loc: tuple[int, ...] = shapes_network((2,))
    ce_keep_ratio: tuple[float, ...] = (0.7,)
    head_channels: int = shapes_network(64)
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
    rejected_memory: int = 8
    train: GroundingTrainConfig = field(default_factory=GroundingTrainConfig)


def grounding_network_keys() -> tuple[str, ...]:
    """The ``GroundingConfig`` fields marked ``shapes_network``."""
    return tuple(f.name for f in dataclasses.fields(GroundingConfig) if f.metadata.get("shapes_network"))


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



def _to_yaml_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {
            f.name.upper(): _to_yaml_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.name != "name"
        }
    if isinstance(obj, tuple):
        return [_to_yaml_dict(v) for v in obj]
    return obj

