"""Training toolkit: readers, pair sampling, augmentation, losses and the trainer (``python -m tracker.train``).

Imports nothing heavy at package import time beyond the modules themselves; the public entry point is
``train(TrainOptions(...))``.
"""

from tracker.train.trainer import TrainOptions, TrainResult, train

__all__ = ["TrainOptions", "TrainResult", "train"]
