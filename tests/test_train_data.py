"""Training data readers: every supported layout, the decode-once video cache, and held-out sequences."""

import cv2
import numpy as np
import pytest

from tests import train_fixtures as fx
from tracker.errors import InputError
from tracker.train import datasets
from tracker.train.datasets import hold_out, load_source, read_box_file


def test_ours_sequences_decode_once_into_the_cache(tmp_path, monkeypatch):
    root = fx.make_ours_sequences(tmp_path / "seqs")
    cache = tmp_path / "cache"
    source = load_source("OURS_SEQ", root, cache)
    assert source.is_video and [s.name for s in source.sequences] == ["seq_a", "seq_b"]
    seq = source.sequences[0]
    assert seq.boxes.shape == (24, 4) and seq.visible.all()
    frame = seq.frames.read(5)
    assert frame.shape == (fx.FRAME_H, fx.FRAME_W, 3) and frame.dtype == np.uint8
    # The target block is where the ground truth says (decoded RGB, so the BGR colour reversed).
    x, y, w, h = (int(v) for v in seq.boxes[5])
    inside = frame[y + 2 : y + h - 2, x + 2 : x + w - 2].reshape(-1, 3).mean(axis=0)
    assert np.abs(inside - np.array(fx.TARGET_COLOUR[::-1])).max() < 25
    assert len(list(cache.glob("*.npy"))) == 1

    # A second reader of the same video uses the cache and never opens the video again.
    def no_decoding(*_args, **_kwargs):
        raise AssertionError("video decoded twice")

    monkeypatch.setattr(cv2, "VideoCapture", no_decoding)
    again = load_source("OURS_SEQ", root, cache).sequences[0]
    assert np.array_equal(again.frames.read(5), frame)


def test_video_with_fewer_frames_than_boxes_is_a_clear_error(tmp_path):
    root = fx.make_ours_sequences(tmp_path / "seqs", names=("short",), frames=21)
    gt = root / "short" / "groundtruth.txt"
    gt.write_text(gt.read_text() + "1,1,5,5\n")
    seq = load_source("OURS_SEQ", root, tmp_path / "cache").sequences[0]
    with pytest.raises(InputError, match=r"decodes to 21 frames but its groundtruth\.txt has 22"):
        seq.frames.read(0)


def test_ours_images_keep_every_valid_box(tmp_path):
    source = load_source("OURS_IMG", fx.make_ours_images(tmp_path / "imgs"))
    assert not source.is_video and len(source.stills) == 4
    assert len(source.targets) == 6  # two photos with one block, two with two
    assert source.stills[1].labels == ("block", "block")
    assert source.stills[0].read().shape == (64, 80, 3)


def test_got10k_visibility_uses_absence_and_cover(tmp_path):
    source = load_source("GOT10K_train", fx.make_got10k(tmp_path / "got"))
    (seq,) = source.sequences
    assert len(seq) == 22 and not seq.visible[3] and not seq.visible[5] and seq.visible.sum() == 20
    assert seq.frames.read(0).shape == (fx.FRAME_H, fx.FRAME_W, 3)


def test_got10k_split_without_its_list_file_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match=r"vottrain.*list file"):
        load_source("GOT10K_vottrain", fx.make_got10k(tmp_path / "got"))


def test_lasot_skips_the_test_split_and_occluded_frames(tmp_path):
    source = load_source("LASOT", fx.make_lasot(tmp_path / "lasot"))
    assert [s.name for s in source.sequences] == ["block-1"]
    assert not source.sequences[0].visible[2] and source.sequences[0].visible.sum() == 20


def test_trackingnet_frames_count_from_zero(tmp_path):
    source = load_source("TRACKINGNET", fx.make_trackingnet(tmp_path / "tn"))
    (seq,) = source.sequences
    assert seq.name == "TRAIN_0/clip1" and seq.frames.read(19).shape == (fx.FRAME_H, fx.FRAME_W, 3)


def test_coco_skips_crowd_and_empty_boxes(tmp_path):
    source = load_source("COCO17", fx.make_coco(tmp_path / "coco"))
    (still,) = source.stills
    assert still.boxes.tolist() == [[5, 6, 20, 10]] and still.labels == ("block",)


def test_unknown_dataset_name_lists_known_ones(tmp_path):
    with pytest.raises(InputError, match="OURS_SEQ"):
        load_source("IMAGENET_VID", tmp_path)


def test_missing_root_names_the_path(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_source("OURS_IMG", tmp_path / "nowhere")


def test_hold_out_moves_named_sequences_out_of_training(tmp_path):
    source = load_source("OURS_SEQ", fx.make_ours_sequences(tmp_path / "seqs"), tmp_path / "cache")
    kept, held = hold_out([source], ["seq_b"])
    assert [s.name for s in kept[0].sequences] == ["seq_a"] and [s.name for s in held] == ["seq_b"]
    with pytest.raises(InputError, match="not a training sequence"):
        hold_out([source], ["seq_z"])


def test_box_file_accepts_commas_tabs_and_reports_bad_lines(tmp_path):
    path = tmp_path / "gt.txt"
    path.write_text("1,2,3,4\n5\t6\t7\t8\n")
    assert read_box_file(path).tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    path.write_text("1,2,3,4\n1,2,x\n")
    with pytest.raises(InputError, match=r"gt\.txt:2"):
        read_box_file(path)


def test_cached_frames_pickle_without_their_memory_map(tmp_path):
    import pickle

    seq = load_source("OURS_SEQ", fx.make_ours_sequences(tmp_path / "seqs"), tmp_path / "cache").sequences[0]
    seq.frames.read(0)
    clone = pickle.loads(pickle.dumps(seq.frames))
    assert isinstance(clone, datasets.CachedVideoFrames) and clone._frames is None
    assert np.array_equal(clone.read(3), seq.frames.read(3))
