"""The training loop: one process on CPU or GPU, or several under ``torchrun`` (DDP).

Reproducible: the same command and seed give the same weights on the same machine. The model is built after
seeding; every sample is a pure function of (seed, epoch, index) (see ``sampler``); the torch RNG that drives drop
path is saved in every checkpoint with the optimizer, scheduler and step, so a resumed run continues exactly as an
uninterrupted one would.

Outputs in ``--out``: ``config.yaml``, ``log.jsonl`` (one record per log interval, validation and event),
``checkpoints/last.pt`` (resumable), ``final.safetensors`` and ``best.safetensors`` (weights with the config and
provenance in their metadata, via ``tracker.checkpoint.save_safetensors``).
"""

from __future__ import annotations

import json
import os
import platform
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from tracker.checkpoint import load_state_into, read_checkpoint, save_safetensors
from tracker.config import Config
from tracker.errors import CheckpointError, InputError, first_line
from tracker.models.candidate import template_focus_mask
from tracker.models.ostrack import OSTrack, build_model
from tracker.models.vit import NanoTrackStem
from tracker.single import resolve_device
from tracker.train.datasets import DEFAULT_CACHE_DIR, TrainingSource, hold_out, load_source, warm_video_cache
from tracker.train.losses import TrackingLoss
from tracker.train.sampler import PairBatch, PairDataset, collate_pairs
from tracker.train.schedule import ce_keep_rate, check_scheduler, lr_factor
from tracker.train.validate import SequenceValidator, Validator, load_validator

CHECKPOINT_FORMAT = "ostrack-live-train-1"
# Parameters the forward pass never uses: the 224-pixel pretrain position table and cls token only seed the
# template/search tables. Frozen so DDP does not wait for their gradients.
UNUSED_PARAMETERS = ("backbone.pos_embed", "backbone.cls_token")


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


@dataclass
class _Progress:
    """Mutable run state that goes into every checkpoint."""

    step: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    elapsed_s: float = 0.0
    history: list[dict] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------------
# Processes, seeds, threads


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world: int
    local_rank: int
    local_world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> DistInfo:
    """Join the ``torchrun`` process group if there is one (NCCL on GPU, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local_rank, local_world, device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_deterministic(device: torch.device) -> None:
    """Ask torch for deterministic kernels (CPU kernels are already; on GPU this trades a little speed)."""
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)


def default_threads(info: DistInfo) -> int:
    return max(1, (os.cpu_count() or 1) // max(info.local_world, 1))


def default_workers(cfg: Config, info: DistInfo) -> int:
    """Data workers per process: the config's NUM_WORKER, but leave the model one core per process."""
    spare = max(0, (os.cpu_count() or 1) // max(info.local_world, 1) - 1)
    return max(0, min(cfg.train.num_worker, max(spare, 1)))


def _worker_init(_: int) -> None:
    # Each worker crops and augments single samples: more threads per worker only oversubscribe the cores.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


# ----------------------------------------------------------------------------------------------------------
# Data


class StepBatches(Sampler):
    """Batches of ``(epoch, index)`` keys for steps ``start`` .. ``total - 1``, this process's share of each.

    Step ``s`` is epoch ``s // steps_per_epoch``; its global batch holds ``world * batch`` consecutive indices,
    of which process ``rank`` takes the ``rank``-th slice.
    """

    def __init__(self, steps_per_epoch: int, batch: int, rank: int, world: int, start: int, total: int) -> None:
        self.steps_per_epoch, self.batch, self.rank, self.world = steps_per_epoch, batch, rank, world
        self.start, self.total = start, total

    def __len__(self) -> int:
        return max(0, self.total - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.total):
            epoch, within = divmod(step, self.steps_per_epoch)
            first = (within * self.world + self.rank) * self.batch
            yield [(epoch, first + j) for j in range(self.batch)]


def read_sources(options: TrainOptions, info: DistInfo) -> tuple[list[TrainingSource], list, list[float]]:
    """The config's training datasets from the ``--data`` roots, minus held-out sequences; videos decoded once."""
    cfg, roots = options.config, dict(options.data)
    names, ratios = cfg.data.train.datasets_name, list(cfg.data.train.datasets_ratio)
    missing = [n for n in names if n not in roots]
    if missing:
        raise InputError(f"no path for dataset {', '.join(missing)}; add --data {missing[0]}=PATH")
    if len(ratios) != len(names):
        raise InputError("DATA.TRAIN.DATASETS_RATIO needs one ratio per entry of DATA.TRAIN.DATASETS_NAME")
    sources = [load_source(n, roots[n], options.cache_dir) for n in names]
    sources, held = hold_out(sources, options.val_sequences)
    if info.main:
        warm_video_cache(sources, progress=options.progress)
        warm_video_cache([TrainingSource("held out", tuple(held))] if held else [], progress=False)
    if info.world > 1:
        dist.barrier()  # the other ranks read the cache rank 0 wrote
    return sources, held, ratios


def make_loader(dataset: PairDataset, options: TrainOptions, info: DistInfo, start: int, total: int, spe: int):
    cfg = options.config
    workers = options.workers if options.workers is not None else default_workers(cfg, info)
    batches = StepBatches(spe, cfg.train.batch_size, info.rank, info.world, start, total)
    generator = torch.Generator().manual_seed(options.seed)  # the loader's own seeds never touch the global RNG
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=collate_pairs,
        pin_memory=info.device.type == "cuda",
        worker_init_fn=_worker_init,
        generator=generator,
        # Fresh worker processes: a forked copy of a parent that already ran OpenCV's thread pool can deadlock.
        multiprocessing_context="spawn" if workers else None,
        prefetch_factor=4 if workers else None,
    )


