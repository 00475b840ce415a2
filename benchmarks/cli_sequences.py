"""Score the headless CLI itself: ``python main.py --no-gui`` on every sequence of a dataset, with no weights
flag (so the bundled model), each run's ``--save-results`` file scored by the evaluation toolkit's scorer.

This is what a user gets, end to end (video decoding, the capture thread, the session, the recorder), as opposed
to ``python -m tracker.eval``, which feeds frames to the tracker directly. The two should agree.

    python benchmarks/cli_sequences.py --dataset ../shared/data/sequences --out runs/cli_sequences
    python benchmarks/cli_sequences.py --dataset ../shared/data/sequences --extra --backend --extra onnx
    python benchmarks/cli_sequences.py --dataset ../shared/data/sequences --query    # from language.txt, no box

Prints a per-sequence table (AUC, P@20, NP, frames, wall seconds) and the mean; writes ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tracker.eval.datasets import load_dataset
from tracker.eval.metrics import mean_score, score_sequence
from tracker.eval.sequence import Sequence, read_boxes

ROOT = Path(__file__).resolve().parent.parent


def run_cli(sequence: Sequence, out: Path, extra: list[str], query: bool = False) -> float:
    """Run ``main.py --no-gui`` on one sequence, started from its first ground-truth box (``--init-box``) or, with
    ``query``, from its ``language.txt`` alone (``--query``); wall seconds taken."""
    source = str(sequence.frame_paths[0].parent) if sequence.video is None else str(sequence.video)
    if query and not sequence.language:
        raise SystemExit(f"{sequence.name} has no language.txt; --query needs each sequence's caption")
    box = ",".join(f"{v:.2f}" for v in sequence.groundtruth[0])
    start_with = ["--query", sequence.language] if query else ["--init-box", box]
    command = [sys.executable, str(ROOT / "main.py"), "--source", source, *start_with, "--no-gui"]
    command += ["--save-results", str(out), *extra]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"main.py failed on {sequence.name} (exit {done.returncode}): {done.stderr.strip()[-400:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, type=Path)
    parser.add_argument("--out", type=Path, default=Path("runs/cli_sequences"))
    parser.add_argument("--query", action="store_true", help="start each run from the sequence's language.txt, no box")
    parser.add_argument("--extra", action="append", default=[], help="one more argument for main.py (repeatable)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows, scores = [], []
    for sequence in load_dataset(args.dataset):
        result_file = args.out / f"{sequence.name}.txt"
        seconds = run_cli(sequence, result_file, args.extra, args.query)
        pred = read_boxes(result_file)
        if len(pred) != len(sequence):
            raise SystemExit(f"{sequence.name}: {len(pred)} result lines for {len(sequence)} frames")
        score = score_sequence(pred, sequence.groundtruth, sequence.absent)
        scores.append(score)
        rows.append((sequence.name, score.auc, score.precision20, score.norm_precision, len(pred), seconds))
    mean = mean_score(scores)
    print("| sequence | AUC | P@20 | NP | frames | wall s |")
    print("|---|---|---|---|---|---|")
    for name, auc, p20, npr, frames, seconds in rows:
        print(f"| {name} | {auc:.3f} | {p20:.3f} | {npr:.3f} | {frames} | {seconds:.1f} |")
    print(f"| **mean** | **{mean.auc:.3f}** | **{mean.precision20:.3f}** | **{mean.norm_precision:.3f}** | "
          f"{sum(r[4] for r in rows)} | {sum(r[5] for r in rows):.1f} |")
    summary = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "mean": {"auc": mean.auc, "precision20": mean.precision20, "norm_precision": mean.norm_precision},
        "sequences": {r[0]: {"auc": r[1], "precision20": r[2], "norm_precision": r[3]} for r in rows},
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    if not np.isfinite(mean.auc):
        raise SystemExit("no frame was scored")


if __name__ == "__main__":
    main()
