"""The model and tracker reproduce vectors made by running the official OSTrack code (shared/conformance)."""

import hashlib
import json

import cv2
import pytest
import torch

from tests.helpers import CONFORMANCE, TINY_WEIGHTS, TINY_YAML
from tracker import Box, build_model, build_tracker, load_config
from tracker.models.vit import interpolate_pos_embed
from tracker.preprocess import crop_around, hann2d

pytestmark = pytest.mark.skipif(not CONFORMANCE.is_dir(), reason="shared/conformance is not beside the repo")
# The tiny model has random weights, so the gaps at its CE boundaries are ~1e-6: a CPU whose kernels round
# differently from the recording machine's may swap a near-tie and remove other tokens (2% of steps at most).
MAX_SWAPPED_SETS = 7


def _keys(name):
    return json.loads((CONFORMANCE / name).read_text())["keys"]


@pytest.mark.parametrize(
    ("config", "keys_file"),
    [("ostrack_vitb256_ce", "vitb256ce_keys.json"), ("ostrack_vitb384_ce", "vitb384ce_keys.json")],
)
def test_official_state_dict_layout(config, keys_file):
    with torch.device("meta"):
        model = build_model(config)
    mine = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()]
    assert mine == _keys(keys_file)


@pytest.mark.parametrize(("config", "keys_file"), [("ostrack_vitb256", "vitb256ce_keys.json")])
def test_non_ce_variant_has_the_same_layout(config, keys_file):
    with torch.device("meta"):
        model = build_model(config)
    assert [k for k in model.state_dict()] == [k for k, _, _ in _keys(keys_file)]


@pytest.fixture(scope="module")
def tiny_model():
    model = build_model(TINY_YAML).eval()
    state = torch.load(TINY_WEIGHTS, map_location="cpu", weights_only=True)["net"]
    model.load_state_dict(state, strict=True)
    return model


@pytest.fixture(scope="module")
def forward_ref():
    return torch.load(CONFORMANCE / "tiny256ce_forward.pt", map_location="cpu", weights_only=True)


def test_forward_matches_official(tiny_model, forward_ref):
    with torch.no_grad():
        out = tiny_model(
            forward_ref["template"], forward_ref["search"], ce_template_mask=forward_ref["ce_template_mask"]
        )
    for key in ("score_map", "size_map", "offset_map", "pred_boxes", "backbone_feat"):
        assert out[key].shape == forward_ref[key].shape, key
        assert (out[key] - forward_ref[key]).abs().max().item() <= 1e-4, key
    assert len(out["removed_indexes_s"]) == len(forward_ref["removed_indexes_s_int"])
    for mine, ref in zip(out["removed_indexes_s"], forward_ref["removed_indexes_s_int"], strict=False):
        assert set(mine[0].tolist()) == set(ref[0].tolist())


def test_removed_tokens_are_exact_zeros(tiny_model, forward_ref):
    with torch.no_grad():
        out = tiny_model(
            forward_ref["template"], forward_ref["search"], ce_template_mask=forward_ref["ce_template_mask"]
        )
    removed = torch.cat(out["removed_indexes_s"], dim=1)[0]
    search = out["backbone_feat"][0, 64:]
    assert torch.count_nonzero(search[removed]) == 0
    kept = torch.ones(256, dtype=torch.bool)
    kept[removed] = False
    assert bool((search[kept].abs().sum(dim=1) > 0).all())


def test_kept_counts_follow_the_general_rule():
    assert load_config("ostrack_vitb256_ce").ce_keep_counts() == [180, 126, 89]
    assert load_config("ostrack_vitb384_ce").ce_keep_counts() == [404, 283, 199]


def test_pretrain_position_interpolation(forward_ref):
    tables = forward_ref["pos_embed_interp"]
    for key, side in (("z_128", 8), ("x_256", 16), ("z_192", 12), ("x_384", 24)):
        assert torch.allclose(interpolate_pos_embed(tables["pos_embed_224"], side), tables[key], atol=1e-6)


def test_hann_window(forward_ref):
    assert torch.equal(hann2d(16), forward_ref["hann_window"])


@pytest.fixture(scope="module")
def steps():
    return json.loads((CONFORMANCE / "tiny256ce_steps.json").read_text())


def test_every_tracker_step_matches_official(steps):
    tracker = build_tracker(TINY_YAML, TINY_WEIGHTS, device="cpu", backend="eager")  # the reference path
    cfg = tracker.cfg
    checked = swapped = 0
    for run in steps["runs"]:
        folder = CONFORMANCE / "sequence" / run["sequence"]
        first = cv2.imread(str(folder / run["init_frame"]))
        tracker.init(first, Box.from_xywh(run["init_box"]))
        template = crop_around(cv2.cvtColor(first, cv2.COLOR_BGR2RGB), tracker.state, 2.0, 128)
        assert hashlib.md5(template.image.tobytes()).hexdigest() == run["template_crop_md5"]
        for step in run["steps"]:
            frame = cv2.imread(str(folder / step["frame"]))
            prev = Box.from_xywh(step["prev_state"])
            search = crop_around(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), prev, cfg.test.search_factor, 256)
            assert hashlib.md5(search.image.tobytes()).hexdigest() == step["search_crop_md5"], step["frame"]
            assert search.resize_factor == step["resize_factor"]
            tracker.state = prev
            result = tracker.update(frame)
            checked += 1
            if [sorted(r[0].tolist()) for r in tracker.last_output.removed] != step["removed_indexes_sorted"]:
                swapped += 1  # a near-tie at a CE boundary fell the other way: other tokens, another box
                continue
            for mine, ref in zip(result.box.as_list(), step["box"], strict=False):
                assert abs(mine - ref) <= 0.05, (run["variant"], step["frame"], result.box, step["box"])
            assert abs(result.score - step["score_raw_max"]) <= 1e-4
    assert checked == sum(len(run["steps"]) for run in steps["runs"]) == 353
    # Every set on the CPUs of earlier runs; 6 of 353 swapped on an AVX2-only EPYC, whose kernels round differently.
    assert swapped <= MAX_SWAPPED_SETS, f"{swapped} of 353 steps removed other tokens than the official code"
