"""Training the box tracker (``python -m tracker.train``): readers, pair sampling, augmentation, losses, and the run
(``trainer``, with its parts in ``options``, ``distributed``, ``loader``, ``model_setup``, ``pretrained``,
``checkpoints``, ``schedule`` and ``validate``). Grounding training is its own package, ``tracker.train_grounding``.

The public entry point is ``train(TrainOptions(...))``.
"""

from tracker.train.options import TrainOptions, TrainResult
from tracker.train.trainer import train

__all__ = ["TrainOptions", "TrainResult", "train"]