# ----------------------------------------------------------------------------------------------------------
# Model and optimiser


def build_training_model(options: TrainOptions, info: DistInfo, log) -> OSTrack:
    cfg = options.config
    model = build_model(cfg)
    if options.init:
        if options.pretrained:
            raise InputError("give --init (whole-model weights) or --pretrained (a backbone), not both")
        load_state_into(model, read_checkpoint(options.init).state_dict, options.init, cfg)
        log(f"initial weights: the whole model from {options.init}")
        return _trainable(model).to(info.device).train()
    pretrained = options.pretrained or _existing_pretrain_file(cfg)
    if pretrained:
        log(load_pretrained_backbone(model, pretrained))
    elif cfg.model.pretrain_file:
        log(f"note: MODEL.PRETRAIN_FILE {cfg.model.pretrain_file} not found; training the backbone from scratch")
    return _trainable(model).to(info.device).train()


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


def load_pretrained_backbone(model: OSTrack, path: str) -> str:
    """Load a ViT checkpoint (e.g. MAE's ``{'model': ...}``) into the backbone where names and shapes match,
    then fill the template/search position tables from its 224 table; or, for a NanoTrack stem, NanoTrack v3's
    weights into the stem. Returns a one-line report."""
    state = read_checkpoint(path).state_dict
    if isinstance(model.backbone.patch_embed, NanoTrackStem):
        return load_nanotrack_stem(model.backbone.patch_embed, state, path)
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


NANOTRACK_PREFIX = "backbone.features."  # NanoTrack v3's own names for its backbone
PRETRAINED_STEM_PREFIX = "backbone.patch_embed.body.features."


def load_nanotrack_stem(stem: NanoTrackStem, state: dict[str, torch.Tensor], path: str) -> str:
    """NanoTrack v3's ``backbone.features.*`` tensors into the stem's pretrained body, all of them or none."""
    body = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith(NANOTRACK_PREFIX)}
    try:
        stem.body.load_state_dict(body, strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"{path} does not hold NanoTrack v3's backbone ({first_line(err, 160)}); give nanotrack_v3.safetensors"
        ) from None
    return f"pretrained stem: NanoTrack v3's backbone, {len(body)} tensors from {path}"


def is_stem_parameter(name: str) -> bool:
    """Whether a parameter belongs to a pretrained stem's body (its projection trains with the backbone)."""
    return name.startswith(PRETRAINED_STEM_PREFIX)


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


def freeze_stem_while_scheduled(model: OSTrack, cfg: Config, step: int, steps_per_epoch: int) -> None:
    """A pretrained stem keeps its loaded weights for ``TRAIN.STEM_FREEZE_EPOCH`` epochs (for good with
    ``STEM_MULTIPLIER`` 0), then trains."""
    stem = model.backbone.patch_embed
    if isinstance(stem, NanoTrackStem):
        thawed = step >= cfg.train.stem_freeze_epoch * steps_per_epoch and cfg.train.stem_multiplier > 0
        stem.body_frozen = not thawed


# ----------------------------------------------------------------------------------------------------------
# Checkpoints


