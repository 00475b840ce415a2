"""Pair sampling: frame choice, OSTrack jitter, crops labelled where the pixels are, augmentation and synthesis."""

import dataclasses

import numpy as np
import pytest
import torch

from tests import train_fixtures as fx
from tracker.config import AugmentConfig, ConfigError, load_config, with_overrides
from tracker.preprocess import box_in_crop, crop_around
from tracker.train import augment, synth
from tracker.train.datasets import StillImage, load_source
from tracker.train.sampler import (
    PairDataset,
    at_most_side,
    causal_frame_ids,
    collate_pairs,
    jitter_box,
    lookalike_patches,
    undersize_box,
)
from tracker.types import Box


def test_causal_frames_are_visible_ordered_and_within_the_interval():
    rng = np.random.default_rng(0)
    visible = np.ones(300, dtype=bool)
    visible[100:150] = False
    for _ in range(500):
        template, search = causal_frame_ids(visible, 20, rng)
        assert visible[template] and visible[search]
        assert template < search <= template + 19 + 5 * 10  # the window only widens when nothing is found


def test_causal_window_widens_over_a_long_invisible_stretch():
    visible = np.zeros(100, dtype=bool)
    visible[[0, 90]] = True
    template, search = causal_frame_ids(visible, 10, np.random.default_rng(1))
    assert (template, search) == (0, 90)


def test_jitter_follows_the_ostrack_rule():
    rng = np.random.default_rng(0)
    box = np.array([100.0, 50.0, 40.0, 10.0])
    assert np.allclose(jitter_box(box, 0.0, 0.0, rng), box)
    boxes = np.array([jitter_box(box, 3.0, 0.25, rng) for _ in range(4000)])
    log_scale = np.log(boxes[:, 2:] / box[2:])
    assert abs(log_scale.std() - 0.25) < 0.02
    # centre offsets are uniform within +-0.5 * sqrt(w'h') * 3 of the original centre
    offsets = boxes[:, :2] + 0.5 * boxes[:, 2:] - np.array([120.0, 55.0])
    bound = 0.5 * 3.0 * np.sqrt(boxes[:, 2] * boxes[:, 3])
    ratio = np.abs(offsets) / bound[:, None]  # uniform on [0, 1] in each axis
    assert (ratio <= 1 + 1e-9).all() and (ratio.max(axis=0) > 0.99).all()
    assert np.allclose(ratio.mean(axis=0), 0.5, atol=0.03)


def test_undersized_boxes_keep_their_centre_and_shrink_log_uniformly():
    rng = np.random.default_rng(0)
    box = np.array([100.0, 50.0, 40.0, 10.0])
    boxes = np.array([undersize_box(box, 0.4, rng) for _ in range(4000)])
    assert np.allclose(boxes[:, :2] + 0.5 * boxes[:, 2:], [120.0, 55.0])
    factors = boxes[:, 2] / 40.0
    assert np.allclose(boxes[:, 3] / 10.0, factors)  # one factor for both sides: the aspect is kept
    assert factors.min() >= 0.4 and factors.max() <= 1.0
    assert abs(np.log(factors).mean() - 0.5 * np.log(0.4)) < 0.02


@pytest.mark.parametrize("around", [(37.3, 20.6, 21.0, 13.0), (2.0, 1.0, 30.0, 40.0), (70.0, 50.0, 25.0, 18.0)])
def test_labels_sit_on_the_pixels_of_the_test_time_crop(around):
    image = np.zeros((72, 96, 3), dtype=np.uint8)
    target = np.array([41.0, 24.0, 16.0, 10.0])
    image[24:34, 41:57] = 255
    crop = crop_around(image, Box(*around), 4.0, 128)
    x, y, w, h = box_in_crop(target, Box(*around), 4.0, 128)
    ys, xs = np.nonzero(crop.image[..., 0] > 127)
    assert abs(xs.min() - x) <= 1 and abs(xs.max() + 1 - (x + w)) <= 1
    assert abs(ys.min() - y) <= 1 and abs(ys.max() + 1 - (y + h)) <= 1


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_data")
    seqs = load_source("OURS_SEQ", fx.make_ours_sequences(root / "seqs"), root / "cache")
    imgs = load_source("OURS_IMG", fx.make_ours_images(root / "imgs"))
    return [seqs, imgs]


