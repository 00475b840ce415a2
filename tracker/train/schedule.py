"""Schedules that depend on training progress: the learning rate and the candidate-elimination keep rate.

Progress is measured in epochs as a float (``step / steps_per_epoch``), so both schedules move every step.
"""

from __future__ import annotations

import math

from tracker.config import Config
from tracker.errors import ConfigError

SCHEDULER_TYPES = ("step", "cosine")


def check_scheduler(cfg: Config) -> None:
    kind = cfg.train.scheduler.type
    if kind not in SCHEDULER_TYPES:
        raise ConfigError(f"TRAIN.SCHEDULER.TYPE '{kind}' is not supported; use one of: {', '.join(SCHEDULER_TYPES)}")


def lr_factor(cfg: Config, step: int, steps_per_epoch: int) -> float:
    """Multiplier of every group's base LR at ``step``.

    ``step``: times ``DECAY_RATE`` once per ``LR_DROP_EPOCH`` whole epochs (torch's StepLR stepped per epoch, as
    OSTrack does). ``cosine``: half a cosine from 1 to 0 over ``EPOCH`` epochs. Both start with a linear warm-up
    over ``SCHEDULER.WARMUP_EPOCH`` epochs when that is above 0.
    """
    sched = cfg.train.scheduler
    epoch = step / steps_per_epoch
    if sched.type == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * min(epoch / max(cfg.train.epoch, 1), 1.0)))
    else:
        factor = sched.decay_rate ** (step // steps_per_epoch // max(cfg.train.lr_drop_epoch, 1))
    if sched.warmup_epoch > 0 and epoch < sched.warmup_epoch:
        factor *= (step + 1) / (sched.warmup_epoch * steps_per_epoch)
    return factor


def ce_keep_rate(cfg: Config, step: int, steps_per_epoch: int) -> float | None:
    """The keep ratio to pass to the model at ``step``, or None for a model without candidate elimination.

    1.0 (no elimination) before ``CE_START_EPOCH``; then it falls along half a cosine to the config's
    ``CE_KEEP_RATIO[0]``, reached ``CE_WARM_EPOCH`` epochs later, and stays there. This is OSTrack's
    ``adjust_keep_rate``, whose end is ``CE_START_EPOCH + CE_WARM_EPOCH``.
    """
    ratios = cfg.backbone.ce_keep_ratio
    if not ratios:
        return None
    target = ratios[0]
    epoch = step / steps_per_epoch
    start, warm = cfg.train.ce_start_epoch, cfg.train.ce_warm_epoch
    if epoch < start:
        return 1.0
    if warm <= 0 or epoch >= start + warm:
        return target
    progress = (epoch - start) / warm
    return target + (1.0 - target) * 0.5 * (1.0 + math.cos(math.pi * progress))
