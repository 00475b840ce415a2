"""Grounding training: captions from pixels and labels, synthetic clips, the clip dataset, readers, losses, and
the trainer (seeded, resumable, exporting safetensors and a manifest entry next to other writers' entries)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import ROOT
from tracker.config import load_config
from tracker.errors import InputError
from tracker.grounding import letterbox
from tracker.models.grounding import GroundingNet, resize_grid
from tracker.train_grounding.captions import (
    absent_caption,
    colour_word,
    contrast_caption,
    foreign_caption,
    label_caption,
    mirror_caption,
)
from tracker.train_grounding.data import (
    GroundingDataset,
    boxes_in_view,
    collate_clips,
    read_language_sequences,
    read_lasot_language,
    read_otb_lang,
    read_tnl2k_language,
    view_matrix,
)
from tracker.train_grounding.losses import event_targets, grounding_loss, heat_targets
from tracker.train_grounding.synth import Drawn, describe, synthetic_clip
from tracker.train_grounding.trainer import main as train_main

TINY = ROOT / "tests" / "data" / "grounding_tiny.yaml"


def test_colour_words_only_where_one_colour_dominates():
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, :20] = (230, 30, 30)  # red (RGB)
    image[:, 20:40] = (250, 250, 250)
    stripes = np.array([(230, 30, 30), (30, 200, 40), (30, 60, 230)], np.uint8)
    image[:, 40:] = stripes[np.arange(40)[:, None].repeat(20, 1) % 3]  # red, green and blue in equal parts
    assert colour_word(image, np.array([0, 0, 20, 40])) == "red"
    assert colour_word(image, np.array([20, 0, 20, 40])) == "white"
    assert colour_word(image, np.array([40, 0, 20, 40])) is None


def test_label_captions_name_the_boxes_they_describe():
    image = np.full((100, 300, 3), 128, np.uint8)
    boxes = np.array([[10, 30, 40, 40], [240, 30, 40, 40], [120, 10, 30, 30]], float)
    labels = ("raccoon", "raccoon", "dog")
    for seed in range(20):
        caption, named = label_caption(image, boxes, labels, "raccoon", np.random.default_rng(seed))
        if "left" in caption:
            assert named.tolist() == [0]
        elif "right" in caption:
            assert named.tolist() == [1]
        else:
            assert named.tolist() == [0, 1] and caption.endswith("s")
    caption, named = label_caption(image, boxes, labels, "dog", np.random.default_rng(0))
    assert named.tolist() == [2] and ("dog" in caption or "animal" in caption)


def test_negatives_name_a_kind_that_is_not_in_the_scene():
    rng = np.random.default_rng(0)
    for _ in range(10):
        caption = absent_caption({"boat"}, rng)
        assert caption and not any(w in caption for w in ("boat", "ship", "kayak", "yacht"))
    assert absent_caption({"animal", "boat", "person", "vehicle"}, rng) is None
    assert mirror_caption("the car on the left of the right lane") == "the car on the right of the left lane"


def test_contrast_negatives_change_only_the_colour_and_never_name_one_present():
    image = np.full((100, 300, 3), 128, np.uint8)
    image[30:70, 10:50] = (250, 250, 250)  # a white car
    image[30:70, 240:280] = (230, 30, 30)  # a red car
    boxes = np.array([[10, 30, 40, 40], [240, 30, 40, 40], [120, 10, 30, 30]], float)
    rng = np.random.default_rng(0)
    captions = {contrast_caption(image, boxes, ("car", "car", "dog"), "car", rng) for _ in range(40)}
    assert all(c.startswith("the ") and c.endswith(" car") for c in captions)
    assert not captions & {"the white car", "the red car"} and len(captions) > 3
    striped = image.copy()
    striped[30:70, 240:280:3] = (30, 60, 230)
    striped[30:70, 241:280:3] = (30, 200, 40)  # red, blue and green in thirds: no measured colour, no safe negative
    assert contrast_caption(striped, boxes, ("car", "car", "dog"), "car", rng) is None


def test_foreign_negatives_are_other_clips_descriptions_of_what_cannot_be_there():
    captions = ["the white seagull flying in the sky", "the red car on the road", "the man in the blue shirt",
                "the wakeboarder behind the boat"]
    rng = np.random.default_rng(0)
    picked = {foreign_caption({"vehicle"}, captions, rng) for _ in range(20)}
    assert picked == {"the white seagull flying in the sky"}  # a person or a boat could be in a road scene
    assert foreign_caption({"animal", "boat", "person", "vehicle"}, captions, rng) is None


def test_synthetic_descriptions_single_out_the_target():
    objects = [
        Drawn("circle", "red", 20, 50, 50, 0, 0),
        Drawn("circle", "red", 20, 150, 50, 0, 0),
        Drawn("square", "blue", 20, 100, 150, 0, 0),
    ]
    caption, named = describe(objects, 2, np.random.default_rng(0))
    assert named == [2] and "square" in caption
    caption, named = describe(objects, 0, np.random.default_rng(0))
    assert (named == [0] and caption == "the red circle on the left") or (
        named == [0, 1] and "circles" in caption
    )


def test_synthetic_clips_are_seeded_and_negatives_have_no_boxes():
    a = synthetic_clip(64, 3, np.random.default_rng(5), False, None)
    b = synthetic_clip(64, 3, np.random.default_rng(5), False, None)
    assert np.array_equal(a[0], b[0]) and a[2] == b[2]
    assert a[0].shape == (3, 64, 64, 3) and a[0].dtype == np.uint8
    _, boxes, caption = synthetic_clip(64, 3, np.random.default_rng(6), True, None)
    assert all(len(b) == 0 for b in boxes) and caption.startswith("the ")
    for seed in range(10):
        _, boxes, _ = synthetic_clip(64, 3, np.random.default_rng(seed), False, None)
        for frame_boxes in boxes:
            assert frame_boxes.shape[1] == 4


def test_training_views_letterbox_like_the_grounder():
    width, height, size = 640, 360, 256
    matrix = view_matrix(width, height, size, 1.0, (width / 2, height / 2))
    _, place = letterbox(np.zeros((height, width, 3), np.uint8), size, (0, 0, 0))
    assert matrix[0, 0] == pytest.approx(place.scale)
    assert matrix[1, 2] == pytest.approx(place.pad_y, abs=1.0) and matrix[0, 2] == pytest.approx(
        place.pad_x, abs=1.0
    )
    box = np.array([[100.0, 50.0, 40.0, 20.0], [-500.0, 0.0, 10.0, 10.0]])
    inside = boxes_in_view(box, matrix, size)
    assert len(inside) == 1 and inside[0, 2] == pytest.approx(40 * place.scale)


def _write_video(path, frames):
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (frames[0].shape[1], frames[0].shape[0])
    )
    for frame in frames:
        writer.write(frame)
    writer.release()


@pytest.fixture
def tiny_data(tmp_path):
    rng = np.random.default_rng(0)
    seq = tmp_path / "sequences" / "boat"
    seq.mkdir(parents=True)
    _write_video(seq / "video.mp4", [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(6)])
    (seq / "groundtruth.txt").write_text("\n".join(f"{10 + i},10,20,12" for i in range(6)) + "\n")
    (seq / "language.txt").write_text("the white boat on the left\n")
    images = tmp_path / "images" / "set"
    (images / "images").mkdir(parents=True)
    lines = []
    for i in range(2):
        cv2.imwrite(str(images / "images" / f"{i}.jpg"), rng.integers(0, 255, (50, 70, 3), dtype=np.uint8))
        lines.append(
            json.dumps(
                {
                    "image": f"images/{i}.jpg",
                    "width": 70,
                    "height": 50,
                    "boxes": [{"xywh": [5, 5, 30, 30], "label": "dog"}],
                }
            )
        )
    (images / "boxes.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_clip_dataset_is_a_pure_function_of_seed_and_index(tiny_data):
    cfg = load_config(TINY)
    sequences = read_language_sequences(tiny_data / "sequences", tiny_data / "cache")
    from tracker.train.datasets import read_ours_images

    stills = list(read_ours_images(tiny_data / "images").stills)
    assert sequences[0].caption == "the white boat on the left"
    data = GroundingDataset(cfg, sequences, stills, length=40, seed=3)
    sources = set()
    for index in range(20):
        a, b = data[index], data[index]
        assert np.array_equal(a.frames, b.frames) and a.caption == b.caption
        assert a.frames.shape == (2, 64, 64, 3)
        for frame_boxes in a.boxes:
            assert ((frame_boxes[:, :2] >= 0) & (frame_boxes[:, :2] + frame_boxes[:, 2:] <= 64 + 1e-6)).all()
        if a.source == "sequence" and len(a.boxes[0]):
            assert a.caption in ("the white boat on the left", "the white boat on the right")
        sources.add(a.source)
    assert sources == {"synthetic", "sequence", "still"}
    batch = collate_clips([data[0], data[1]])
    assert batch.frames.shape == (2, 2, 3, 64, 64) and batch.present.shape == (2, 2)


def test_the_evaluation_folder_is_refused_for_training():
    with pytest.raises(InputError, match="evaluation"):
        read_language_sequences(ROOT.parent / "shared" / "data" / "sequences")


def test_readers_for_lasot_tnl2k_and_otb99_lang(tmp_path):
    image = np.zeros((20, 20, 3), np.uint8)

    def frames(folder, count=3):
        folder.mkdir(parents=True)
        for i in range(count):
            cv2.imwrite(str(folder / f"{i + 1:04d}.jpg"), image)

    lasot = tmp_path / "lasot" / "boat" / "boat-1"
    frames(lasot / "img")
    (lasot / "groundtruth.txt").write_text("1,1,5,5\n2,2,5,5\n3,3,5,5\n")
    (lasot / "nlp.txt").write_text("white boat sailing on the sea\n")
    assert [s.caption for s in read_lasot_language(tmp_path / "lasot")] == ["white boat sailing on the sea"]
    tnl = tmp_path / "tnl2k" / "seq1"
    frames(tnl / "imgs")
    (tnl / "groundtruth.txt").write_text("1,1,5,5\n2,2,5,5\n3,3,5,5\n")
    (tnl / "language.txt").write_text("the man in black\n")
    got = read_tnl2k_language(tmp_path / "tnl2k")
    assert (
        got[0].caption == "the man in black"
        and len(got[0]) == 3
        and got[0].frames.read(0).shape == (20, 20, 3)
    )
    otb = tmp_path / "otb99"
    frames(otb / "OTB_videos" / "Biker" / "img")
    (otb / "OTB_videos" / "Biker" / "groundtruth_rect.txt").write_text("1,1,5,5\n2,2,5,5\n3,3,5,5\n")
    (otb / "OTB_query_test").mkdir()
    (otb / "OTB_query_test" / "Biker.txt").write_text("a boy riding a bike\n")
    assert [s.caption for s in read_otb_lang(otb)] == ["a boy riding a bike"]


def test_losses_are_finite_and_event_targets_mark_transitions():
    present = torch.tensor([[True, True, False, False, True]])
    assert event_targets(present)[0].tolist() == [[1, 0], [0, 0], [0, 1], [0, 0], [1, 0]]
    heat = heat_targets([torch.tensor([[0.5, 0.5, 0.25, 0.25]]), torch.zeros(0, 4)], 4)
    assert heat[0, 0].max() == 1 and heat[0, 0, 2, 2] == 1 and heat[1].sum() == 0
    cfg = load_config(TINY)
    torch.manual_seed(0)
    model = GroundingNet(cfg).train()
    out = model(torch.randn(2, 3, 64, 64), model.encode_text(["the boat", "the cat"]), model.empty_memory(2))
    boxes = [torch.tensor([[0.1, 0.2, 0.3, 0.3], [0.6, 0.6, 0.2, 0.2]]), torch.zeros(0, 4)]
    loss = grounding_loss(out, boxes, torch.tensor([True, False]), torch.zeros(2, 2), cfg.grounding.train)
    assert torch.isfinite(loss.total) and set(loss.terms) == {"focal", "giou", "l1", "presence", "event"}
    loss.total.backward()
    assert model.head.conv5_size.weight.grad is not None and model.presence_head.weight.grad is not None


def test_trainer_is_seeded_resumable_and_keeps_other_manifest_entries(tmp_path, capsys):
    manifest = tmp_path / "manifest.json"
    earlier = {"sha256": "of other weights", "scores": {"language_init_nano": {"ground_auc": 0.5}}}
    manifest.write_text(json.dumps({"files": {"tracker.safetensors": {"sha256": "x", "default": True},
                                              "a.safetensors": earlier}}))
    common = ["--config", str(TINY), "--sequences", "", "--images", "", "--workers", "0", "--threads", "1"]
    for name in ("a", "b"):
        args = [*common, "--out", str(tmp_path / name), "--steps", "2"]
        assert (
            train_main(
                [*args, "--export", str(tmp_path / f"{name}.safetensors"), "--manifest", str(manifest)]
            )
            == 0
        )
    a, b = load_file(tmp_path / "a.safetensors"), load_file(tmp_path / "b.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # same seed, same weights
    entries = json.loads(manifest.read_text())["files"]
    assert entries["tracker.safetensors"]["default"] is True  # the other writer's entry survives
    ours = entries["a.safetensors"]
    assert ours["kind"] == "grounding" and ours["default"] is False and ours["seed"] == 0
    assert ours["size"] == (tmp_path / "a.safetensors").stat().st_size and ours["steps"]["done"] == 2
    assert ours["scores"] == {}  # the earlier weights' scores are not carried over to new ones
    assert train_main([*common, "--out", str(tmp_path / "a"), "--steps", "3", "--resume"]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert torch.load(tmp_path / "a" / "last.pt", weights_only=True)["step"] == 3


def test_a_grounder_fine_tunes_from_its_own_weights(tmp_path, capsys):
    common = ["--config", str(TINY), "--sequences", "", "--images", "", "--workers", "0", "--threads", "1"]
    first = tmp_path / "first.safetensors"
    manifest = ["--manifest", str(tmp_path / "manifest.json")]
    assert train_main([*common, "--out", str(tmp_path / "a"), "--steps", "1", "--export", str(first), *manifest]) == 0
    tuned = tmp_path / "tuned.safetensors"
    args = [*common, "--out", str(tmp_path / "b"), "--steps", "1", "--init", str(first)]
    assert train_main([*args, "--set", "GROUNDING.TRAIN.LR=0.0", "--export", str(tuned), *manifest]) == 0
    assert "the whole grounder from" in capsys.readouterr().out
    a, b = load_file(first), load_file(tuned)
    weights = [k for k in a if "running_" not in k and "num_batches" not in k]  # BatchNorm statistics move
    assert all(torch.equal(a[k], b[k]) for k in weights)  # LR 0: the fine-tune starts exactly where the file was
    entry = json.loads((tmp_path / "manifest.json").read_text())["files"]["tuned.safetensors"]
    assert entry["data"]["pretrained"].startswith("fine-tuned from the grounder")
    # A larger input: the one size-bound tensor, the patch position table, is resized to the new grid.
    larger = [*common, "--out", str(tmp_path / "d"), "--steps", "1", "--init", str(first)]
    bigger = tmp_path / "bigger.safetensors"
    g = load_config(TINY).grounding
    grid = g.input_size // g.stride + 2  # two more patches a side
    set_size = ["--set", f"GROUNDING.INPUT_SIZE={grid * g.stride}", "--set", "GROUNDING.TRAIN.LR=0.0"]
    set_size += ["--export", str(bigger), *manifest]
    assert train_main([*larger, *set_size]) == 0
    assert "position table resized to the input size" in capsys.readouterr().out
    resized = load_file(bigger)["pos_patch"]
    assert resized.shape[1] == grid * grid
    assert torch.equal(resized, resize_grid(a["pos_patch"], grid))  # LR 0: exactly the resized table
    wider = tmp_path / "wider.yaml"
    wider.write_text(TINY.read_text().replace("EMBED_DIM: 32", "EMBED_DIM: 64"))
    assert train_main([*common, "--config", str(wider), "--out", str(tmp_path / "c"), "--init", str(first)]) == 2
    assert "does not fit this grounding config" in capsys.readouterr().err


def test_presence_roc_auc_counts_ties_half():
    from tracker.train_grounding.evaluate import roc_auc

    assert roc_auc(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == 1.0
    assert roc_auc(np.array([0.1]), np.array([0.9])) == 0.0
    assert roc_auc(np.array([0.5, 0.5]), np.array([0.5])) == 0.5
    assert roc_auc(np.array([0.9, 0.3]), np.array([0.5, 0.1])) == 0.75


def test_a_wrong_caption_starts_a_track_only_after_the_hand_over_run():
    from tracker.train_grounding.evaluate import start_frames

    presence = np.array([0.9, 0.9, 0.5, 0.9, 0.9, 0.9, 0.9, 0.9])
    found = np.array([True, True, True, True, True, True, False, True])
    starts = start_frames(presence, found, on=0.6, frames=3)
    assert starts.tolist() == [False, False, False, False, False, True, False, False]


def test_the_vision_side_can_start_from_the_bundled_tracker(tmp_path, capsys):
    from tests.helpers import TINY_WEIGHTS
    from tracker.checkpoint import read_checkpoint
    from tracker.models.grounding import tracker_weights_for

    shaped_like_bundled = tmp_path / "g128.yaml"
    shaped_like_bundled.write_text(
        TINY.read_text()
        .replace("EMBED_DIM: 32", "EMBED_DIM: 128")
        .replace("NUM_HEADS: 2", "NUM_HEADS: 4")
        .replace("HEAD_CHANNELS: 16", "HEAD_CHANNELS: 64")
        .replace("MLP_RATIO: 2.0", "MLP_RATIO: 4.0")
    )
    model = GroundingNet(load_config(shaped_like_bundled))
    bundled = ROOT / "weights" / "bundled_small.safetensors"
    tracker_state = read_checkpoint(bundled).state_dict
    model.load_state_dict(tracker_weights_for(model, tracker_state, str(bundled)), strict=False)
    own = model.state_dict()
    assert torch.equal(own["blocks.1.attn.qkv.weight"], tracker_state["backbone.blocks.1.attn.qkv.weight"])
    assert torch.equal(own["stem.body.0.weight"], tracker_state["backbone.patch_embed.body.0.weight"])
    assert torch.equal(own["head.conv5_ctr.weight"], tracker_state["box_head.conv5_ctr.weight"])
    assert own["pos_patch"].shape == (1, model.num_patches, 128)

    too_narrow = ["--config", str(TINY), "--sequences", "", "--images", "", "--workers", "0", "--steps", "1"]
    assert train_main([*too_narrow, "--out", str(tmp_path / "x"), "--init-tracker", str(TINY_WEIGHTS)]) == 2
    assert "does not fit the grounding model" in capsys.readouterr().err


def test_the_one_evaluation_command_reads_thread_lists_and_builds_the_reference_tracker():
    import argparse

    from tracker.train_grounding.evaluate import _thread_list, box_tracker

    assert _thread_list("1,2") == [1, 2]
    for bad in ("x", "0", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="thread counts"):
            _thread_list(bad)
    reference = box_tracker("mil", None)
    assert callable(reference.init) and callable(reference.update)


def test_the_evaluated_session_follows_as_many_matches_as_the_app():
    from tracker.grounding import Grounder
    from tracker.train_grounding.evaluate import make_session

    cfg = load_config(TINY)
    session = make_session(Grounder(GroundingNet(cfg), cfg, "cpu"), "mil", None)
    assert session.grounder.gcfg.max_targets == cfg.grounding.max_targets == 4


def test_the_speed_only_command_times_each_listed_thread_count(monkeypatch, capsys):
    from tracker.train_grounding import evaluate

    timed = []

    def fake_measure(config, weights, steps, threads, repeats):
        timed.append(threads)
        return [20.0 * threads] * repeats

    monkeypatch.setattr(evaluate, "measure_speed", fake_measure)
    assert evaluate.main(["--speed", "--speed-threads", "1,2", "--repeats", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert timed == [1, 2]
    assert [line["threads"] for line in lines] == [1, 2]
    assert lines[1] == {"threads": 2, "median_ms": [40.0, 40.0], "fps": [25.0, 25.0]}
    assert evaluate.main(["--speed", "--threads", "3", "--repeats", "1"]) == 0
    assert timed[-1] == 3


NANO_WEIGHTS = ROOT / ".." / "shared" / "peers" / "nanotrack_v3" / "nanotrack_v3.safetensors"


@pytest.mark.skipif(not NANO_WEIGHTS.is_file(), reason=f"{NANO_WEIGHTS} is absent")
def test_a_conv_grounder_fine_tunes_with_nanotrack_features_added_from_its_own_outputs(tmp_path, capsys):
    from tracker.checkpoint import read_checkpoint

    common = ["--config", str(TINY), "--sequences", "", "--images", "", "--workers", "0", "--threads", "1"]
    manifest = ["--manifest", str(tmp_path / "manifest.json")]
    conv = tmp_path / "conv.safetensors"
    assert train_main([*common, "--out", str(tmp_path / "a"), "--steps", "1", "--export", str(conv), *manifest]) == 0
    added = [*common, "--set", "GROUNDING.STEM=conv+nanotrack_v3", "--init", str(conv)]
    assert train_main([*added, "--out", str(tmp_path / "b"), "--steps", "1"]) == 2
    assert "has no NanoTrack branch; give its weights with --pretrained" in capsys.readouterr().err
    assert train_main([*common, "--out", str(tmp_path / "c"), "--steps", "1", "--pretrained", str(NANO_WEIGHTS)]) == 2
    assert "set GROUNDING.STEM=conv+nanotrack_v3" in capsys.readouterr().err

    tuned = tmp_path / "tuned.safetensors"
    args = [*added, "--pretrained", str(NANO_WEIGHTS), "--out", str(tmp_path / "d"), "--steps", "2"]
    assert train_main([*args, "--export", str(tuned), *manifest]) == 0
    assert "NanoTrack v3's backbone, 190 tensors" in capsys.readouterr().out
    released = read_checkpoint(str(NANO_WEIGHTS)).state_dict
    state = load_file(tuned)
    body = {k: v for k, v in state.items() if k.startswith("stem.pretrained.body.features.")}
    assert body and all(  # trained for two steps, the pretrained body is still the released one
        torch.equal(v, released["backbone." + k[len("stem.pretrained.body."):]]) for k, v in body.items()
    )
    entry = json.loads((tmp_path / "manifest.json").read_text())["files"]["tuned.safetensors"]
    assert "NanoTrack v3's backbone (Apache-2.0)" in entry["data"]["pretrained"]

    # At the start, before any step, the grounder with the added branch gives the conv grounder's outputs exactly.
    import argparse

    from tracker.config import parse_overrides, with_overrides
    from tracker.train_grounding.trainer import initialise

    cfg = with_overrides(load_config(TINY), parse_overrides(["GROUNDING.STEM=conv+nanotrack_v3"]), source="test")
    model = GroundingNet(cfg).eval()
    initialise(model, argparse.Namespace(init=str(conv), init_tracker=None, pretrained=str(NANO_WEIGHTS)))
    base = GroundingNet(load_config(TINY)).eval()
    base.load_state_dict(load_file(conv))
    image = torch.randn(1, 3, cfg.grounding.input_size, cfg.grounding.input_size)
    text = base.encode_text(["the red car"])
    with torch.no_grad():
        mine, ref = model(image, text, model.empty_memory(1)), base(image, text, base.empty_memory(1))
    assert torch.equal(mine.presence_logit, ref.presence_logit) and torch.equal(mine.score_map, ref.score_map)