def test_pairs_are_a_function_of_seed_epoch_and_index(sources):
    cfg = load_config(fx.TRAIN_YAML)
    a, b = PairDataset(sources, [1, 1], cfg, seed=3), PairDataset(sources, [1, 1], cfg, seed=3)
    first, again = a[(0, 5)], b[(0, 5)]
    assert torch.equal(first.search, again.search) and torch.equal(first.search_box, again.search_box)
    assert not torch.equal(a[(1, 5)].search, first.search)
    assert not torch.equal(PairDataset(sources, [1, 1], cfg, seed=4)[(0, 5)].search, first.search)


def test_pairs_have_the_config_sizes_and_a_target_inside_the_search_crop(sources):
    cfg = load_config(fx.TRAIN_YAML)
    dataset = PairDataset(sources, [1, 1], cfg, seed=0)
    batch = collate_pairs([dataset[(0, i)] for i in range(24)])
    assert batch.template.shape == (24, 3, 32, 32) and batch.search.shape == (24, 3, 64, 64)
    centres = batch.search_box[:, :2] + 0.5 * batch.search_box[:, 2:]
    assert ((centres >= 0) & (centres < 1)).all() and (batch.search_box[:, 2:] > 0).all()
    assert torch.isfinite(batch.search).all() and batch.search.abs().max() < 3.0


def test_unaugmented_search_crop_shows_the_target_inside_its_label(sources):
    cfg = load_config(fx.TRAIN_YAML)
    quiet = AugmentConfig(gray_prob=0, joint_flip_prob=0.5, crop_flip_prob=0.5, brightness_jitter=0)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, augment=quiet))
    dataset = PairDataset(sources[:1], [1], cfg, seed=0)  # videos only: orange-yellow blocks
    mean, std = torch.tensor(cfg.data.mean).view(3, 1, 1), torch.tensor(cfg.data.std).view(3, 1, 1)
    for index in range(12):
        pair = dataset[(0, index)]
        rgb = (pair.search * std + mean) * 255
        x, y, w, h = (pair.search_box * 64).tolist()
        cx, cy = int(x + w / 2), int(y + h / 2)
        red, green, blue = rgb[:, cy, cx].tolist()
        assert red > 200 and green > 150 and blue < 110  # the block's RGB (250, 200, 40)


def test_flip_moves_the_box_with_the_image():
    image = np.zeros((10, 20, 3), dtype=np.uint8)
    image[2:5, 1:4] = 255
    box = np.array([1.0, 2.0, 3.0, 3.0])
    flipped, fbox = augment.flip_image(image), augment.flip_box(box, 20)
    x, y, w, h = fbox.astype(int)
    assert (flipped[y : y + h, x : x + w] == 255).all() and fbox.tolist() == [16, 2, 3, 3]


def test_crop_augmentation_respects_each_probability():
    rng = np.random.default_rng(0)
    crop = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    box = np.array([10.0, 12.0, 20.0, 8.0])
    off = AugmentConfig(gray_prob=0, joint_flip_prob=0, crop_flip_prob=0, brightness_jitter=0)
    image, same = augment.augment_crop(crop, box, off, rng, allow_motion_blur=True)
    assert np.array_equal(image, crop.astype(np.float32)) and np.array_equal(same, box)
    always_flip = dataclasses.replace(off, crop_flip_prob=1.0)
    image, flipped = augment.augment_crop(crop, box, always_flip, rng, allow_motion_blur=True)
    assert np.array_equal(image, crop[:, ::-1].astype(np.float32)) and flipped.tolist() == [34, 12, 20, 8]
    blurred, _ = augment.augment_crop(crop, box, dataclasses.replace(off, motion_blur_prob=1.0), rng, True)
    assert np.abs(np.diff(blurred, axis=1)).mean() < np.abs(np.diff(crop.astype(np.float32), axis=1)).mean()


def test_motion_blur_kernel_is_a_normalised_streak():
    kernel = augment.motion_blur_kernel(7, 0.0)
    assert kernel.shape == (7, 7) and abs(kernel.sum() - 1) < 1e-6
    assert (kernel[3] > 0).sum() == 7 and (kernel[:3] == 0).all()


def test_warped_still_box_follows_the_target():
    rng = np.random.default_rng(0)
    image = np.zeros((120, 160, 3), dtype=np.uint8)
    image[40:70, 60:100] = 255
    for _ in range(10):
        warped, box = synth.warp_still(image, np.array([60.0, 40.0, 40.0, 30.0]), rng)
        ys, xs = np.nonzero(warped[..., 0] > 127)
        assert abs(xs.mean() - (box[0] + box[2] / 2)) < 1.5 and abs(ys.mean() - (box[1] + box[3] / 2)) < 1.5
        assert abs(np.sqrt(len(xs)) - np.sqrt(box[2] * box[3])) < 3


