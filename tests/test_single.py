"""The single-target tracker on awkward frames and boxes: borders, sizes, channels, bad boxes."""

import numpy as np
import pytest
import torch

from tests.helpers import TINY_WEIGHTS, TINY_YAML
from tracker import Box, InputError, build_tracker
from tracker.preprocess import Normalizer, crop_around, dim_template_context, stack_rows, to_bgr_uint8
from tracker.single import clip_box


@pytest.fixture(scope="module")
def tracker():
    torch.manual_seed(0)
    return build_tracker(TINY_YAML, TINY_WEIGHTS, device="cpu")


def _frame(h=240, w=320, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_crop_inside_has_no_padding():
    image = _frame()
    crop = crop_around(image, Box(100, 80, 20, 20), 2.0, 40)
    assert crop.crop_size == 40 and crop.resize_factor == 1.0
    assert not crop.pad_mask.any()
    assert np.array_equal(crop.image, image[70:110, 90:130])


def test_crop_beyond_the_border_is_zero_padded_and_masked():
    image = np.full((100, 100, 3), 200, np.uint8)
    crop = crop_around(image, Box(-10, -10, 20, 20), 2.0, 40)
    assert crop.image[:15, :15].max() == 0 and crop.pad_mask[:15, :15].all()
    assert crop.image[-5:, -5:].min() == 200 and not crop.pad_mask[-5:, -5:].any()


def test_crop_reaching_the_last_column_pads_it_like_the_official_code():
    image = np.full((50, 50, 3), 255, np.uint8)
    crop = crop_around(image, Box(30, 10, 20, 20), 1.0, 20)  # x2 == W: last column becomes padding
    assert crop.image[:, -1].max() == 0 and crop.image[:, :-1].min() == 255


def test_crop_wholly_outside_is_black():
    crop = crop_around(_frame(), Box(1000, 1000, 10, 10), 2.0, 32)
    assert crop.image.max() == 0 and crop.pad_mask.all()


def test_normalising_a_numpy_crop_gives_the_bits_torch_arithmetic_gives():
    normalize = Normalizer((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), torch.device("cpu"))
    every_byte = np.arange(256 * 3, dtype=np.int64).reshape(16, 16, 3) % 256
    crops = [every_byte.astype(np.uint8), np.random.default_rng(4).integers(0, 256, (20, 30, 3), dtype=np.uint8)]
    for crop in crops:
        expected = (torch.from_numpy(crop).float().permute(2, 0, 1)[None] / 255.0 - normalize.mean) / normalize.std
        assert torch.equal(normalize(crop), expected)
        assert torch.equal(normalize(torch.from_numpy(crop)), expected)  # the uint8 tensor (GPU crop) path


def test_stacking_rows_is_torch_cat():
    rows = [torch.randn(1, 3, 8, 8), torch.randn(2, 3, 8, 8)]
    assert torch.equal(stack_rows(rows), torch.cat(rows))
    assert stack_rows(rows[:1]) is rows[0]


@pytest.mark.parametrize("box", [Box(5, 5, 1, 1), Box(0, 0, 320, 240), Box(-50, -40, 420, 320), Box(310, 230, 10, 10)])
def test_tracking_survives_tiny_huge_and_border_boxes(tracker, box):
    tracker.init(_frame(), box)
    for seed in range(1, 3):
        result = tracker.update(_frame(seed=seed))
        assert result.box.is_finite() and result.box.w >= 10 and result.box.h >= 10
        assert 0 <= result.box.x <= 310 and 0 <= result.box.y <= 230
        assert 0.0 <= result.score <= 1.0


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((60, 80), np.uint8),
        np.zeros((60, 80, 1), np.uint8),
        np.zeros((60, 80, 4), np.uint8),
        np.zeros((60, 80, 3), np.uint16),
        np.zeros((8, 8, 3), np.uint8),
    ],
)
def test_gray_16bit_bgra_and_tiny_frames_are_converted(tracker, image):
    assert to_bgr_uint8(image).shape == (*image.shape[:2], 3)
    tracker.init(image, Box(1, 1, 4, 4))
    assert tracker.update(image).box.is_finite()


@pytest.mark.parametrize("image", [np.zeros((10, 10, 2), np.uint8), np.zeros((0, 0, 3), np.uint8), "frame"])
def test_unusable_frames_are_refused_clearly(image):
    with pytest.raises(InputError):
        to_bgr_uint8(image)


