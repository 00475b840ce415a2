"""Streaming grounding: causality, fixed memory, letterbox mapping, queries, events, weights, association."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.helpers import ROOT
from tracker import Box, CheckpointError, InputError, build_grounder
from tracker.checkpoint import save_safetensors
from tracker.config import load_config
from tracker.errors import ConfigError
from tracker.grounding import (
    Grounder,
    PresenceEvents,
    association_cost,
    clean_query,
    letterbox,
    linear_assignment,
)
from tracker.grounding import (
    build_grounder as build_grounder_direct,
)
from tracker.models.grounding import GroundingNet, Memory

TINY = ROOT / "tests" / "data" / "grounding_tiny.yaml"


def tiny_grounder(seed: int = 0) -> Grounder:
    torch.manual_seed(seed)
    cfg = load_config(TINY)
    return Grounder(GroundingNet(cfg), cfg, "cpu")


def frames(count: int, seed: int = 1, shape=(48, 80, 3)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=shape, dtype=np.uint8) for _ in range(count)]


def run(grounder: Grounder, images: list[np.ndarray], query: str = "the red square"):
    grounder.set_query(query)
    outs = []
    for image in images:
        step = grounder.ground(image)
        outs.append(
            (step.result.candidates, step.result.presence, step.result.events, step.embeddings.tobytes())
        )
    return outs


def test_no_output_depends_on_a_later_frame():
    images = frames(8)
    cut = 4
    perturbed = images[: cut + 1] + frames(len(images) - cut - 1, seed=99)
    first = run(tiny_grounder(), images)
    second = run(tiny_grounder(), perturbed)
    # Bit-identical up to frame ``cut``: candidates (boxes, scores), presence, events and appearance vectors.
    assert first[: cut + 1] == second[: cut + 1]
    assert first[cut + 1] != second[cut + 1]  # the perturbation is real and seen from its own frame on


def test_memory_is_a_fixed_length_fifo_of_past_states():
    grounder = tiny_grounder()
    grounder.set_query("the boat")
    length = grounder.memory_length
    assert length == 3 and not grounder.memory.valid.any()
    states = []
    for i, image in enumerate(frames(6)):
        before = grounder.memory.tokens.clone()
        grounder.ground(image)
        assert grounder.memory.tokens.shape == (1, length, 32)
        assert int(grounder.memory.valid.sum()) == min(i + 1, length)
        assert torch.equal(grounder.memory.tokens[:, 1:], before[:, :-1])  # older states shift back by one
        states.append(grounder.memory.tokens[0, 0].clone())
    assert torch.equal(grounder.memory.tokens[0, 2], states[-3])  # the oldest kept is three frames back
    grounder.set_query("the car")  # a new query forgets the old memory
    assert not grounder.memory.valid.any()


def test_memory_push_keeps_length():
    memory = Memory.empty(2, 3, 4)
    for value in range(5):
        memory = memory.push(torch.full((2, 4), float(value)))
    assert memory.tokens[:, :, 0].tolist() == [[4, 3, 2], [4, 3, 2]]
    assert memory.valid.all()


def test_letterbox_maps_boxes_back_to_frame_pixels():
    image = np.zeros((480, 640, 3), np.uint8)
    square, place = letterbox(image, 256, (10, 20, 30))
    assert square.shape == (256, 256, 3) and place.scale == pytest.approx(0.4)
    assert place.pad_y == 32 and place.pad_x == 0
    assert square[0, 0].tolist() == [10, 20, 30] and square[100, 100].tolist() == [0, 0, 0]
    # A frame box -> normalised input coordinates -> back again.
    box = Box(100, 200, 80, 40)
    cx = (box.cx * place.scale + place.pad_x) / 256
    cy = (box.cy * place.scale + place.pad_y) / 256
    back = place.to_frame(cx, cy, box.w * place.scale / 256, box.h * place.scale / 256, 256)
    assert back.as_list() == pytest.approx(box.as_list())
    # Boxes reaching into the padding are clipped to the frame.
    clipped = place.to_frame(0.5, 0.05, 0.2, 0.2, 256)
    assert clipped.y == 0 and clipped.x + clipped.w <= 640


def test_grounder_returns_frame_pixel_candidates_best_first():
    grounder = tiny_grounder()
    grounder.set_query("the red square")
    result = grounder.step(frames(1, shape=(120, 200, 3))[0])
    assert 1 <= len(result.candidates) <= 3 and 0.0 <= result.presence <= 1.0
    scores = [c.score for c in result.candidates]
    assert scores == sorted(scores, reverse=True)
    for cand in result.candidates:
        b = cand.box
        assert b.x >= 0 and b.y >= 0 and b.x + b.w <= 200 + 1e-6 and b.y + b.h <= 120 + 1e-6 and b.w >= 1
    assert result.elapsed_ms > 0


@pytest.mark.parametrize("bad", ["", "   \n\t ", None, 42])
def test_unusable_queries_are_clear_input_errors(bad):
    grounder = tiny_grounder()
    with pytest.raises(InputError, match="query"):
        grounder.set_query(bad)


def test_long_and_non_latin_queries_work():
    grounder = tiny_grounder()
    used = grounder.set_query("boat " * 2000)  # 10,000 characters
    assert grounder.query_truncated and len(used) < 10_000
    assert grounder.step(frames(1)[0]).presence >= 0
    grounder.set_query("белая лодка 白い船")
    assert not grounder.query_truncated
    assert grounder.step(frames(1)[0]).presence >= 0
    assert clean_query("  the\x00 white\n boat ") == "the white boat"


def test_step_before_a_query_is_an_input_error():
    with pytest.raises(InputError, match="no query"):
        tiny_grounder().step(frames(1)[0])


def test_presence_hysteresis_gives_start_and_end_events():
    events = PresenceEvents(on=0.6, off=0.4, frames=2)
    seen = [events.update(p) for p in (0.7, 0.5, 0.7, 0.8, 0.9, 0.5, 0.3, 0.5, 0.2, 0.1, 0.9)]
    assert seen == [(), (), (), ("start",), (), (), (), (), (), ("end",), ()]


def test_weights_round_trip_and_mismatch(tmp_path):
    grounder = tiny_grounder(seed=3)
    path = save_safetensors(grounder.model, grounder.cfg, tmp_path / "g.safetensors")
    loaded = build_grounder(weights=path, device="cpu")
    image = frames(1)[0]
    assert run(grounder, [image]) == run(loaded, [image])
    with pytest.raises(CheckpointError, match="does not fit"):
        build_grounder("grounding_hashed", path, device="cpu")
    tuned = build_grounder(weights=path, device="cpu", settings={"GROUNDING.REJECTED_MEMORY": "0"})
    assert tuned.gcfg.rejected_memory == 0 and loaded.gcfg.rejected_memory == 8
    assert run(tuned, [image]) == run(grounder, [image])  # a run-time setting, the same network
    with pytest.raises(ConfigError, match=r"unknown key GROUNDING\.REJECTED"):
        build_grounder(weights=path, device="cpu", settings={"GROUNDING.REJECTED": "0"})
    with pytest.raises(ConfigError, match=r"GROUNDING\.MEMORY_LENGTH shapes the grounding network") as err:
        build_grounder(weights=path, device="cpu", settings={"GROUNDING.MEMORY_LENGTH": "5"})
    assert "\n" not in str(err.value)


def test_keys_not_marked_as_shaping_the_network_leave_its_tensors_as_they_are():
    import dataclasses

    from tracker.config import GroundingConfig, grounding_network_keys

    cfg = load_config(TINY)
    shapes = {name: t.shape for name, t in GroundingNet(cfg).state_dict().items()}
    run_time = [f for f in dataclasses.fields(GroundingConfig) if f.name not in grounding_network_keys()]
    changed = 0
    for field in run_time:
        value = getattr(cfg.grounding, field.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        other = value + 3 if isinstance(value, int) else value * 0.5
        varied = dataclasses.replace(cfg, grounding=dataclasses.replace(cfg.grounding, **{field.name: other}))
        assert {n: t.shape for n, t in GroundingNet(varied).state_dict().items()} == shapes, field.name
        changed += 1
    assert changed >= 10  # top_k, presence_on, rejected_memory, ...
    wider = dataclasses.replace(cfg, grounding=dataclasses.replace(cfg.grounding, embed_dim=64))
    assert {n: t.shape for n, t in GroundingNet(wider).state_dict().items()} != shapes


def test_no_bundled_model_and_no_config_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("tracker.grounding.default_grounding_weights", lambda: None)
    with pytest.raises(CheckpointError, match="no bundled grounding model"):
        build_grounder_direct()


def test_bundled_weights_are_listed_in_the_manifest():
    manifest = ROOT / "weights" / "manifest.json"
    entries = json.loads(manifest.read_text())["files"] if manifest.is_file() else {}
    ours = {k: v for k, v in entries.items() if v.get("kind") == "grounding"}
    if not ours:
        pytest.skip("no grounding model bundled")
    for name, entry in ours.items():
        path = ROOT / "weights" / name
        assert path.is_file() and path.stat().st_size == entry["size"] and entry["size"] < 50e6
        assert entry["seed"] is not None and entry["training_command"]
    defaults = [name for name, entry in ours.items() if entry["default"]]
    assert len(defaults) <= 1  # one grounding model is the app's; the tracker's default flag is its own
    if defaults:
        from tracker.grounding import default_grounding_weights

        assert default_grounding_weights().name == defaults[0]


def test_linear_assignment_respects_the_cost_limit():
    cost = np.array([[0.9, 0.1, 0.8], [0.2, 0.95, 0.9]])
    matches, rows, cols = linear_assignment(cost, 0.5)
    assert sorted(matches) == [(0, 1), (1, 0)] and rows == [] and cols == [2]
    matches, rows, cols = linear_assignment(np.array([[0.9]]), 0.5)
    assert matches == [] and rows == [0] and cols == [0]
    assert linear_assignment(np.zeros((0, 2)), 0.5) == ([], [], [0, 1])


def test_association_cost_blends_iou_and_appearance():
    a = [Box(0, 0, 10, 10)]
    b = [Box(0, 0, 10, 10), Box(50, 50, 10, 10)]
    same, other = np.array([[1.0, 0.0]]), np.array([[1.0, 0.0], [0.0, 1.0]])
    cost = association_cost(a, same, b, other, appearance_weight=0.3)
    assert cost[0].tolist() == pytest.approx([0.0, 1.0])
    iou_only = association_cost(a, np.zeros((0, 2)), b, other, appearance_weight=0.3)
    assert iou_only[0].tolist() == pytest.approx([0.0, 1.0])
