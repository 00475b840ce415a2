"""Train the streaming grounding network: seeded, resumable, exported as safetensors with a manifest entry.

    python -m tracker.train_grounding --config grounding_small --out runs/grounding_small \\
        --export weights/grounding_small.safetensors

Each step draws ``BATCH_SIZE`` clips of ``CLIP_LENGTH`` frames (``tracker.train_grounding.data``) and runs them
through the network frame by frame, carrying the memory as the grounder does at run time, so what is learnt is
causal. A checkpoint (``last.pt``: weights, optimiser, step) is written every ``CHECKPOINT_INTERVAL`` steps and
at the end; ``--resume`` continues from it with the same data (sample ``i`` depends only on the seed and ``i``).
``--minutes`` stops early at a wall-time budget (the export then says how many steps were done).
Single process (CPU or one GPU).
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Sampler

from tracker.checkpoint import read_checkpoint, save_safetensors
from tracker.config import Config, load_config, parse_overrides, with_overrides
from tracker.errors import ConfigError, TrackerError
from tracker.grounding import load_strict
from tracker.models.grounding import GroundingNet, fit_input_size, tracker_weights_for
from tracker.models.vit import ConvPlusNanoTrackStem
from tracker.resolve import open_weights
from tracker.single import resolve_device
from tracker.train.distributed import seed_everything
from tracker.train.loader import worker_init
from tracker.train.pretrained import load_nanotrack_stem
from tracker.train_grounding.data import ClipBatch, GroundingDataset, collate_clips, load_training_data
from tracker.train_grounding.losses import event_targets, grounding_loss
from tracker.weights import MANIFEST_NAME, file_sha256, update_manifest, weights_folder

DATA_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "train"
NO_DECAY = ("pos_patch", "presence_token", "text_type", "memory_age", "pos")
ADDED_BRANCH = "stem.pretrained."  # where the stem's NanoTrack branch sits in a grounder's state


class RangeSampler(Sampler[int]):
    """Sample indices ``start .. stop - 1`` in order: the data of step ``s`` is always samples ``s*B .. s*B+B-1``."""

    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop = start, stop

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def lr_at(step: int, steps: int, warmup: int) -> float:
    """Factor on the base LR: linear warm-up, then half a cosine to zero."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def make_optimizer(model: GroundingNet, cfg: Config) -> torch.optim.Optimizer:
    decay, plain = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (plain if param.ndim < 2 or name.split(".")[-1] in NO_DECAY else decay).append(param)
    train = cfg.grounding.train
    groups = [{"params": decay, "weight_decay": train.weight_decay}, {"params": plain, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=train.lr)


def clip_losses(model: GroundingNet, batch: ClipBatch, cfg: Config, device: torch.device):
    """Run each clip frame by frame with the memory, as at run time; mean loss over frames and its terms."""
    mean = torch.tensor(cfg.data.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.data.std, device=device).view(1, 3, 1, 1)
    frames = batch.frames.to(device)
    steps = frames.shape[1]
    text = model.encode_text(batch.captions)
    memory = model.empty_memory(frames.shape[0], device)
    events = event_targets(batch.present)
    total, terms = 0.0, {}
    for t in range(steps):
        image = (frames[:, t].float() / 255.0 - mean) / std
        out = model(image, text, memory)
        memory = memory.push(out.state)
        loss = grounding_loss(
            out,
            [b[t] for b in batch.boxes],
            batch.present[:, t].to(device),
            events[:, t].to(device),
            cfg.grounding.train,
        )
        total = total + loss.total / steps
        for key, value in loss.terms.items():
            terms[key] = terms.get(key, 0.0) + value / steps
    return total, terms


def initialise(model: GroundingNet, args: argparse.Namespace) -> None:
    """The starting weights ``--init``, ``--init-tracker`` and ``--pretrained`` ask for, each said in one line.
    A grounder trained with the conv stem starts one with NanoTrack's branch added: the branch (its body from
    ``--pretrained``, its projection at zero) is all that is new, so the fine-tune starts from its outputs."""
    added = isinstance(model.stem, ConvPlusNanoTrackStem)
    if args.pretrained and not added:
        raise ConfigError("--pretrained fills NanoTrack v3's branch of the stem; set GROUNDING.STEM=conv+nanotrack_v3")
    if args.init:
        state = open_weights(args.init).state_dict
        if added and not any(key.startswith(ADDED_BRANCH) for key in state):
            if not args.pretrained:
                raise ConfigError(f"{args.init} has no NanoTrack branch; give its weights with --pretrained "
                                  "(../shared/peers/nanotrack_v3/nanotrack_v3.safetensors)")
            own = {k: v for k, v in model.state_dict().items() if k.startswith(ADDED_BRANCH)}
            state = {**state, **own}
        fitted = fit_input_size(model, state)
        load_strict(model, fitted, args.init)
        resized = " (position table resized to the input size)" if fitted is not state else ""
        print(f"initial weights: the whole grounder from {args.init}{resized}", flush=True)
    elif args.init_tracker:
        state = tracker_weights_for(model, open_weights(args.init_tracker).state_dict, args.init_tracker)
        model.load_state_dict(state, strict=False)
        print(f"initial weights: stem, {len(model.blocks)} blocks, norm and head from {args.init_tracker}", flush=True)
    if args.pretrained:
        print(load_nanotrack_stem(model.stem.pretrained, read_checkpoint(args.pretrained).state_dict, args.pretrained),
              flush=True)


def train(args: argparse.Namespace) -> Path | None:
    cfg = with_overrides(load_config(args.config), parse_overrides(args.set), source="--set")
    tcfg = cfg.grounding.train
    seed = tcfg.seed if args.seed is None else args.seed
    steps = args.steps or tcfg.steps
    seed_everything(seed)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = GroundingNet(cfg).to(device).train()
    optimizer = make_optimizer(model, cfg)
    start, elapsed_before = 0, 0.0
    last = out_dir / "last.pt"
    fresh = not (args.resume and last.is_file())
    if fresh:
        initialise(model, args)
    if args.resume and last.is_file():
        state = torch.load(last, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, elapsed_before = int(state["step"]), float(state.get("elapsed_s", 0.0))
        print(f"resumed from {last} at step {start}", flush=True)
    sequences, stills = load_training_data(args.sequences, args.images)
    print(f"data: {len(sequences)} captioned sequences, {len(stills)} labelled photos", flush=True)
    batch = tcfg.batch_size
    dataset = GroundingDataset(cfg, sequences, stills, steps * batch, seed)
    loader = DataLoader(
        dataset,
        batch_size=batch,
        sampler=RangeSampler(start * batch, steps * batch),
        collate_fn=collate_clips,
        num_workers=args.workers,
        worker_init_fn=worker_init if args.workers else None,
        persistent_workers=False,
    )
    begin = time.time()
    step = start
    running: dict[str, float] = {}
    for batch_data in loader:
        factor = lr_at(step, steps, tcfg.warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = tcfg.lr * factor
        loss, terms = clip_losses(model, batch_data, cfg, device)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip_norm)
        optimizer.step()
        step += 1
        for key, value in {"loss": float(loss.detach()), **terms}.items():
            running[key] = running.get(key, 0.0) + value
        log_every = args.log_interval or tcfg.log_interval
        if step % log_every == 0 or step == steps:
            count = log_every if step % log_every == 0 else step % log_every
            text = " ".join(f"{k} {v / count:.4f}" for k, v in running.items())
            rate = (time.time() - begin) / max(1, step - start)
            print(f"step {step}/{steps} lr {tcfg.lr * factor:.2e} {text} ({rate:.2f} s/step)", flush=True)
            running = {}
        out_of_time = args.minutes and (time.time() - begin) / 60 >= args.minutes
        if step % tcfg.checkpoint_interval == 0 or step == steps or out_of_time:
            _save_checkpoint(last, model, optimizer, step, elapsed_before + time.time() - begin)
        if out_of_time:
            print(f"stopping at step {step}: the {args.minutes}-minute budget is used", flush=True)
            break
    wall = elapsed_before + time.time() - begin
    if not args.export:
        return None
    model.eval()
    extra = {
        "kind": "grounding",
        "steps_done": step,
        "steps_planned": steps,
        "seed": seed,
        "command": _command(),
    }
    path = save_safetensors(model, cfg, args.export, extra)
    entry = manifest_entry(path, cfg, seed, step, steps, wall, args)
    update_manifest(Path(args.manifest), path.name, entry)
    print(
        f"exported {path} ({path.stat().st_size / 1e6:.1f} MB) after {step} steps, {wall / 60:.1f} min",
        flush=True,
    )
    return path


def _save_checkpoint(path: Path, model, optimizer, step: int, elapsed: float) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "elapsed_s": elapsed,
        },
        tmp,
    )
    tmp.replace(path)


