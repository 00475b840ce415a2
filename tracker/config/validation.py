"""The checks every config passes, however it was made (a YAML file, a weights file's embedded text, overrides):
sizes that must agree across sections, values in range, keys that allow only some choices. A failure is one
``ConfigError`` line that names where the config came from and the key.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NoReturn

from tracker.config.schema import (
    CE_TEMPLATE_RANGES,
    GROUNDING_STEMS,
    NANOTRACK_STRIDE,
    STEMS,
    TEXT_ENCODERS,
    Config,
    GroundingConfig,
    ScaleFilterConfig,
)
from tracker.errors import ConfigError

Fail = Callable[[str], NoReturn]  # raises the ConfigError for one message


def validate(cfg: Config, source: str) -> Config:
    """``cfg`` itself if it passes every check, else one ``ConfigError`` naming ``source`` and the key."""
    bb = cfg.backbone

    def fail(message: str) -> NoReturn:
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
    if "nanotrack_v3" in bb.stem and bb.stride != NANOTRACK_STRIDE:
        fail(f"MODEL.BACKBONE.STEM {bb.stem} has stride {NANOTRACK_STRIDE}; set STRIDE to it, not {bb.stride}")
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
    if not (math.isfinite(cfg.train.distill_weight) and cfg.train.distill_weight >= 0):
        fail(f"TRAIN.DISTILL_WEIGHT must be 0 (off) or more, got {cfg.train.distill_weight}")
    if cfg.train.distill_weight > 0 and not cfg.train.distill_teacher:
        fail("TRAIN.DISTILL_WEIGHT needs TRAIN.DISTILL_TEACHER: the path of nanotrack_v3.safetensors")
    _validate_test_and_track(cfg, fail)
    _validate_grounding(cfg.grounding, fail)
    return cfg


def _validate_test_and_track(cfg: Config, fail: Fail) -> None:
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
    if not 0 <= track.presence.colour_update <= 1:
        fail(f"TRACK.PRESENCE.COLOUR_UPDATE must be from 0 (colours at init only) to 1, got "
             f"{track.presence.colour_update}")
    if track.max_targets < 1:
        fail(f"TRACK.MAX_TARGETS must be at least 1, got {track.max_targets}")
    if track.redetect.batch < 1:
        fail(f"TRACK.REDETECT.BATCH must be at least 1 crop, got {track.redetect.batch}")
    if not (math.isfinite(track.redetect.tile_step) and 0 < track.redetect.tile_step <= 1):
        fail(f"TRACK.REDETECT.TILE_STEP must be above 0 and at most 1 (a share of the crop side), got "
             f"{track.redetect.tile_step}")
    if not (math.isfinite(track.redetect.colour_contrast) and track.redetect.colour_contrast >= 1):
        fail(f"TRACK.REDETECT.COLOUR_CONTRAST must be at least 1 (times the frame's mean), got "
             f"{track.redetect.colour_contrast}")
    if track.redetect.colour_memory < 0:
        fail(f"TRACK.REDETECT.COLOUR_MEMORY must be 0 or more lost frames, got {track.redetect.colour_memory}")


def _validate_scale_filter(sf: ScaleFilterConfig, fail: Fail) -> None:
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


def _validate_grounding(g: GroundingConfig, fail: Fail) -> None:
    if g.text_encoder not in TEXT_ENCODERS:
        fail(f"GROUNDING.TEXT_ENCODER '{g.text_encoder}' is not one of {TEXT_ENCODERS}")
    if g.text_encoder == "hf" and not g.text_path:
        fail("GROUNDING.TEXT_ENCODER 'hf' needs GROUNDING.TEXT_PATH (a Hugging Face model folder)")
    if g.stem not in GROUNDING_STEMS:
        fail(f"GROUNDING.STEM '{g.stem}' is not one of {GROUNDING_STEMS}")
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

