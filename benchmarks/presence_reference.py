"""Does a caption that names nothing in particular cancel a scene's presence level? (issue 22)

Per clip, the grounder runs causally over the first ``--frames`` frames once per caption, each stream with its own
memory: the clip's own caption, the foreign caption the grounding evaluation uses (a description of something that
cannot be in the scene) and each ``--reference`` caption. Printed: the pooled presence ROC AUC (own caption on
visible frames against the foreign caption) of the presence logit as it is, and minus ``w`` times a reference's
logit for each ``w`` in ``--weights``; then each clip's mean logits. ``--save`` keeps the per-frame logits, so
other weights can be scored without running the grounder again (``--load``).

    python benchmarks/presence_reference.py --dataset ../shared/data/train/sequences --frames 120 --threads 2
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tracker.eval.datasets import load_dataset  # noqa: E402 (after the path set-up, so it runs from a checkout)
from tracker.eval.metrics import roc_auc  # noqa: E402
from tracker.grounding import Grounder, build_grounder  # noqa: E402
from tracker.train_grounding.evaluate import foreign_caption  # noqa: E402

REFERENCES = ("an object", "the thing in the middle of the picture")
SATURATION = 1e-7  # presence this close to 0 or 1 counts as that far, so every frame has a finite logit


def logits(grounder: Grounder, frames: list[np.ndarray], caption: str) -> list[float]:
    """The presence logit on each frame, one causal stream from an empty memory."""
    grounder.set_query(caption)
    values = []
    for image in frames:
        p = min(max(grounder.step(image).presence, SATURATION), 1 - SATURATION)
        values.append(math.log(p / (1 - p)))
    return values


def collect(args: argparse.Namespace) -> dict[str, dict]:
    torch.set_num_threads(args.threads)
    sequences = load_dataset(args.dataset, layout="ours")
    grounder = build_grounder(None, args.grounder, "cpu")
    clips = {}
    for seq in sequences:
        frames = [image for _, image in zip(range(args.frames), seq.frames(), strict=False)]
        other = foreign_caption(seq, sequences)
        clips[seq.name] = {
            "visible": seq.visible[: len(frames)].tolist(),
            "own": logits(grounder, frames, seq.language or ""),
            "foreign": logits(grounder, frames, other) if other else None,
            "references": {text: logits(grounder, frames, text) for text in args.reference},
        }
        print(f"{seq.name}: {len(frames)} frames", flush=True)
    return clips


def pooled_roc(clips: dict[str, dict], reference: str | None, weight: float) -> float:
    """Own caption on visible frames against the foreign caption on all, over every clip that has one."""
    positives, negatives = [], []
    for clip in clips.values():
        if clip["foreign"] is None:
            continue
        shift = weight * np.asarray(clip["references"][reference]) if reference else 0.0
        positives.append((np.asarray(clip["own"]) - shift)[np.asarray(clip["visible"], bool)])
        negatives.append(np.asarray(clip["foreign"]) - shift)
    return roc_auc(np.concatenate(positives), np.concatenate(negatives))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, help="captioned sequences (our layout)")
    parser.add_argument("--grounder", help="grounding weights (default: the bundled grounder)")
    parser.add_argument("--frames", type=int, default=100_000, help="frames per clip, from the first")
    parser.add_argument("--reference", action="append", help=f"a reference caption (default: {REFERENCES})")
    parser.add_argument("--weights", default="0.25,0.5,0.75,1.0", help="multiples of a reference logit to subtract")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--save", type=Path, help="write the per-frame logits here (JSON)")
    parser.add_argument("--load", type=Path, help="score logits saved by --save instead of running the grounder")
    args = parser.parse_args()
    args.reference = args.reference or list(REFERENCES)
    if args.load is None and args.dataset is None:
        parser.error("give --dataset (to run the grounder) or --load (saved logits)")
    clips = json.loads(args.load.read_text()) if args.load else collect(args)
    if args.save:
        args.save.write_text(json.dumps(clips))
    references = list(next(iter(clips.values()))["references"])
    print(f"\n| presence logit | pooled ROC AUC ({sum(c['foreign'] is not None for c in clips.values())} clips) |")
    print("|---|---:|")
    print(f"| as it is | {pooled_roc(clips, None, 0.0):.4f} |")
    for text in references:
        for weight in (float(w) for w in args.weights.split(",")):
            print(f"| minus {weight:g} x \"{text}\" | {pooled_roc(clips, text, weight):.4f} |")
    print("\n| clip | own | foreign | " + " | ".join(references) + " |")
    print("|---|---:|---:|" + "---:|" * len(references))
    for name, clip in clips.items():
        foreign = f"{np.mean(clip['foreign']):.2f}" if clip["foreign"] else "-"
        refs = " | ".join(f"{np.mean(clip['references'][t]):.2f}" for t in references)
        print(f"| {name} | {np.mean(clip['own']):.2f} | {foreign} | {refs} |")


if __name__ == "__main__":
    main()