def _command() -> str:
    """This run's command line, as the exported file and the manifest record it."""
    return " ".join(["python -m tracker.train_grounding", *sys.argv[1:]])


def manifest_entry(path: Path, cfg: Config, seed: int, done: int, planned: int, wall: float, args) -> dict:
    return {
        "sha256": file_sha256(path),
        "size": path.stat().st_size,
        "config": cfg.name or str(args.config),
        "default": False,
        "kind": "grounding",
        "training_command": _command(),
        "seed": seed,
        "steps": {"done": done, "planned": planned},
        "data": {
            "sequences": _portable(args.sequences),
            "images": _portable(args.images),
            "synthetic": "coloured shapes over noise or photo backgrounds (tracker.train_grounding.synth)",
            "pretrained": _pretrained(args),
            "credits": "train/images sets as listed in shared/data/train/images/INDEX.tsv (several CC BY 4.0)",
        },
        "wall_time_s": round(wall, 1),
        "machine": f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}".strip(),
        "scores": {},
    }


def _pretrained(args) -> str:
    stem = f"; NanoTrack v3's backbone (Apache-2.0) from {args.pretrained} in the stem" if args.pretrained else ""
    if args.init:
        return f"fine-tuned from the grounder {args.init}{stem}"
    if args.init_tracker:
        return f"vision side from the tracker {args.init_tracker}{stem}"
    return "none: the vision side from scratch"