def rng_state() -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state_to_tensor(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_state_to_tensor() -> tuple:
    _, keys, pos, has_gauss, cached = np.random.get_state()
    return (torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached)


def save_training_checkpoint(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save(payload, partial)
    os.replace(partial, path)  # atomic: an interrupted save never leaves a broken last.pt


def load_training_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"no training checkpoint at {path}; check --resume")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path} is not a readable training checkpoint ({type(err).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a training checkpoint of this toolkit; give checkpoints/last.pt")
    return payload


# ----------------------------------------------------------------------------------------------------------
# The run


class Trainer:
    """One training run; ``run()`` trains to the end of the schedule (or an early stop) and exports weights."""

    def __init__(self, options: TrainOptions) -> None:
        self.options = options
        self.cfg = options.config
        check_scheduler(self.cfg)
        self.info = init_distributed(options.device)
        make_deterministic(self.info.device)
        torch.set_num_threads(options.threads or default_threads(self.info))
        self.out = Path(options.out_dir)
        self.log_file = self.out / "log.jsonl"
        self.bar: tqdm | None = None
        seed_everything(options.seed)
        self.sources, self.held, ratios = read_sources(options, self.info)
        self.dataset = PairDataset(self.sources, ratios, self.cfg, options.seed)
        self.model = build_training_model(options, self.info, self.say)
        self.optimizer = build_optimizer(self.model, self.cfg)
        global_batch = self.cfg.train.batch_size * self.info.world
        self.steps_per_epoch = max(1, self.cfg.data.train.sample_per_epoch // global_batch)
        self.total_steps = self.steps_per_epoch * self.cfg.train.epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(self.cfg, step, self.steps_per_epoch)
        )
        self.amp = self.cfg.train.amp and self.info.device.type == "cuda"
        self.scaler = torch.amp.GradScaler(self.info.device.type, enabled=self.amp)
        self.loss = TrackingLoss(self.cfg)
        self.validator = self._make_validator()
        self.progress = _Progress()
        self._resume_if_asked()
        # Different drop-path masks per process; the same on every run with this seed.
        if not options.resume or self.progress.step == 0:
            torch.manual_seed(options.seed + 7919 * self.info.rank)
        self.net = self.model
        if self.info.world > 1:
            ids = [self.info.device.index] if self.info.device.type == "cuda" else None
            # A frozen stem's parameters get no gradient for a while: the reducer must be told to expect that.
            stem_waits = self.cfg.backbone.stem == "nanotrack_v3" and self.cfg.train.stem_freeze_epoch > 0
            self.net = DistributedDataParallel(
                self.model, device_ids=ids, gradient_as_bucket_view=True, find_unused_parameters=stem_waits
            )
        focus = None
        if self.cfg.backbone.ce_loc:
            focus = template_focus_mask(self.cfg.template_tokens_side, self.cfg.backbone.ce_template_range)
        self.focus = None if focus is None else focus.unsqueeze(0).to(self.info.device)

    # -- setup helpers ---------------------------------------------------------------------------------

    def _make_validator(self) -> Validator | None:
        if self.options.val_fn:
            return load_validator(self.options.val_fn)
        if self.held:
            return SequenceValidator(self.held, self.options.val_frames)
        return None

    def _resume_if_asked(self) -> None:
        resume = self.options.resume
        if not resume:
            if (self.out / "checkpoints" / "last.pt").is_file():
                raise InputError(
                    f"{self.out} already holds a run; pass --resume to continue it or choose another --out"
                )
            return
        path = self.out / "checkpoints" / "last.pt" if resume == "auto" else Path(resume)
        if resume == "auto" and not path.is_file():
            return
        payload = load_training_checkpoint(path)
        if payload["config"] != self.cfg.to_yaml():
            raise CheckpointError(f"{path} was made with another config; resume with the same --config")
        if payload["seed"] != self.options.seed or payload["world"] != self.info.world:
            raise CheckpointError(
                f"{path} was made with seed {payload['seed']} on {payload['world']} process(es); resume with those"
            )
        if payload.get("held_out") != [s.name for s in self.held]:
            raise CheckpointError(f"{path} held out {payload.get('held_out')}; resume with the same --val-seq")
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        p = payload["progress"]
        self.progress = _Progress(p["step"], p["best_metric"], p["best_step"], p["elapsed_s"], list(p["history"]))
        set_rng_state(payload["rng"][self.info.rank])
        self.say(f"resumed from {path} at step {self.progress.step}")

    # -- logging -----------------------------------------------------------------------------------------

    def say(self, line: str) -> None:
        """A line on stdout (above the progress bar when one is shown); rank 0 only."""
        if not self.info.main:
            return
        if self.bar is not None and not self.bar.disable:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def record(self, entry: dict) -> None:
        if self.info.main:
            self.out.mkdir(parents=True, exist_ok=True)
            with self.log_file.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry) + "\n")

    # -- the loop ----------------------------------------------------------------------------------------

    def elapsed(self) -> float:
        """Training wall time so far, over every resumed part of the run (seconds)."""
        return self._elapsed_before + time.perf_counter() - self._started

    def run(self) -> TrainResult:
        start_step = self.progress.step
        self._elapsed_before, self._started = self.progress.elapsed_s, time.perf_counter()
        stop_at = self.total_steps
        if self.options.max_steps is not None:
            stop_at = min(stop_at, self.options.max_steps)
        self._write_run_files()
        self.record({"event": "start", "step": start_step, "total_steps": self.total_steps, **self._provenance()})
        loader = make_loader(self.dataset, self.options, self.info, start_step, stop_at, self.steps_per_epoch)
        window: list[tuple[float, ...]] = []
        window_start = time.perf_counter()
        self.bar = tqdm(
            total=self.total_steps,
            initial=start_step,
            disable=not (self.options.progress and self.info.main),
            desc="training",
            unit="step",
            dynamic_ncols=True,
            mininterval=2.0,
        )
        try:
            for batch in loader:
                window.append(self._train_step(batch))
                self.progress.step += 1
                self.bar.update(1)
                step = self.progress.step
                if step % self._log_every() == 0 or step == stop_at:
                    self._log_window(window, time.perf_counter() - window_start)
                    window, window_start = [], time.perf_counter()
                self.progress.elapsed_s = self.elapsed()
                out_of_time = self._out_of_time(self.progress.elapsed_s)
                if step % self._val_every() == 0 or step == self.total_steps:
                    self._validate(step)
                if step % self._checkpoint_every() == 0 or step == stop_at or out_of_time:
                    self._checkpoint()
                if out_of_time:
                    self.say(f"stopping at step {step}: --max-minutes {self.options.max_minutes} reached")
                    break
        finally:
            self.bar.close()
            self.bar = None
        self.progress.elapsed_s = self.elapsed()
        return self._finish()

    def _train_step(self, batch: PairBatch) -> tuple[float, ...]:
        batch = batch.to(self.info.device)
        step = self.progress.step
        keep = ce_keep_rate(self.cfg, step, self.steps_per_epoch)
        freeze_stem_while_scheduled(self.model, self.cfg, step, self.steps_per_epoch)
        with torch.autocast(self.info.device.type, enabled=self.amp):  # float16 on GPU only
            outputs = self.net(batch.template, batch.search, ce_template_mask=self.focus, ce_keep_rate=keep)
            terms = self.loss(outputs, batch.search_box)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(terms.total).backward()
        if self.cfg.train.grad_clip_norm > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        total = float(terms.total.detach())
        return (total, terms.giou, terms.l1, terms.focal, terms.mean_iou, lr, 1.0 if keep is None else keep)

    def _log_window(self, window: list[tuple[float, ...]], seconds: float) -> None:
        means = torch.tensor(window, dtype=torch.float64).mean(dim=0)
        if self.info.world > 1:
            dist.all_reduce(means)
            means /= self.info.world
        loss, giou, l1, focal, iou, lr, keep = means.tolist()
        step = self.progress.step
        rate = len(window) * self.cfg.train.batch_size * self.info.world / max(seconds, 1e-9)
        entry = {
            "step": step,
            "epoch": round(step / self.steps_per_epoch, 4),
            "loss": loss,
            "giou": giou,
            "l1": l1,
            "focal": focal,
            "iou": iou,
            "lr": lr,
            "keep_rate": keep,
            "samples_per_s": rate,
        }
        self.record(entry)
        self.say(
            f"step {step}/{self.total_steps} ep {entry['epoch']:.2f} loss {loss:.4f} (giou {giou:.3f} l1 {l1:.4f} "
            f"focal {focal:.3f}) iou {iou:.3f} lr {lr:.2e} keep {keep:.2f} {rate:.1f} samples/s"
        )

    def _out_of_time(self, elapsed: float) -> bool:
        if self.options.max_minutes is None:
            return False
        flag = torch.tensor([1.0 if elapsed > 60.0 * self.options.max_minutes else 0.0])
        if self.info.world > 1:
            dist.all_reduce(flag)  # every process stops at the same step, as rank 0's clock says
        return bool(flag.item() > 0)

    def _validate(self, step: int) -> None:
        if self.validator is None or not self.info.main:
            return
        saved = torch.get_rng_state()  # validation must not change what training draws next
        started = time.perf_counter()
        metric = float(self.validator(self.cfg, self.model))
        torch.set_rng_state(saved)
        self.model.train()
        improved = self.progress.best_metric is None or metric > self.progress.best_metric
        if improved:
            self.progress.best_metric, self.progress.best_step = metric, step
            self._export(self.out / "best.safetensors", {"val_metric": metric, "val_step": step})
        entry = {"event": "validation", "step": step, "metric": metric, "best": self.progress.best_metric}
        self.progress.history.append(entry)
        self.record({**entry, "seconds": time.perf_counter() - started})
        self.say(f"validation at step {step}: {metric:.4f} (best {self.progress.best_metric:.4f})")

    def _checkpoint(self) -> None:
        states = [None] * self.info.world
        if self.info.world > 1:
            dist.all_gather_object(states, rng_state())  # every process's RNG, so each resumes its own stream
        else:
            states = [rng_state()]
        if not self.info.main:
            return
        p = self.progress
        payload = {
            "format": CHECKPOINT_FORMAT,
            "config": self.cfg.to_yaml(),
            "seed": self.options.seed,
            "world": self.info.world,
            "held_out": [s.name for s in self.held],
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "progress": {
                "step": p.step,
                "best_metric": p.best_metric,
                "best_step": p.best_step,
                "elapsed_s": p.elapsed_s,
                "history": p.history,
            },
            "rng": states,
        }
        save_training_checkpoint(self.out / "checkpoints" / "last.pt", payload)

    # -- outputs -----------------------------------------------------------------------------------------

    def _finish(self) -> TrainResult:
        final = self.out / "final.safetensors"
        if self.info.main:
            self._export(final, {})
            self.record({"event": "end", "step": self.progress.step, "wall_time_s": self.progress.elapsed_s})
            self.say(f"wrote {final} after {self.progress.step} steps, {self.progress.elapsed_s / 60:.1f} min")
        if self.info.world > 1:
            dist.barrier()
        best = self.out / "best.safetensors"
        return TrainResult(
            self.progress.step,
            self.total_steps,
            final,
            best if best.is_file() else None,
            self.progress.best_metric,
            self.progress.elapsed_s,
            self.info.main,
        )

    def _export(self, path: Path, extra: dict) -> None:
        provenance = self._provenance()
        provenance.update(
            steps=self.progress.step,
            epochs=round(self.progress.step / self.steps_per_epoch, 4),
            wall_time_s=round(self.progress.elapsed_s, 3),
            **extra,
        )
        save_safetensors(self.model, self.cfg, path, extra=provenance)

    def _provenance(self) -> dict:
        return {
            "training_command": self.options.command,
            "seed": self.options.seed,
            "data": {src.name: {"root": src.root, "content": src.describe()} for src in self.sources},
            "held_out": [s.name for s in self.held],
            "processes": self.info.world,
            "machine": f"{platform.machine()} {platform.system()} {os.cpu_count()} cpus, {self.info.device}",
            "torch": torch.__version__,
        }

    def _write_run_files(self) -> None:
        if self.info.main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(self.cfg.to_yaml(), encoding="utf-8")

    def _log_every(self) -> int:
        return max(1, self.options.log_every or self.cfg.train.print_interval)

    def _val_every(self) -> int:
        return max(1, self.options.val_every or self.cfg.train.val_epoch_interval * self.steps_per_epoch)

    def _checkpoint_every(self) -> int:
        return max(1, self.options.checkpoint_every or self.steps_per_epoch)


def train(options: TrainOptions) -> TrainResult:
    """Train as ``options`` say; returns where the weights went. Leaves the process group when done."""
    threads = torch.get_num_threads()
    try:
        return Trainer(options).run()
    finally:
        torch.set_num_threads(threads)
        if dist.is_initialized():
            dist.destroy_process_group()
