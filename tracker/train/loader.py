"""The training data as batches: the datasets read from their roots (minus held-out sequences), and a loader whose
step ``s`` always yields the same samples on the same process, so runs repeat and resume exactly."""

from __future__ import annotations

import os
from collections.abc import Iterator

import cv2
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler

from tracker.config import Config
from tracker.errors import InputError
from tracker.train.datasets import TrainingSource, hold_out, load_source, warm_video_cache
from tracker.train.distributed import DistInfo
from tracker.train.options import TrainOptions
from tracker.train.sampler import PairDataset, collate_pairs


def default_workers(cfg: Config, info: DistInfo) -> int:
    """Data workers per process: the config's NUM_WORKER, but leave the model one core per process."""
    spare = max(0, (os.cpu_count() or 1) // max(info.local_world, 1) - 1)
    return max(0, min(cfg.train.num_worker, max(spare, 1)))


def worker_init(_: int) -> None:
    """A data worker's start: one thread each for torch and OpenCV."""
    # Each worker crops and augments single samples: more threads per worker only oversubscribe the cores.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


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
        worker_init_fn=worker_init,
        generator=generator,
        # Fresh worker processes: a forked copy of a parent that already ran OpenCV's thread pool can deadlock.
        multiprocessing_context="spawn" if workers else None,
        prefetch_factor=4 if workers else None,
    )