def _portable(path: str) -> str:
    """A data path as the manifest records it: relative to the folder holding the repository when inside it."""
    if not path:
        return ""
    resolved = Path(path).resolve()
    base = Path(__file__).resolve().parents[3]
    return str(resolved.relative_to(base)) if resolved.is_relative_to(base) else str(resolved)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tracker.train_grounding", description="Train the streaming text grounding network."
    )
    parser.add_argument("--config", default="grounding_small", help="grounding config name or YAML path")
    parser.add_argument("--out", default="runs/grounding", help="folder for checkpoints (last.pt)")
    parser.add_argument(
        "--sequences", default=str(DATA_ROOT / "sequences"), help="captioned training sequences"
    )
    parser.add_argument(
        "--images", default=str(DATA_ROOT / "images"), help="labelled photos (boxes.jsonl sets)"
    )
    parser.add_argument("--steps", type=int, default=None, help="override GROUNDING.TRAIN.STEPS")
    parser.add_argument("--seed", type=int, default=None, help="override GROUNDING.TRAIN.SEED")
    parser.add_argument("--minutes", type=float, default=None, help="stop (and export) after this wall time")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--init-tracker", metavar="FILE", help="start the vision side from a trained tracker of the "
                        "same width (stem, first blocks, norm, centre head), e.g. weights/bundled_small.safetensors")
    parser.add_argument("--init", metavar="FILE", help="start from a trained grounder of the same config (a "
                        "fine-tune), e.g. weights/grounding_small.safetensors")
    parser.add_argument("--pretrained", metavar="FILE", help="NanoTrack v3's released weights for the stem's "
                        "pretrained branch (GROUNDING.STEM conv+nanotrack_v3), e.g. "
                        "../shared/peers/nanotrack_v3/nanotrack_v3.safetensors")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="change one config key (dotted, YAML value)"
    )
    parser.add_argument("--export", default=None, help="write the trained weights here (safetensors)")
    parser.add_argument(
        "--manifest", default=str(weights_folder() / MANIFEST_NAME)
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--log-interval", type=int, default=None, help="override GROUNDING.TRAIN.LOG_INTERVAL"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        train(args)
    except TrackerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
