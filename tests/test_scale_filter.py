"""The online scale filter (DSST's scale estimation): it follows a target's size at a known centre."""

import cv2
import numpy as np
import pytest

from tests.helpers import TINY_YAML
from tracker import Box
from tracker.config import ConfigError, ScaleFilterConfig, load_config, with_overrides
from tracker.scale_filter import ScaleFilter, cell_features, gray_frame

CENTRE = (320.0, 180.0)
BASE = (40, 60)


def _scene(side: float) -> tuple[np.ndarray, Box]:
    """A blurred-noise target, ``side`` times its first size, at the centre of a blurred-noise background."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(cv2.resize((rng.random((30, 20)) * 255).astype(np.uint8), (80, 120)), (5, 5), 0)
    frame = cv2.GaussianBlur((rng.random((360, 640)) * 255).astype(np.uint8), (9, 9), 0)
    w, h = round(BASE[0] * side), round(BASE[1] * side)
    x, y = round(CENTRE[0] - w / 2), round(CENTRE[1] - h / 2)
    frame[y : y + h, x : x + w] = cv2.resize(texture, (w, h), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR), Box(x, y, w, h)


@pytest.mark.parametrize("rate", [1.015, 1 / 1.015])
def test_filter_follows_a_growing_and_a_shrinking_target(rate):
    frame, box = _scene(1.0)
    scale_filter = ScaleFilter(ScaleFilterConfig(weight=1.0), gray_frame(frame), box)
    side = 1.0
    for _ in range(25):
        side *= rate
        frame, truth = _scene(side)
        gray = gray_frame(frame)
        w, h = scale_filter.estimate(gray, *CENTRE)
        scale_filter.update(gray, Box(CENTRE[0] - w / 2, CENTRE[1] - h / 2, w, h))
    assert w == pytest.approx(truth.w, rel=0.06) and h == pytest.approx(truth.h, rel=0.06)
    assert w / h == pytest.approx(BASE[0] / BASE[1], rel=1e-6)  # the first box's aspect, always


def test_filter_stays_put_on_a_still_target():
    frame, box = _scene(1.0)
    gray = gray_frame(frame)
    scale_filter = ScaleFilter(ScaleFilterConfig(weight=1.0), gray, box)
    assert scale_filter.estimate(gray, *CENTRE) == pytest.approx(BASE, rel=1e-6)


def test_features_ignore_a_change_of_brightness():
    patches = np.random.default_rng(1).random((3, 24, 16)).astype(np.float32) * 0.5
    assert cell_features(patches + 0.3) == pytest.approx(cell_features(patches), abs=1e-4)
    assert cell_features(patches).shape == (3, 6 * 4 * 10)  # 4-pixel cells, 9 orientations and a grey level


@pytest.mark.parametrize(
    "key, value, words",
    [("WEIGHT", "1.5", "WEIGHT must be from 0"), ("SCALES", "4", "odd number"), ("STEP", "1.0", "above 1")],
)
def test_bad_scale_filter_settings_are_clear_errors(key, value, words):
    with pytest.raises(ConfigError, match=words):
        with_overrides(load_config(TINY_YAML), {f"TRACK.SCALE_FILTER.{key}": value})
