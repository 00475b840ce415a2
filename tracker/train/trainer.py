"""The training loop: one process on CPU or GPU, or several under ``torchrun`` (DDP).

Reproducible: the same command and seed give the same weights on the same machine. The model is built after
seeding; every sample is a pure function of (seed, epoch, index) (see ``sampler``); the torch RNG that drives drop
path is saved in every checkpoint with the optimizer, scheduler and step, so a resumed run continues exactly as an
uninterrupted one would.

Outputs in ``--out``: ``config.yaml``, ``log.jsonl`` (one record per log interval, validation and event),
``checkpoints/last.pt`` (resumable), ``final.safetensors`` and ``best.safetensors`` (weights with the config and
provenance in their metadata, via ``tracker.checkpoint.save_safetensors``).

The run's parts, each in its own module: ``options`` (what a run is given), ``distributed`` (processes, seeds,
threads), ``loader`` (data), ``model_setup`` and ``pretrained`` (model, optimiser, pretrained stem and its freeze),
``checkpoints`` (resumable state), ``schedule`` (LR and CE keep rate), ``validate``; this module is the loop.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from tracker.checkpoint import save_safetensors
from tracker.config import config_from_yaml_text
from tracker.errors import CheckpointError, InputError
from tracker.models.candidate import template_focus_mask
from tracker.train.checkpoints import (
    CHECKPOINT_FORMAT,
    Progress,
    load_training_checkpoint,
    rng_state,
    save_training_checkpoint,
    set_rng_state,
)
from tracker.train.distill import TeacherMaps, distill_loss
from tracker.train.distributed import default_threads, init_distributed, make_deterministic, seed_everything
from tracker.train.loader import make_loader, read_sources
from tracker.train.losses import TrackingLoss
from tracker.train.model_setup import build_optimizer, build_training_model
from tracker.train.options import TrainOptions, TrainResult
from tracker.train.pretrained import freeze_stem_while_scheduled
from tracker.train.sampler import PairBatch, PairDataset
from tracker.train.schedule import ce_keep_rate, check_scheduler, lr_factor
from tracker.train.validate import SequenceValidator, Validator, load_validator


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
        self.teacher = self._make_teacher()
        self.validator = self._make_validator()
        self.progress = Progress()
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

    def _same_config(self, saved_yaml: str, path: Path) -> bool:
        """Whether a checkpoint's config is this run's. Compared as configs, not as text, so that keys added to the
        schema since (read back at their defaults, which keep the old behaviour) do not stop a resume."""
        if saved_yaml == self.cfg.to_yaml():
            return True
        saved = config_from_yaml_text(saved_yaml, source=f"{path} (config)", name=self.cfg.name)
        return saved == self.cfg

    def _make_teacher(self) -> TeacherMaps | None:
        if self.cfg.train.distill_weight <= 0:
            return None
        path = Path(self.cfg.train.distill_teacher)
        if not path.is_file():
            raise InputError(f"TRAIN.DISTILL_TEACHER {path} is not a file; give the path of nanotrack_v3.safetensors")
        data = self.cfg.data
        teacher = TeacherMaps(path, tuple(data.mean), tuple(data.std), self.cfg.search_tokens_side)
        return teacher.to(self.info.device)

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
        if not self._same_config(payload["config"], path):
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
        self.progress = Progress.from_dict(payload["progress"])
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
        total, extra = terms.total, ()
        if self.teacher is not None:
            distill = distill_loss(outputs["score_map"], self.teacher(batch.template, batch.search))
            total, extra = total + self.cfg.train.distill_weight * distill, (float(distill.detach()),)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.cfg.train.grad_clip_norm > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        keep_rate = 1.0 if keep is None else keep
        return (float(total.detach()), terms.giou, terms.l1, terms.focal, terms.mean_iou, lr, keep_rate, *extra)

    def _log_window(self, window: list[tuple[float, ...]], seconds: float) -> None:
        means = torch.tensor(window, dtype=torch.float64).mean(dim=0)
        if self.info.world > 1:
            dist.all_reduce(means)
            means /= self.info.world
        loss, giou, l1, focal, iou, lr, keep, *distill = means.tolist()
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
        if distill:
            entry["distill"] = distill[0]
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
            "progress": self.progress.as_dict(),
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
