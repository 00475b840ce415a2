"""Dataset readers on tiny fixtures in each layout: detection, frames, ground truth, absence, language."""

import numpy as np
import pytest

from tests.eval_fixtures import HEIGHT, WIDTH, make_got10k, make_lasot, make_otb, make_ours, make_tnl2k, scene
from tracker.errors import InputError
from tracker.eval.datasets import detect_layout, load_dataset
from tracker.eval.sequence import Sequence, read_boxes, read_flags


def _by_name(sequences):
    return {s.name: s for s in sequences}


def test_read_boxes_accepts_commas_tabs_spaces_and_nan(tmp_path):
    path = tmp_path / "gt.txt"
    path.write_text("1,2,3,4\n5\t6\t7\t8\n9 10  11 12\nNaN,NaN,NaN,NaN\n1.5, 2.5 ,3,4\n\n")
    boxes = read_boxes(path)
    assert boxes.shape == (5, 4)
    np.testing.assert_array_equal(boxes[:3], [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]])
    assert np.isnan(boxes[3]).all()
    np.testing.assert_array_equal(boxes[4], [1.5, 2.5, 3, 4])


@pytest.mark.parametrize("text", ["1,2,3\n", "1,2,x,4\n", ""])
def test_read_boxes_rejects_bad_files_with_one_line(tmp_path, text):
    path = tmp_path / "gt.txt"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        read_boxes(path)
    assert "\n" not in str(err.value) and "gt.txt" in str(err.value)


def test_read_flags_one_line_or_one_per_line(tmp_path):
    (tmp_path / "a.txt").write_text("0,1,0,1\n")
    (tmp_path / "b.label").write_text("1\n0\n0\n")
    np.testing.assert_array_equal(read_flags(tmp_path / "a.txt"), [False, True, False, True])
    np.testing.assert_array_equal(read_flags(tmp_path / "b.label"), [True, False, False])


def test_otb_layout(tmp_path):
    root = make_otb(tmp_path / "OTB100", count=5)
    assert detect_layout(root) == "otb"
    sequences = _by_name(load_dataset(root))
    assert sorted(sequences) == ["Square", "Twin-1", "Twin-2"]
    square = sequences["Square"]
    # seven images, five annotated from the first: the extra images at the end are dropped
    assert len(square) == 5 and len(square.frame_paths) == 5
    assert square.frame_paths[0].name == "0001.jpg"
    _, boxes = scene(7)
    np.testing.assert_array_equal(square.groundtruth, boxes[:5])
    np.testing.assert_array_equal(sequences["Twin-2"].groundtruth[0], [21, 21, 20, 20])
    frames = list(square.frames())
    assert len(frames) == 5 and frames[0].shape == (HEIGHT, WIDTH, 3)
    assert len(list(square.frames(max_frames=2))) == 2


def test_lasot_layout_with_absence_language_and_test_list(tmp_path):
    root = make_lasot(tmp_path / "LaSOT", count=4)
    assert detect_layout(root) == "lasot"
    sequences = load_dataset(root)
    assert [s.name for s in sequences] == ["cup-1"]  # testing_set.txt lists only cup-1
    cup = sequences[0]
    assert cup.language == "the red cup number 1"
    np.testing.assert_array_equal(cup.absent, [False, True, True, False])  # occluded or out of view
    np.testing.assert_array_equal(cup.visible, [True, False, False, True])
    (root / "testing_set.txt").unlink()
    assert [s.name for s in load_dataset(root)] == ["cup-1", "cup-2"]


def test_got10k_split_folder_in_list_order(tmp_path):
    split = make_got10k(tmp_path / "GOT-10k" / "val", count=4)
    assert detect_layout(split) == "got10k"
    sequences = load_dataset(split)
    assert [s.name for s in sequences] == ["GOT-10k_Val_000002", "GOT-10k_Val_000001"]  # list.txt order
    np.testing.assert_array_equal(sequences[0].absent, [False, False, True, False])
    assert len(sequences[0].frame_paths) == 4


def test_got10k_root_with_several_splits_asks_for_one(tmp_path):
    root = tmp_path / "GOT-10k"
    make_got10k(root / "val")
    make_got10k(root / "test")
    assert detect_layout(root) == "got10k"
    with pytest.raises(InputError, match="pass one split folder"):
        load_dataset(root)


def test_got10k_test_split_pads_missing_boxes(tmp_path):
    split = make_got10k(tmp_path / "test", count=4)
    # the GOT-10k test split gives only the first box
    (split / "GOT-10k_Val_000001" / "groundtruth.txt").write_text("20,20,20,20\n")
    sequence = _by_name(load_dataset(split))["GOT-10k_Val_000001"]
    assert len(sequence) == 4
    assert np.isnan(sequence.groundtruth[1:]).all()
    assert sequence.visible.tolist() == [True, False, False, False]


def test_tnl2k_layout(tmp_path):
    root = make_tnl2k(tmp_path / "TNL2K")
    assert detect_layout(root) == "tnl2k"
    (sequence,) = load_dataset(root)
    assert sequence.name == "Walk_1" and sequence.language == "the square moving right"
    assert sequence.frame_paths[0].suffix == ".png" and len(sequence) == 4


def test_our_layout_reads_the_video(tmp_path):
    root = make_ours(tmp_path / "sequences", count=6)
    assert detect_layout(root) == "ours"
    (sequence,) = load_dataset(root, layout="ours")
    assert sequence.video is not None and sequence.frame_paths is None
    assert sequence.language == "the textured square"
    assert sequence.visible.tolist() == [True, True, True, False, True, True]
    frames = list(sequence.frames())
    assert len(frames) == 6 and frames[0].shape == (HEIGHT, WIDTH, 3)


def test_video_shorter_than_ground_truth_is_an_error(tmp_path):
    root = make_ours(tmp_path / "sequences", count=3)
    (root / "drift" / "groundtruth.txt").write_text("1,1,5,5\n" * 5)
    (sequence,) = load_dataset(root)
    with pytest.raises(InputError, match="ended at frame 3"):
        list(sequence.frames())


def test_sequence_filter_keeps_the_given_order_and_names_missing_ones(tmp_path):
    root = make_otb(tmp_path / "OTB")
    assert [s.name for s in load_dataset(root, names=["Twin-2", "Square"])] == ["Twin-2", "Square"]
    with pytest.raises(InputError, match="Nope"):
        load_dataset(root, names=["Nope"])


def test_unknown_or_missing_roots_are_one_line_errors(tmp_path):
    (tmp_path / "empty" / "stuff").mkdir(parents=True)
    with pytest.raises(InputError, match="--layout"):
        detect_layout(tmp_path / "empty")
    with pytest.raises(InputError, match="does not exist"):
        load_dataset(tmp_path / "missing")
    with pytest.raises(InputError, match="unknown dataset layout"):
        load_dataset(tmp_path / "empty", layout="vot")
    with pytest.raises(InputError, match="no otb sequences"):
        load_dataset(tmp_path / "empty", layout="otb")


def test_sequence_needs_exactly_one_frame_source(tmp_path):
    with pytest.raises(InputError):
        Sequence("x", np.zeros((2, 4)))
    with pytest.raises(InputError):
        Sequence("x", np.zeros((2, 3)), video=tmp_path / "v.mp4")