def test_distractors_land_beside_the_target_and_occluders_on_it():
    rng = np.random.default_rng(0)
    crop = np.zeros((64, 64, 3), dtype=np.uint8)
    target = np.array([24.0, 24.0, 16.0, 16.0])
    patch = np.full((10, 10, 3), 200, dtype=np.uint8)
    for _ in range(20):
        out = synth.paste_distractors(crop, target, [patch], rng)
        ys, xs = np.nonzero(out[..., 0])
        pasted = np.array([xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()], dtype=float)
        assert 0.5 * target[2] < pasted[2] < 2.5 * target[2]  # about the target's size
        assert synth.box_iou(pasted, target) <= synth.DISTRACTOR_MAX_IOU + 1e-9
        occluded = synth.add_occluder(crop, target, patch, rng)
        assert occluded[24:40, 24:40].any()


def test_random_targets_lie_inside_the_image_and_prefer_texture():
    rng = np.random.default_rng(0)
    image = np.zeros((200, 300, 3), dtype=np.uint8)
    image[:, 150:] = rng.integers(0, 256, size=(200, 150, 3), dtype=np.uint8)  # right half textured, left flat
    for _ in range(30):
        x, y, w, h = synth.random_box(image, rng)
        assert x >= 0 and y >= 0 and x + w <= 300 and y + h <= 200 and w >= 4 and h >= 4
        assert synth.cut_patch(image, np.array([x, y, w, h])).std() >= synth.RANDOM_TARGET_MIN_STD


def test_random_target_pairs_are_valid_training_pairs(sources):
    cfg = load_config(fx.TRAIN_YAML)
    augment_cfg = dataclasses.replace(cfg.data.augment, random_target_prob=1.0)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, augment=augment_cfg))
    dataset = PairDataset(sources, [1, 1], cfg, seed=0)
    batch = collate_pairs([dataset[(0, i)] for i in range(12)])
    centres = batch.search_box[:, :2] + 0.5 * batch.search_box[:, 2:]
    assert ((centres >= 0) & (centres < 1)).all() and (batch.search_box[:, 2:] > 0).all()
    plain = PairDataset(sources, [1, 1], load_config(fx.TRAIN_YAML), seed=0)
    assert not torch.equal(plain[(0, 0)].search_box, dataset[(0, 0)].search_box)


def test_lookalikes_are_the_other_objects_of_the_targets_label():
    image = np.zeros((40, 60, 3), dtype=np.uint8)
    image[0:10, 0:10] = 10
    image[20:30, 20:30] = 20
    image[0:10, 40:50] = 30
    boxes = np.array([[0, 0, 10, 10], [20, 20, 10, 10], [40, 0, 10, 10]], dtype=np.float64)
    still = StillImage(path=None, boxes=boxes, labels=("car", "ship", "car"))
    (patch,) = lookalike_patches(image, still, 0)
    assert patch.shape == (10, 10, 3) and (patch == 30).all()
    unlabelled = StillImage(path=None, boxes=boxes)
    assert sorted(int(p[0, 0, 0]) for p in lookalike_patches(image, unlabelled, 1)) == [10, 30]


def test_lookalike_distractors_change_photo_pairs_only_when_asked(sources):
    cfg = load_config(fx.TRAIN_YAML)
    busy = dataclasses.replace(cfg.data.augment, distractor_prob=1.0, occluder_prob=0.0, random_target_prob=0.0)
    def dataset(lookalike_prob: float) -> PairDataset:
        augment_cfg = dataclasses.replace(busy, lookalike_prob=lookalike_prob)
        config = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, augment=augment_cfg))
        return PairDataset(sources[1:], [1], config, seed=0)  # photos only
    plain, none_asked, lookalikes = dataset(0.0), dataset(0.0), dataset(1.0)
    keys = [(0, i) for i in range(8)]
    assert all(torch.equal(plain[k].search, none_asked[k].search) for k in keys)
    assert any(not torch.equal(plain[k].search, lookalikes[k].search) for k in keys)


def test_shrunk_frame_keeps_its_target_under_the_box():
    rng = np.random.default_rng(0)
    image = np.zeros((200, 300, 3), dtype=np.uint8)
    image[60:140, 100:220] = 255
    box = np.array([100.0, 60.0, 120.0, 80.0])
    for _ in range(10):
        scale = augment.small_target_scale(box, rng)
        small, small_box = augment.shrink(image, box, scale)
        side = np.sqrt(small_box[2] * small_box[3])
        assert augment.SMALL_TARGET_SIDE[0] - 1 <= side <= augment.SMALL_TARGET_SIDE[1] + 1
        ys, xs = np.nonzero(small[..., 0] > 127)
        assert abs(xs.mean() - (small_box[0] + small_box[2] / 2)) < 1.0
        assert abs(ys.mean() - (small_box[1] + small_box[3] / 2)) < 1.0
    assert augment.small_target_scale(np.array([0.0, 0.0, 4.0, 4.0]), rng) is None  # already tiny: left alone