@pytest.mark.parametrize(
    ("box", "words"),
    [
        (Box(10, 10, 0, 5), "zero or negative size"),
        (Box(10, 10, -5, 5), "zero or negative size"),
        (Box(400, 10, 10, 10), "outside"),
        (Box(-30, -30, 10, 10), "outside"),
        (Box(float("nan"), 0, 5, 5), "non-finite"),
    ],
)
def test_bad_init_boxes_are_clear_errors(tracker, box, words):
    with pytest.raises(InputError, match=words):
        tracker.init(_frame(), box)


def test_update_before_init_is_a_clear_error():
    fresh = build_tracker(TINY_YAML, device="cpu")
    with pytest.raises(InputError, match="init"):
        fresh.update(_frame())


def test_clip_keeps_a_margin_inside_the_frame():
    assert clip_box(Box(-20, -20, 15, 15), 100, 80, margin=10) == Box(0, 0, 10, 10)
    assert clip_box(Box(95, 75, 30, 30), 100, 80, margin=10) == Box(90, 70, 10, 10)


@pytest.mark.parametrize(("margin", "smallest"), [(10, 10.0), (4, 4.0)])
def test_a_target_under_ten_pixels_keeps_its_size_only_with_a_smaller_clip_margin(margin, smallest):
    # A near-frozen size update keeps the 6x4 box; the clip margin alone decides what is left of it.
    overrides = {"TRACK.SIZE_UPDATE": "0.001", "TRACK.CLIP_MARGIN": str(margin)}
    tracker = build_tracker(TINY_YAML, TINY_WEIGHTS, device="cpu", backend="eager", overrides=overrides)
    tracker.init(_frame(), Box(150, 100, 6, 4))
    box = tracker.update(_frame(seed=1)).box
    assert box.h == pytest.approx(smallest, abs=0.01)
    assert box.w == pytest.approx(max(6.0, smallest), abs=0.05)


def test_cuda_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(InputError, match="no CUDA GPU"):
        build_tracker(TINY_YAML, device="cuda")


def _tracker_with_network(network, **track):
    """A tracker whose network is ``network(template, search) -> (score, size, offset)``; ``track`` sets ``TRACK``
    fields."""
    import dataclasses

    from tracker.accel import Network
    from tracker.build import load_model
    from tracker.single import SingleTracker

    model, cfg = load_model(TINY_YAML, TINY_WEIGHTS)
    cfg = dataclasses.replace(cfg, track=dataclasses.replace(cfg.track, **track))
    return SingleTracker(model, cfg, "cpu", network=Network("fake", "fp32", network, "exact"))


def _tracker_with_maps(score, size, **track):
    """A tracker whose network always answers with these score and size maps (zero offsets)."""
    offset = torch.zeros_like(size)
    return _tracker_with_network(lambda t, s: (score, size, offset), **track)


