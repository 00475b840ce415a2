"""What a training run is given (``TrainOptions``) and what it gives back (``TrainResult``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tracker.config import Config
from tracker.train.datasets import DEFAULT_CACHE_DIR


@dataclass(frozen=True)
class TrainOptions:
    """Everything a run needs besides the config. ``data``: (dataset name, root) pairs for the config's
    ``DATA.TRAIN.DATASETS_NAME``. ``max_steps`` / ``max_minutes`` stop a run early without changing its
    schedule (a checkpoint and the weights are written, and ``--resume`` continues it)."""

    config: Config
    data: tuple[tuple[str, str], ...]
    out_dir: Path
    seed: int = 42
    device: str = "auto"
    max_steps: int | None = None
    max_minutes: float | None = None
    workers: int | None = None
    threads: int | None = None
    checkpoint_every: int | None = None
    log_every: int | None = None
    val_every: int | None = None
    val_sequences: tuple[str, ...] = ()
    val_frames: int | None = None
    val_fn: str | None = None
    resume: str | None = None
    pretrained: str | None = None
    init: str | None = None  # whole-model weights to start from (fine-tuning), with a fresh optimiser and schedule
    cache_dir: Path = DEFAULT_CACHE_DIR
    progress: bool = True
    command: str = ""


@dataclass(frozen=True)
class TrainResult:
    """What a run produced: the step it stopped at, the weights written, and the best validation score (known
    to the main process only; ``main_process`` says whether this is it)."""

    step: int
    total_steps: int
    final_weights: Path
    best_weights: Path | None
    best_metric: float | None
    wall_time_s: float
    main_process: bool = True
