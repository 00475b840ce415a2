"""``python -m tracker.train --config NAME_OR_YAML --data NAME=PATH ... --out DIR`` (or under ``torchrun``)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from tracker.config import load_config, parse_overrides, with_overrides
from tracker.errors import InputError, TrackerError
from tracker.train.datasets import DEFAULT_CACHE_DIR, READERS
from tracker.train.options import TrainOptions
from tracker.train.trainer import train

EPILOG = f"""dataset names (DATA.TRAIN.DATASETS_NAME): {", ".join(READERS)}

example (the bundled model exactly as shipped, ~90 min on 2 CPU cores; see weights/manifest.json):
  python -m tracker.train --config configs/bundled_small.yaml \\
      --data OURS_SEQ=../shared/data/train/sequences --data OURS_IMG=../shared/data/train/images \\
      --out runs/bundled_small --seed 1 --threads 2 --workers 1 \\
      --val-seq UAV123_10fps_car16_1 --val-seq UAV123_10fps_wakeboard7 --no-progress
the official recipe on real datasets (MAE weights for the backbone, GPU, 4 processes):
  torchrun --nproc_per_node 4 -m tracker.train --config ostrack_vitb256_ce --pretrained mae_pretrain_vit_base.pth \\
      --data LASOT=/data/lasot --data GOT10K_vottrain=/data/got10k --data COCO17=/data/coco \\
      --data TRACKINGNET=/data/trackingnet --out runs/vitb256_ce
several processes: torchrun --nproc_per_node 2 -m tracker.train ... (NCCL on GPU, gloo on CPU)
one key changed without editing the YAML (the change travels in the exported weights):
  python -m tracker.train --config configs/bundled_small.yaml --set DATA.SEARCH.SCALE_JITTER=0.5 ..."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tracker.train",
        description="Train an OSTrack model (the official recipe, or the small bundled one).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, help="config name in configs/ or a YAML path")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="change one config key (dotted, YAML value)"
    )
    parser.add_argument("--data", action="append", default=[], metavar="NAME=PATH", help="root of a dataset")
    parser.add_argument("--out", required=True, type=Path, help="run folder: log, checkpoints, weights")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--resume", nargs="?", const="auto", help="continue from --out's last checkpoint or a file")
    parser.add_argument("--max-steps", type=int, help="stop after this step (the schedule is unchanged)")
    parser.add_argument("--max-minutes", type=float, help="stop after this many minutes of training (all parts)")
    parser.add_argument("--workers", type=int, help="data workers per process (default: from config and cores)")
    parser.add_argument("--threads", type=int, help="torch threads per process (default: cores / processes)")
    parser.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default: one epoch)")
    parser.add_argument("--log-every", type=int, help="steps between log lines (default: TRAIN.PRINT_INTERVAL)")
    parser.add_argument("--val-every", type=int, help="steps between validations (default: VAL_EPOCH_INTERVAL)")
    parser.add_argument("--val-seq", action="append", default=[], help="hold out this training sequence")
    parser.add_argument("--val-frames", type=int, help="track at most this many frames per held-out sequence")
    parser.add_argument("--val-fn", help="validation function module:function, (cfg, model) -> float")
    parser.add_argument("--pretrained", help="ViT checkpoint for the backbone (e.g. MAE); default PRETRAIN_FILE")
    parser.add_argument("--init", help="start from these whole-model weights (fine-tuning: fresh optimiser and "
                        "schedule); e.g. a second cycle of the bundled recipe from the first's final.safetensors")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="decoded-video cache folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def parse_data(entries: list[str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for entry in entries:
        name, sep, path = entry.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--data '{entry}' must look like NAME=PATH, e.g. OURS_SEQ=data/train/sequences")
        pairs.append((name, path))
    return tuple(pairs)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = "python -m tracker.train " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        options = TrainOptions(
            config=with_overrides(load_config(args.config), parse_overrides(args.set), source="--set"),
            data=parse_data(args.data),
            out_dir=args.out,
            seed=args.seed,
            device=args.device,
            max_steps=args.max_steps,
            max_minutes=args.max_minutes,
            workers=args.workers,
            threads=args.threads,
            checkpoint_every=args.checkpoint_every,
            log_every=args.log_every,
            val_every=args.val_every,
            val_sequences=tuple(args.val_seq),
            val_frames=args.val_frames,
            val_fn=args.val_fn,
            resume=args.resume,
            pretrained=args.pretrained,
            init=args.init,
            cache_dir=args.cache_dir,
            progress=not args.no_progress,
            command=command,
        )
        result = train(options)
    except TrackerError as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; continue with --resume", file=sys.stderr)
        return 130
    if result.main_process:
        best = ""
        if result.best_weights is not None and result.best_metric is not None:
            best = f", best {result.best_metric:.4f} in {result.best_weights}"
        print(f"done: step {result.step}/{result.total_steps}, weights {result.final_weights}{best}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
