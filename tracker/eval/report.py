"""Tables of an ``Evaluation``: plain text for the terminal, Markdown (``results.md``) and JSON
(``results.json``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tracker.eval.metrics import IOU_THRESHOLDS, NORM_THRESHOLDS, PIXEL_THRESHOLDS, Score
from tracker.eval.runner import Evaluation, SequenceRun, TrackerEval

MEAN_HEADER = ("tracker", "AUC", "P@20", "NP", "step FPS (median)", "end-to-end FPS", "frames")
SEQUENCE_HEADER = ("sequence", "tracker", "AUC", "P@20", "NP", "step FPS", "e2e FPS", "frames")


def _num(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _fps(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def mean_rows(evaluation: Evaluation) -> list[tuple[str, ...]]:
    """One row per tracker: mean AUC, P@20, NP over sequences, median step FPS, end-to-end FPS, scored
    frames."""
    return [
        (
            t.name,
            _num(t.mean.auc),
            _num(t.mean.precision20),
            _num(t.mean.norm_precision),
            _fps(t.step_fps),
            _fps(t.frame_fps),
            str(t.mean.frames),
        )
        for t in evaluation.trackers
    ]


def sequence_rows(evaluation: Evaluation) -> list[tuple[str, ...]]:
    """One row per (sequence, tracker), sequences in dataset order."""
    rows = []
    for index, name in enumerate(evaluation.sequences):
        for tracker in evaluation.trackers:
            run = tracker.runs[index]
            rows.append(
                (
                    name,
                    tracker.name,
                    _num(run.score.auc),
                    _num(run.score.precision20),
                    _num(run.score.norm_precision),
                    _fps(run.step_fps),
                    _fps(run.frame_fps),
                    str(run.score.frames),
                )
            )
    return rows


def text_table(header: tuple[str, ...], rows: list[tuple[str, ...]], text_columns: int = 1) -> str:
    """Columns padded to their widest cell; the first ``text_columns`` left-aligned, numbers right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i < text_columns else c.rjust(w) for i, (c, w) in pairs)

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def markdown_table(header: tuple[str, ...], rows: list[tuple[str, ...]], text_columns: int = 1) -> str:
    align = ["---" if i < text_columns else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def console_summary(evaluation: Evaluation) -> str:
    """What the CLI prints: per-sequence rows, the mean table, and skipped trackers."""
    parts = [
        text_table(SEQUENCE_HEADER, sequence_rows(evaluation), 2),
        "",
        text_table(MEAN_HEADER, mean_rows(evaluation)),
    ]
    parts += [f"skipped {s.name}: {s.reason}" for s in evaluation.skipped]
    return "\n".join(parts)


def markdown_report(evaluation: Evaluation, plots: list[Path] | None = None) -> str:
    """``results.md``: how it was measured, the mean table, per-sequence AUC and full rows, plots."""
    lines = [
        "# Tracking evaluation",
        "",
        f"Dataset `{evaluation.dataset}` (layout `{evaluation.layout}`), "
        f"{len(evaluation.sequences)} sequences"
        + (f", at most {evaluation.max_frames} frames each" if evaluation.max_frames else "")
        + ".",
        "",
        "One-pass evaluation: each tracker starts from the ground-truth box of frame 0, which is not "
        "scored; frames without a visible target are skipped; a tracker that reports failure keeps its last "
        "box. AUC is the mean success rate over 21 IoU thresholds 0..1 (IoU strictly above the threshold), "
        "P@20 the share of frames with centre error at most 20 px, NP the mean share over 51 thresholds "
        "0..0.5 of the centre error normalised by the ground-truth size. Means weigh every sequence the "
        "same. Step FPS is 1 / the median `update` time; end-to-end FPS is frames / total time of decode + "
        "`update`.",
        "",
    ]
    if evaluation.settings:
        lines += [", ".join(f"{k}: `{v}`" for k, v in evaluation.settings.items()), ""]
    lines += ["## Mean over sequences", "", markdown_table(MEAN_HEADER, mean_rows(evaluation)), ""]
    if evaluation.skipped:
        lines += [f"- skipped {s.name}: {s.reason}" for s in evaluation.skipped] + [""]
    lines += ["## AUC per sequence", "", markdown_table(*_auc_matrix(evaluation)), ""]
    lines += ["## Per sequence", "", markdown_table(SEQUENCE_HEADER, sequence_rows(evaluation), 2), ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    return "\n".join(lines)


def _auc_matrix(evaluation: Evaluation) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    header = ("sequence", *(t.name for t in evaluation.trackers))
    rows = [
        (name, *(_num(t.runs[i].score.auc) for t in evaluation.trackers))
        for i, name in enumerate(evaluation.sequences)
    ]
    return header, rows


def _score_dict(score: Score) -> dict:
    return {
        "auc": _finite(score.auc),
        "precision20": _finite(score.precision20),
        "norm_precision": _finite(score.norm_precision),
        "frames": score.frames,
        "success_curve": [_finite(v) for v in score.success],
        "precision_curve": [_finite(v) for v in score.precision],
        "norm_precision_curve": [_finite(v) for v in score.norm_curve],
    }


def _run_dict(run: SequenceRun) -> dict:
    return {
        "sequence": run.sequence,
        **_score_dict(run.score),
        "step_fps": _finite(run.step_fps),
        "frame_fps": _finite(run.frame_fps),
        "init_ms": run.init_ms,
        "step_ms": [round(float(v), 4) for v in run.step_ms],
        "frame_ms": [round(float(v), 4) for v in run.frame_ms],
    }


def _tracker_dict(tracker: TrackerEval) -> dict:
    return {
        "name": tracker.name,
        "mean": _score_dict(tracker.mean),
        "step_fps": _finite(tracker.step_fps),
        "frame_fps": _finite(tracker.frame_fps),
        "sequences": [_run_dict(r) for r in tracker.runs],
    }


def evaluation_dict(evaluation: Evaluation) -> dict:
    """Everything as JSON-ready data (NaN becomes null); boxes stay in the results/*.txt files."""
    return {
        "dataset": evaluation.dataset,
        "layout": evaluation.layout,
        "sequences": list(evaluation.sequences),
        "max_frames": evaluation.max_frames,
        "settings": evaluation.settings,
        "thresholds": {
            "iou": IOU_THRESHOLDS.tolist(),
            "pixels": PIXEL_THRESHOLDS.tolist(),
            "normalised": NORM_THRESHOLDS.tolist(),
        },
        "trackers": [_tracker_dict(t) for t in evaluation.trackers],
        "skipped": [{"name": s.name, "reason": s.reason} for s in evaluation.skipped],
    }


def write_reports(
    evaluation: Evaluation, out_dir: Path, plots: list[Path] | None = None
) -> tuple[Path, Path]:
    """Write ``results.md`` and ``results.json`` into ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / "results.md", out_dir / "results.json"
    md.write_text(markdown_report(evaluation, plots), encoding="utf-8")
    js.write_text(json.dumps(evaluation_dict(evaluation), indent=1), encoding="utf-8")
    return md, js


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