def test_darkened_frames_keep_their_lights():
    rng = np.random.default_rng(0)
    image = np.full((40, 40, 3), 128, dtype=np.uint8)
    image[:10] = 255
    dark = augment.darken(image, 2.0, rng)
    assert dark[10:].mean() < 80 and dark[:10].mean() > 240


def test_pasted_copies_are_made_as_coarse_as_a_shrunk_target():
    patch = np.zeros((40, 90, 3), dtype=np.uint8)
    assert at_most_side(patch, None) is patch and at_most_side(patch, 100.0) is patch
    assert at_most_side(patch, 12.0).shape == (8, 18, 3)
    assert at_most_side(patch, 1.0) is None


def test_far_and_dark_pairs_change_the_data_only_when_asked(sources):
    cfg = load_config(fx.TRAIN_YAML)
    quiet = AugmentConfig(gray_prob=0, joint_flip_prob=0, crop_flip_prob=0, brightness_jitter=0)

    def dataset(**probs: float) -> PairDataset:
        augment_cfg = dataclasses.replace(quiet, **probs)
        config = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, augment=augment_cfg))
        return PairDataset(sources, [1, 1], config, seed=0)

    keys = [(0, i) for i in range(8)]
    plain, none_asked = dataset(), dataset(small_target_prob=0.0, low_light_prob=0.0)
    assert all(torch.equal(plain[k].search, none_asked[k].search) for k in keys)
    far, dark = dataset(small_target_prob=1.0), dataset(low_light_prob=1.0)
    mean = torch.tensor(cfg.data.mean).view(3, 1, 1)
    std = torch.tensor(cfg.data.std).view(3, 1, 1)

    def brightness(pair) -> float:
        return float((pair.search * std + mean).mean())

    assert all(brightness(dark[k]) < brightness(plain[k]) for k in keys)
    # A shrunk target is upsampled into the crop: fewer distinct edges, so neighbouring pixels differ less.
    def detail(pair) -> float:
        return float(pair.search.diff(dim=-1).abs().mean())

    assert np.mean([detail(far[k]) for k in keys]) < np.mean([detail(plain[k]) for k in keys])


def test_undersized_search_crops_show_a_bigger_target_under_its_label(sources):
    cfg = load_config(fx.TRAIN_YAML)
    quiet = AugmentConfig(gray_prob=0, joint_flip_prob=0, crop_flip_prob=0, brightness_jitter=0)

    def dataset(undersize_prob: float) -> PairDataset:
        search = dataclasses.replace(cfg.data.search, undersize_prob=undersize_prob, undersize_min=0.5)
        data = dataclasses.replace(cfg.data, augment=quiet, search=search)
        return PairDataset(sources[:1], [1], dataclasses.replace(cfg, data=data), seed=0)

    plain, undersized = dataset(0.0), dataset(1.0)
    keys = [(0, i) for i in range(16)]
    areas = [(float(plain[k].search_box[2:].prod()), float(undersized[k].search_box[2:].prod())) for k in keys]
    ratio = np.exp(np.mean([np.log(u / p) for p, u in areas]))
    assert 1.2 < ratio < 4.0  # side factors in [0.5, 1]: areas grow by 1 to 4 times, 2 on the geometric mean
    mean, std = torch.tensor(cfg.data.mean).view(3, 1, 1), torch.tensor(cfg.data.std).view(3, 1, 1)
    for key in keys:
        pair = undersized[key]
        x, y, w, h = (pair.search_box * 64).tolist()
        red, green, blue = ((pair.search * std + mean) * 255)[:, int(y + h / 2), int(x + w / 2)].tolist()
        assert red > 200 and green > 150 and blue < 110  # the block's RGB (250, 200, 40)


@pytest.mark.parametrize("key, value", [("UNDERSIZE_PROB", "1.5"), ("UNDERSIZE_MIN", "0")])
def test_undersize_keys_out_of_range_are_refused(key, value):
    with pytest.raises(ConfigError, match=f"DATA.SEARCH.{key}"):
        with_overrides(load_config(fx.TRAIN_YAML), {f"DATA.SEARCH.{key}": value})
