"""Evaluation toolkit: dataset readers, one-pass metrics, OpenCV baselines, runner, tables, plots and a CLI.

    python -m tracker.eval --dataset ../shared/data/sequences --tracker bundled --baselines mil,nano
"""

from tracker.eval.datasets import detect_layout, load_dataset
from tracker.eval.metrics import Score, centre_distance, iou, mean_score, score_sequence
from tracker.eval.runner import Evaluation, SequenceRun, TrackerEval, evaluate, run_sequence
from tracker.eval.sequence import Sequence
from tracker.eval.trackers import Tracker, TrackerSpec

__all__ = [
    "Evaluation",
    "Score",
    "Sequence",
    "SequenceRun",
    "Tracker",
    "TrackerEval",
    "TrackerSpec",
    "centre_distance",
    "detect_layout",
    "evaluate",
    "iou",
    "load_dataset",
    "mean_score",
    "run_sequence",
    "score_sequence",
]
