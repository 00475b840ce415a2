"""Every backend against the reference on the conformance vectors (353 official tracker steps, tiny model).

The reference is the official run recorded in shared/conformance, which eager float32 reproduces (its boxes within
0.05 px in tests/test_conformance.py, and its CE removed-token sets exactly: ``test_eager_is_the_reference``).

Tolerances, per class of backend (tracker.accel):
- exact (eager, compile, float32): every box coordinate within 0.05 px and identical removed-token sets on every
  step checked.
- approximate (half precision, int8, fused attention): every box within ``APPROX_BOX_PX`` and identical removed
  sets on at least ``APPROX_SET_SHARE`` of the steps.
The default run checks a subset of steps where a backend is slow on this CPU; the full set runs with ``-m slow``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

import cv2
import pytest
import torch

from tests.helpers import CONFORMANCE, TINY_WEIGHTS, TINY_YAML
from tracker import Box, build_tracker

pytestmark = pytest.mark.skipif(not CONFORMANCE.is_dir(), reason="shared/conformance is not beside the repo")

EXACT_BOX_PX = 0.05
APPROX_BOX_PX = 1.0
APPROX_SET_SHARE = 0.99
TOTAL_STEPS = 353
SUBSET_STRIDE = 7  # the default run's subset: every 7th step of each run (51 steps, all three runs)


@dataclass(frozen=True)
class Agreement:
    steps: int
    worst_box_px: float
    same_sets: int  # steps whose removed-token sets match in every CE block
    worst_score: float

    @property
    def same_set_share(self) -> float:
        return self.same_sets / self.steps


@lru_cache(maxsize=1)
def conformance_steps() -> dict:
    return json.loads((CONFORMANCE / "tiny256ce_steps.json").read_text())


@lru_cache(maxsize=256)
def _frame(sequence: str, name: str):
    return cv2.imread(str(CONFORMANCE / "sequence" / sequence / name))


def agreement(tracker, stride: int = 1) -> Agreement:
    """Run the one-step protocol of the vectors (state set to the recorded previous box) on every ``stride``-th
    step of each run and compare boxes, removed-token sets and raw scores with the official record."""
    steps, worst_box, same, worst_score = 0, 0.0, 0, 0.0
    for run in conformance_steps()["runs"]:
        tracker.init(_frame(run["sequence"], run["init_frame"]), Box.from_xywh(run["init_box"]))
        for step in run["steps"][::stride]:
            tracker.state = Box.from_xywh(step["prev_state"])
            result = tracker.update(_frame(run["sequence"], step["frame"]))
            worst_box = max(worst_box, *(abs(a - b) for a, b in zip(result.box.as_list(), step["box"], strict=True)))
            mine = [sorted(r[0].tolist()) for r in tracker.last_output.removed]
            same += mine == step["removed_indexes_sorted"]
            worst_score = max(worst_score, abs(result.score - step["score_raw_max"]))
            steps += 1
    return Agreement(steps, worst_box, same, worst_score)


def assert_exact(found: Agreement, steps: int) -> None:
    assert found.steps == steps
    assert found.worst_box_px <= EXACT_BOX_PX, found
    assert found.same_sets == found.steps, found


def assert_approximate(found: Agreement, steps: int) -> None:
    assert found.steps == steps
    assert found.worst_box_px <= APPROX_BOX_PX, found
    assert found.same_set_share >= APPROX_SET_SHARE, found


def subset_size(stride: int) -> int:
    return sum(len(run["steps"][::stride]) for run in conformance_steps()["runs"])


def tiny_tracker(**kwargs):
    torch.manual_seed(0)
    return build_tracker(TINY_YAML, TINY_WEIGHTS, device="cpu", **kwargs)
