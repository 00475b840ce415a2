"""Do several targets give each the boxes it gets alone? Per clip, the headless app follows two boxes at once
(``python main.py --no-gui --init-box A --init-box B``) and each box alone, and this compares the results files.

Box A is the clip's first ground-truth box; box B is the same size, mirrored to the other side of the frame (what
a user might draw on a second object). A frame agrees when both runs report a box within ``--tolerance`` pixels
(every coordinate) or both report the target lost.

    python benchmarks/targets_agreement.py --dataset ../shared/data/sequences --out runs/targets_agreement
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def second_box(box: list[float], width: int) -> list[float]:
    """``box`` mirrored left to right in a frame ``width`` wide (kept inside it)."""
    x, y, w, h = box
    return [max(0.0, min(width - w, width - x - w)), y, w, h]


def run_app(video: Path, boxes: list[list[float]], out: Path, threads: int) -> dict[int, list]:
    """The headless app on ``video`` following ``boxes``; per target id, its boxes by frame (None when lost)."""
    command = [sys.executable, str(ROOT / "main.py"), "--no-gui", "--source", str(video), "--save-results", str(out)]
    for box in boxes:
        command += ["--init-box=" + ",".join(f"{v:.2f}" for v in box)]
    env = dict(os.environ, OSTRACK_LIVE_THREADS=str(threads))
    subprocess.run(command, check=True, capture_output=True, env=env, cwd=ROOT)
    tracks: dict[int, list] = {}
    for line in out.read_text().splitlines():
        record = json.loads(line)
        tracks.setdefault(record["id"], []).append(record["box"])
    return tracks


def agreement(together: list, alone: list, tolerance: float) -> float:
    """The share of frames on which the two runs agree (both lost, or every coordinate within ``tolerance``)."""
    same = [
        (a is None and b is None)
        or (a is not None and b is not None and np.max(np.abs(np.subtract(a, b))) <= tolerance)
        for a, b in zip(together, alone, strict=True)
    ]
    return float(np.mean(same))


def clip_agreement(folder: Path, threads: int, tolerance: float, work: Path) -> dict:
    import cv2

    box_a = [float(v) for v in (folder / "groundtruth.txt").read_text().splitlines()[0].split(",")]
    width = int(cv2.VideoCapture(str(folder / "video.mp4")).get(cv2.CAP_PROP_FRAME_WIDTH))
    box_b = second_box(box_a, width)
    video = folder / "video.mp4"
    both = run_app(video, [box_a, box_b], work / "both.jsonl", threads)
    first, second = (run_app(video, [box], work / f"{k}.jsonl", threads)[1] for k, box in (("a", box_a), ("b", box_b)))
    ids = sorted(both)
    return {
        "clip": folder.name,
        "frames": len(first),
        "target_1": agreement(both[ids[0]], first, tolerance),
        "target_2": agreement(both[ids[1]], second, tolerance),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--tolerance", type=float, default=0.5, help="pixels")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for folder in sorted(p for p in args.dataset.iterdir() if (p / "video.mp4").is_file()):
            rows.append(clip_agreement(folder, args.threads, args.tolerance, Path(work)))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    shares = [r[k] for r in rows for k in ("target_1", "target_2")]
    report = {
        "command": "python benchmarks/targets_agreement.py " + shlex.join(sys.argv[1:]),
        "clips": rows,
        "mean_agreement": float(np.mean(shares)),
        "worst_agreement": float(np.min(shares)),
        "targets_at_least_95_percent": int(sum(s >= 0.95 for s in shares)),
        "targets": len(shares),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "targets_agreement.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print("| clip | frames | target 1 agrees | target 2 agrees |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['clip']} | {r['frames']} | {r['target_1']:.3f} | {r['target_2']:.3f} |")
    print(
        f"\nmean {report['mean_agreement']:.3f}, worst {report['worst_agreement']:.3f}; "
        f"{report['targets_at_least_95_percent']} of {report['targets']} targets agree on at least 95% of frames"
    )


if __name__ == "__main__":
    main()