def _tracker_predicting_twice_the_size(size_update: float, **track):
    """The network always puts the target at the crop centre at twice the previous (square) box's size."""
    from tracker.build import load_model

    _, cfg = load_model(TINY_YAML, TINY_WEIGHTS)
    side = cfg.search_tokens_side
    # The previous box spans 1 / SEARCH_FACTOR of the crop; the network says twice that, centred.
    size = torch.full((1, 2, side, side), 2.0 / cfg.test.search_factor)
    score = torch.zeros(1, 1, side, side)
    score[0, 0, side // 2, side // 2] = 1.0
    return _tracker_with_maps(score, size, size_update=size_update, **track)


@pytest.mark.parametrize("size_update", [1.0, 0.5, 0.25])
def test_size_update_moves_the_box_that_share_of_the_way_to_the_prediction(size_update):
    tracker = _tracker_predicting_twice_the_size(size_update)
    frame = _frame(480, 640)
    tracker.init(frame, Box(300, 200, 40, 40))  # square, so the crop side is SEARCH_FACTOR box sides
    box = tracker.update(frame).box
    assert box.w == pytest.approx(40 * (1 + size_update), rel=1e-3)
    assert box.h == pytest.approx(40 * (1 + size_update), rel=1e-3)
    assert box.cx == pytest.approx(320, abs=0.5) and box.cy == pytest.approx(220, abs=0.5)


@pytest.mark.parametrize("penalty", [0.2, 1.0])
def test_scale_penalty_slows_an_abrupt_size_change(penalty):
    tracker = _tracker_predicting_twice_the_size(0.5, scale_penalty=penalty)
    frame = _frame(480, 640)
    tracker.init(frame, Box(300, 200, 40, 40))
    box = tracker.update(frame).box
    # side twice the previous, same aspect: the penalty is exp(-k * (2 - 1)), and it scales the size update
    assert box.w == pytest.approx(40 * (1 + 0.5 * np.exp(-penalty)), rel=1e-3)
    assert box.h == pytest.approx(box.w, rel=1e-6)


def test_scale_penalty_prefers_a_candidate_of_the_previous_size():
    from tracker.build import load_model

    _, cfg = load_model(TINY_YAML, TINY_WEIGHTS)
    side, centre = cfg.search_tokens_side, cfg.search_tokens_side // 2
    same = 1.0 / cfg.test.search_factor  # the previous box's side, as a share of the crop
    size = torch.full((1, 2, side, side), same)
    size[0, :, centre, centre] = 3 * same  # the strongest peak claims a box three times as large
    score = torch.zeros(1, 1, side, side)
    score[0, 0, centre, centre], score[0, 0, centre, centre + 1] = 1.0, 0.8
    frame = _frame(480, 640)
    for penalty, expected_width in ((0.0, 120.0), (1.0, 40.0)):
        tracker = _tracker_with_maps(score, size, scale_penalty=penalty)
        tracker.init(frame, Box(300, 200, 40, 40))
        assert tracker.update(frame).box.w == pytest.approx(expected_width, rel=1e-3)


def test_template_context_is_dimmed_outside_the_box_only():
    template = torch.ones(1, 3, 8, 8)
    assert dim_template_context(template, np.array([2.0, 2.0, 3.0, 4.0]), 1.0) is template
    dimmed = dim_template_context(template, np.array([2.0, 2.0, 3.0, 4.0]), 0.5)
    assert (dimmed[..., 2:6, 2:5] == 1).all() and dimmed.sum() == 3 * (12 + 0.5 * 52)


def test_tracker_dims_its_template_context_when_the_config_asks():
    plain = build_tracker(TINY_YAML, TINY_WEIGHTS, device="cpu", backend="eager")
    dimmed = build_tracker(
        TINY_YAML, TINY_WEIGHTS, device="cpu", backend="eager", overrides={"MODEL.TEMPLATE_CONTEXT_GAIN": "0.5"}
    )
    frame, box = _frame(), Box(140, 100, 16, 32)  # a tall box: 1:2, centred in the template crop
    plain.init(frame, box)
    dimmed.init(frame, box)
    ratio = dimmed.template / plain.template
    side = ratio.shape[-1]
    assert torch.allclose(ratio[..., :, : side // 4 - 1], torch.tensor(0.5))  # left of the box: context
    assert torch.allclose(ratio[..., side // 3 : 2 * side // 3, side // 2], torch.tensor(1.0))  # the target


def test_flip_average_of_a_mirrored_step_gives_the_step_back():
    from tracker.accel import NetOutput
    from tracker.single import flip_averaged

    rng = torch.Generator().manual_seed(0)
    score, size, offset = (torch.rand(1, c, 8, 8, generator=rng) for c in (1, 2, 2))
    step = NetOutput(score, size, offset, ())
    mirrored_offset = offset.flip(-1).clone()
    mirrored_offset[:, 0] = 1 - mirrored_offset[:, 0]  # a cell's x offset, seen in the mirror
    mirrored = NetOutput(score.flip(-1), size.flip(-1), mirrored_offset, ())
    averaged = flip_averaged(step, mirrored)
    for got, want in ((averaged.score_map, score), (averaged.size_map, size), (averaged.offset_map, offset)):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("flip_average, passes", [(False, 1), (True, 2)])
def test_flip_average_runs_the_network_on_the_mirrored_inputs_too(flip_average, passes):
    from tracker.config import load_config

    side, seen = load_config(TINY_YAML).search_tokens_side, []

    def network(template, search):
        seen.append(search)
        return torch.ones(1, 1, side, side), torch.full((1, 2, side, side), 0.2), torch.zeros(1, 2, side, side)

    tracker = _tracker_with_network(network, flip_average=flip_average)
    frame = _frame(480, 640)
    tracker.init(frame, Box(300, 200, 40, 40))
    tracker.update(frame)
    assert len(seen) == passes
    if flip_average:
        torch.testing.assert_close(seen[1], seen[0].flip(-1))


@pytest.mark.parametrize("weight, expected_side", [(0.0, 60.0), (1.0, 40.0)])
def test_scale_filter_holds_the_size_of_a_target_that_does_not_change(weight, expected_side):
    """The network claims twice the size each step (with half of it taken); on a still frame the filter sees the
    target unchanged, so at full weight the box keeps its size."""
    from tracker.config import ScaleFilterConfig

    tracker = _tracker_predicting_twice_the_size(0.5, scale_filter=ScaleFilterConfig(weight=weight))
    frame = _frame(480, 640)
    tracker.init(frame, Box(300, 200, 40, 40))
    box = tracker.update(frame).box
    assert box.w == pytest.approx(expected_side, rel=1e-3) and box.h == pytest.approx(expected_side, rel=1e-3)

