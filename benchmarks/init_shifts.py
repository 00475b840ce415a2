"""How much a score depends on the exact first box: the evaluation run once per init shift, then the mean.

A one-pixel move of the init box can flip a whole sequence for a tracker (see docs/benchmarks.md, section 3), so
one run's mean is a poor basis for choosing between two models. This runs ``python -m tracker.eval`` with each
``--init-shift`` in turn (the same trackers, baselines and options) and tabulates mean AUC per shift, the mean
over shifts and the mean P@20 over shifts, in the spirit of OTB's spatial robustness evaluation; then each
sequence's AUC averaged over the shifts, per tracker, which shows which sequences a gap between two trackers
comes from.

    python benchmarks/init_shifts.py --dataset ../shared/data/sequences --tracker bundled --baselines csrt \\
        --threads 1 --out runs/init_shifts --no-progress --no-plots

Every option of ``python -m tracker.eval`` applies except ``--init-shift``; ``--shifts`` lists the moves (default
the four of docs/benchmarks.md). Each shift's full report lands in ``<out>/shift_<dx>_<dy>/``; the table is
printed and written to ``<out>/shifts.md`` and ``<out>/shifts.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import sys

from tracker.errors import TrackerError
from tracker.eval.cli import build_parser, run, shift_text
from tracker.eval.report import markdown_table

DEFAULT_SHIFTS = ("0,0", "1,0", "0,1", "-1,-1")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = build_parser()
    parser.prog = "python benchmarks/init_shifts.py"
    parser.add_argument(
        "--shifts", nargs="+", default=list(DEFAULT_SHIFTS), metavar="DX,DY", help="init shifts, in pixels"
    )
    args = parser.parse_args(argv)
    if args.init_shift != (0.0, 0.0):
        parser.error("--init-shift is set per run here; list the moves with --shifts")
    try:
        args.shifts = [shift_text(text) for text in args.shifts]
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    return args


def shift_label(shift: tuple[float, float]) -> str:
    return f"{shift[0]:g},{shift[1]:g}"


ShiftTable = dict[str, dict[str, dict[str, float]]]


def run_shifts(args: argparse.Namespace, command: str) -> tuple[ShiftTable, ShiftTable]:
    """Over the shifts, each shift one full evaluation: {tracker: {shift label: {"auc", "precision20"}}} and
    {tracker: {shift label: {sequence: AUC}}}."""
    table: ShiftTable = {}
    per_sequence: ShiftTable = {}
    for shift in args.shifts:
        one = copy.copy(args)
        one.init_shift = shift
        one.out = args.out / f"shift_{shift[0]:g}_{shift[1]:g}"
        evaluation = run(one, f"{command} (this run: --init-shift={shift_label(shift)})")
        for tracker in evaluation.trackers:
            scores = {"auc": tracker.mean.auc, "precision20": tracker.mean.precision20}
            table.setdefault(tracker.name, {})[shift_label(shift)] = scores
            aucs = {one_run.sequence: one_run.score.auc for one_run in tracker.runs}
            per_sequence.setdefault(tracker.name, {})[shift_label(shift)] = aucs
        print(f"shift {shift_label(shift)}: " + ", ".join(f"{t.name} {t.mean.auc:.3f}" for t in evaluation.trackers))
    return table, per_sequence


def sequence_means(per_sequence: ShiftTable) -> dict[str, dict[str, float]]:
    """{tracker: {sequence: AUC averaged over the shifts}}."""
    means = {}
    for name, by_shift in per_sequence.items():
        runs = list(by_shift.values())
        means[name] = {seq: sum(run[seq] for run in runs) / len(runs) for seq in runs[0]}
    return means


def sequence_markdown(means: dict[str, dict[str, float]]) -> str:
    names = list(means)
    sequences = list(means[names[0]])
    rows = [(seq, *(f"{means[name][seq]:.3f}" for name in names)) for seq in sequences]
    return markdown_table(("sequence", *names), rows)


def summary_markdown(table: ShiftTable, labels: list[str]) -> str:
    header = ("tracker", *labels, "mean AUC", "mean P@20")
    rows = []
    for name, by_shift in table.items():
        aucs = [by_shift[label]["auc"] for label in labels]
        precisions = [by_shift[label]["precision20"] for label in labels]
        cells = [f"{a:.3f}" for a in aucs]
        rows.append((name, *cells, f"{sum(aucs) / len(aucs):.3f}", f"{sum(precisions) / len(precisions):.3f}"))
    return markdown_table(header, rows)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    command = " ".join(["python benchmarks/init_shifts.py", *map(shlex.quote, argv)])
    try:
        table, per_sequence = run_shifts(args, command)
    except TrackerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    labels = [shift_label(s) for s in args.shifts]
    means = sequence_means(per_sequence)
    text = (
        f"Mean AUC over the sequences at each init shift (DX,DY pixels).\n\n{summary_markdown(table, labels)}\n\n"
        f"Each sequence's AUC, mean over the shifts.\n\n{sequence_markdown(means)}\n"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "shifts.md").write_text(f"`{command}`\n\n{text}")
    (args.out / "shifts.json").write_text(
        json.dumps({"command": command, "by_tracker": table, "by_sequence": means}, indent=2)
    )
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
