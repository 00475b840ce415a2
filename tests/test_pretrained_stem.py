"""NanoTrack v3's backbone as the one-stream ViT's patch embedding: built from the config, told apart by its
tensors, loaded for training, frozen on schedule, and the template embedded once per target."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from tracker import build_tracker
from tracker.arch import infer_config, read_architecture
from tracker.build import load_model
from tracker.config import load_config, with_overrides
from tracker.errors import CheckpointError, ConfigError, InputError
from tracker.models.ostrack import build_model
from tracker.models.vit import NanoTrackStem
from tracker.train.model_setup import build_optimizer
from tracker.train.pretrained import freeze_stem_while_scheduled, load_pretrained_backbone
from tracker.types import Box

PEERS = Path(__file__).resolve().parents[1] / ".." / "shared" / "peers" / "nanotrack_v3"
NANO_WEIGHTS = PEERS / "nanotrack_v3.safetensors"
needs_peers = pytest.mark.skipif(not NANO_WEIGHTS.is_file(), reason=f"{NANO_WEIGHTS} is absent")


def _config(**keys: str):
    return with_overrides(load_config("bundled_nano_vit"), keys, source="test")


def _model(**keys: str):
    torch.manual_seed(0)
    return build_model(_config(**keys))


def test_the_stem_feeds_its_body_the_bgr_pixels_the_normalised_rgb_crop_came_from():
    cfg = _config()
    stem = build_model(cfg).backbone.patch_embed
    assert isinstance(stem, NanoTrackStem)
    bgr = torch.randint(0, 256, (1, 3, 96, 96)).float()
    mean, std = torch.tensor(cfg.data.mean).view(1, 3, 1, 1), torch.tensor(cfg.data.std).view(1, 3, 1, 1)
    normalised_rgb = (bgr.flip(1) / 255 - mean) / std
    seen = {}
    stem.body.register_forward_hook(lambda _m, args, _out: seen.update(pixels=args[0]))
    tokens = stem(normalised_rgb)
    assert torch.allclose(seen["pixels"], bgr, atol=1e-3)
    assert tokens.shape == (1, 36, cfg.backbone.embed_dim)  # 96 px at stride 16: 6 x 6 tokens


def test_a_stem_needs_nanotracks_stride():
    with pytest.raises(ConfigError, match="STEM nanotrack_v3 has stride 16"):
        _config(**{"MODEL.BACKBONE.STRIDE": "8", "DATA.TEMPLATE.SIZE": "96", "DATA.SEARCH.SIZE": "192"})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("TRAIN.STEM_FREEZE_EPOCH", "-1", "STEM_FREEZE_EPOCH must be 0 or more"),
     ("TRAIN.STEM_MULTIPLIER", "-0.1", "STEM_MULTIPLIER must be 0")],
)
def test_a_bad_stem_schedule_is_refused_in_one_line(key, value, message):
    with pytest.raises(ConfigError, match=message):
        _config(**{key: value})


def test_its_weights_are_told_apart_from_the_conv_stems_and_find_their_config():
    state = _model().state_dict()
    arch = read_architecture(state, "test")
    assert (arch.stride, arch.template_size, arch.search_size) == (16, 96, 192)
    assert infer_config(state, "test").name == "bundled_nano_vit"


@needs_peers
def test_training_loads_nanotrack_v3_into_the_stem_and_nothing_else():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_pretrained_backbone(model, str(NANO_WEIGHTS))
    assert "190 tensors" in report
    released = load_file(str(NANO_WEIGHTS))
    after = model.state_dict()
    body = "backbone.patch_embed.body."
    assert torch.equal(after[body + "features.9.conv.7.weight"], released["backbone.features.9.conv.7.weight"])
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all(k.startswith(body) for k in changed)


@needs_peers
def test_a_file_without_the_backbone_is_refused_in_one_line(tmp_path):
    head_only = {k: v for k, v in load_file(str(NANO_WEIGHTS)).items() if k.startswith("ban_head.")}
    path = tmp_path / "head.safetensors"
    save_file(head_only, str(path))
    with pytest.raises(CheckpointError, match="does not fit the NanoTrack v3 backbone") as err:
        load_pretrained_backbone(_model(), str(path))
    assert "\n" not in str(err.value)


def _one_training_step(model, cfg, step: int, steps_per_epoch: int) -> None:
    freeze_stem_while_scheduled(model, cfg, step, steps_per_epoch)
    model.train()
    optimizer = build_optimizer(model, cfg)
    out = model(torch.randn(2, 3, 96, 96), torch.randn(2, 3, 192, 192))
    optimizer.zero_grad()
    out["score_map"].sum().backward()
    optimizer.step()


def test_the_stem_stays_as_loaded_until_its_epoch_then_trains_and_its_batchnorm_never_moves():
    cfg = _config(**{"TRAIN.STEM_FREEZE_EPOCH": "2", "TRAIN.STEM_MULTIPLIER": "0.1"})
    model = build_model(cfg)
    body = model.backbone.patch_embed.body
    weights = {k: v.clone() for k, v in body.state_dict().items()}
    _one_training_step(model, cfg, step=19, steps_per_epoch=10)  # epoch 1.9: frozen
    assert all(torch.equal(v, weights[k]) for k, v in body.state_dict().items())
    assert model.backbone.patch_embed.proj.weight.grad is not None  # the projection trains from the start
    _one_training_step(model, cfg, step=20, steps_per_epoch=10)  # epoch 2: thawed
    moved = {k for k, v in body.state_dict().items() if not torch.equal(v, weights[k])}
    assert any(k.endswith("weight") for k in moved)
    assert not any(k.endswith(("running_mean", "running_var")) for k in moved)


def test_a_zero_multiplier_keeps_the_stem_frozen_for_good():
    cfg = _config(**{"TRAIN.STEM_FREEZE_EPOCH": "0", "TRAIN.STEM_MULTIPLIER": "0"})
    model = build_model(cfg)
    freeze_stem_while_scheduled(model, cfg, step=10_000, steps_per_epoch=10)
    assert model.backbone.patch_embed.body_frozen


def test_the_optimiser_gives_the_stem_its_own_learning_rate():
    cfg = _config(**{"TRAIN.LR": "0.001", "TRAIN.BACKBONE_MULTIPLIER": "0.5", "TRAIN.STEM_MULTIPLIER": "0.1"})
    model = build_model(cfg)
    groups = build_optimizer(model, cfg).param_groups
    stem_ids = {id(p) for p in model.backbone.patch_embed.body.parameters()}
    stem_group = next(g for g in groups if {id(p) for p in g["params"]} == stem_ids)
    assert stem_group["lr"] == pytest.approx(0.001 * 0.5 * 0.1)


def test_embedding_the_template_once_gives_the_same_step_as_the_whole_forward():
    model = _model().eval()
    template, search = torch.randn(1, 3, 96, 96), torch.randn(1, 3, 192, 192)
    with torch.no_grad():
        whole = model(template, search)
        split = model.forward_embedded(model.embed_template(template), search)
    for key in ("score_map", "size_map", "offset_map"):
        assert torch.equal(whole[key], split[key])


def test_the_tracker_embeds_the_template_at_init_and_never_again(monkeypatch):
    tracker = build_tracker("bundled_nano_vit", device="cpu", backend="eager")
    calls = []
    real = tracker.model.backbone.embed_template
    monkeypatch.setattr(tracker.model.backbone, "embed_template", lambda z: calls.append(1) or real(z))
    frame = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    tracker.init(frame, Box(140, 100, 40, 40))
    for _ in range(3):
        tracker.update(frame)
    assert len(calls) == 1


# ---------------------------------------------------------------------------------------------------------------
# STEM conv+nanotrack_v3: NanoTrack's features added to a trained conv stem, from zero


def _plus_config(**keys: str):
    return with_overrides(load_config("bundled_small"), {"MODEL.BACKBONE.STEM": "conv+nanotrack_v3", **keys}, "test")


def test_the_added_stem_starts_as_the_conv_stem_alone():
    torch.manual_seed(0)
    model = build_model(_plus_config()).eval()
    embed = model.backbone.patch_embed
    image = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        conv_only = embed.proj(embed.body(image)).flatten(2).transpose(1, 2)
        assert torch.equal(embed(image), conv_only)
        embed.pretrained.proj.weight.fill_(0.01)  # once its projection has trained, the features count
        assert not torch.allclose(embed(image), conv_only)


def _conv_stem_file(tmp_path: Path) -> Path:
    from tracker.checkpoint import save_safetensors

    torch.manual_seed(3)
    cfg = load_config("bundled_small")
    path = tmp_path / "conv.safetensors"
    save_safetensors(build_model(cfg), cfg, path)
    return path


def _setup(cfg, init: Path, pretrained: Path | str):
    from tracker.train.distributed import DistInfo
    from tracker.train.model_setup import build_training_model
    from tracker.train.options import TrainOptions

    options = TrainOptions(config=cfg, data=(), out_dir=Path("unused"), init=str(init), pretrained=str(pretrained))
    return build_training_model(options, DistInfo(0, 1, 0, 1, torch.device("cpu")), lambda _line: None)


@needs_peers
def test_a_trained_conv_model_gains_the_pretrained_stem_and_keeps_its_outputs(tmp_path):
    init = _conv_stem_file(tmp_path)
    model = _setup(_plus_config(), init, NANO_WEIGHTS).eval()
    donor = load_file(str(init))
    state = model.state_dict()
    assert all(torch.equal(state[key], value) for key, value in donor.items())
    released = load_file(str(NANO_WEIGHTS))
    key = "features.9.conv.7.weight"
    assert torch.equal(state["backbone.patch_embed.pretrained.body." + key], released["backbone." + key])
    conv_model, _ = load_model(None, init)
    template, search = torch.randn(1, 3, 80, 80), torch.randn(1, 3, 160, 160)
    with torch.no_grad():
        assert torch.equal(model(template, search)["score_map"], conv_model(template, search)["score_map"])


@needs_peers
def test_the_pretrained_body_is_in_the_stem_group_and_frozen_with_a_zero_multiplier(tmp_path):
    cfg = _plus_config(**{"TRAIN.STEM_MULTIPLIER": "0", "TRAIN.LR": "0.001"})
    model = _setup(cfg, _conv_stem_file(tmp_path), NANO_WEIGHTS)
    freeze_stem_while_scheduled(model, cfg, step=10_000, steps_per_epoch=10)
    assert model.backbone.patch_embed.pretrained.body_frozen
    groups = build_optimizer(model, cfg).param_groups
    body_ids = {id(p) for p in model.backbone.patch_embed.pretrained.body.parameters()}
    stem_group = next(g for g in groups if {id(p) for p in g["params"]} == body_ids)
    assert stem_group["lr"] == 0
    projection = model.backbone.patch_embed.pretrained.proj.weight
    assert any(projection is p for g in groups if g["lr"] > 0 for p in g["params"])  # it learns from zero


def test_init_and_pretrained_together_need_the_added_stem(tmp_path):
    with pytest.raises(InputError, match=r"needs MODEL.BACKBONE.STEM conv\+nanotrack_v3") as err:
        _setup(load_config("bundled_small"), tmp_path / "absent.safetensors", NANO_WEIGHTS)
    assert "\n" not in str(err.value)


@needs_peers
def test_an_init_file_that_already_has_the_stem_is_refused(tmp_path):
    from tracker.checkpoint import save_safetensors

    cfg = _plus_config()
    path = tmp_path / "plus.safetensors"
    save_safetensors(build_model(cfg), cfg, path)
    with pytest.raises(InputError, match="already has a pretrained stem"):
        _setup(cfg, path, NANO_WEIGHTS)


def test_the_added_stem_tracks_with_its_template_embedded_once():
    torch.manual_seed(0)
    model = build_model(_plus_config()).eval()
    template, search = torch.randn(1, 3, 80, 80), torch.randn(1, 3, 160, 160)
    with torch.no_grad():
        whole = model(template, search)
        split = model.forward_embedded(model.embed_template(template), search)
    assert torch.equal(whole["score_map"], split["score_map"])
