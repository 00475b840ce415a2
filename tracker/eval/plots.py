"""OTB-style plots of an ``Evaluation``: every tracker on one figure, the legend ranked by its score."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: the evaluator never opens a window

import matplotlib.pyplot as plt
import numpy as np

from tracker.eval.metrics import IOU_THRESHOLDS, NORM_THRESHOLDS, PIXEL_THRESHOLDS, PRECISION_AT
from tracker.eval.runner import Evaluation


def _plot(
    curves: list[tuple[str, np.ndarray, float]],
    thresholds: np.ndarray,
    title: str,
    xlabel: str,
    ylabel: str,
    path: Path,
) -> Path:
    """One line per (label, curve, score), best score first in the legend."""
    figure, axes = plt.subplots(figsize=(6, 4.5), dpi=100)
    ranked = sorted(curves, key=lambda c: -c[2] if math.isfinite(c[2]) else math.inf)
    for label, curve, score in ranked:
        axes.plot(thresholds, curve, linewidth=2, label=f"{label} [{score:.3f}]")
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(thresholds[0], thresholds[-1]), ylim=(0, 1.0))
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left" if "Success" in title else "lower right", fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def write_plots(evaluation: Evaluation, out_dir: Path) -> list[Path]:
    """Write ``success.png`` (legend: AUC), ``precision.png`` (legend: P@20) and ``norm_precision.png``
    (legend: NP); returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    trackers = evaluation.trackers
    n = len(evaluation.sequences)
    return [
        _plot(
            [(t.name, t.mean.success, t.mean.auc) for t in trackers],
            IOU_THRESHOLDS,
            f"Success plots of OPE ({n} sequences)",
            "Overlap threshold",
            "Success rate",
            out_dir / "success.png",
        ),
        _plot(
            [(t.name, t.mean.precision, t.mean.precision20) for t in trackers],
            PIXEL_THRESHOLDS,
            f"Precision plots of OPE ({n} sequences)",
            "Location error threshold (px)",
            f"Precision (legend: at {PRECISION_AT:.0f} px)",
            out_dir / "precision.png",
        ),
        _plot(
            [(t.name, t.mean.norm_curve, t.mean.norm_precision) for t in trackers],
            NORM_THRESHOLDS,
            f"Normalised precision plots of OPE ({n} sequences)",
            "Normalised location error threshold",
            "Normalised precision",
            out_dir / "norm_precision.png",
        ),
    ]
