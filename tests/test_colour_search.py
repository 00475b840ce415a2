"""Where a lost target's colours are in the frame: the places the re-detection looks first."""

import numpy as np
import pytest

from tracker.colour_search import colour_peaks
from tracker.presence import colour_histogram
from tracker.types import Box

RED, GREEN = (0, 0, 255), (0, 200, 0)  # BGR


def _grey_noise(seed=0, size=(360, 480)):
    rng = np.random.default_rng(seed)
    return np.repeat(rng.integers(60, 190, (*size, 1), dtype=np.uint8), 3, axis=2)


def _with_squares(image, squares):
    image = image.copy()
    for (x, y, side), colour in squares:
        image[y : y + side, x : x + side] = colour
    return image


def test_the_first_peak_is_on_the_patch_of_the_targets_colours():
    target = colour_histogram(_with_squares(_grey_noise(), [((40, 40, 24), RED)]), Box(40, 40, 24, 24))
    frame = _with_squares(_grey_noise(1), [((350, 250, 24), RED), ((100, 300, 24), GREEN)])
    (x, y), *_ = colour_peaks(frame, target, (24, 24), 3, avoid=[], min_contrast=2.0)
    assert (x, y) == (pytest.approx(362, abs=3), pytest.approx(262, abs=3))


def test_a_place_to_avoid_moves_the_search_to_the_next_look_alike():
    target = colour_histogram(_with_squares(_grey_noise(), [((40, 40, 24), RED)]), Box(40, 40, 24, 24))
    frame = _with_squares(_grey_noise(1), [((350, 250, 24), RED), ((60, 50, 24), RED)])
    peaks = colour_peaks(frame, target, (24, 24), 1, avoid=[Box(350, 250, 24, 24)], min_contrast=2.0)
    assert peaks == [(pytest.approx(72, abs=3), pytest.approx(62, abs=3))]


def test_peaks_are_a_box_apart_and_none_where_no_colour_matches():
    target = colour_histogram(_with_squares(_grey_noise(), [((40, 40, 24), RED)]), Box(40, 40, 24, 24))
    frame = _with_squares(_grey_noise(1), [((200, 150, 48), RED)])
    peaks = colour_peaks(frame, target, (24, 24), 4, avoid=[], min_contrast=2.0)
    for i, (xa, ya) in enumerate(peaks):
        for xb, yb in peaks[i + 1 :]:
            assert abs(xa - xb) > 24 or abs(ya - yb) > 24
    green_only = colour_histogram(_with_squares(_grey_noise(), [((40, 40, 24), GREEN)]), Box(40, 40, 24, 24))
    assert colour_peaks(frame, green_only, (24, 24), 4, avoid=[], min_contrast=2.0) == []


def test_a_large_target_is_searched_on_a_shrunk_frame_in_frame_pixels():
    target = colour_histogram(_with_squares(_grey_noise(), [((40, 40, 120), RED)]), Box(40, 40, 120, 120))
    frame = _with_squares(_grey_noise(1), [((300, 200, 120), RED)])
    (x, y), *_ = colour_peaks(frame, target, (120, 120), 1, avoid=[], min_contrast=2.0)
    assert (x, y) == (pytest.approx(360, abs=10), pytest.approx(260, abs=10))


def test_no_place_counts_where_the_whole_frame_has_the_targets_colours():
    target = colour_histogram(_with_squares(_grey_noise(), [((40, 40, 24), RED)]), Box(40, 40, 24, 24))
    frame = _with_squares(_grey_noise(1), [((350, 250, 24), RED)])
    assert colour_peaks(frame, target, (24, 24), 1, avoid=[], min_contrast=2.0)
    all_red = np.full_like(frame, RED)
    assert colour_peaks(all_red, target, (24, 24), 1, avoid=[], min_contrast=2.0) == []


def test_a_small_target_in_a_large_frame_is_found_in_frame_pixels():
    target = colour_histogram(_with_squares(_grey_noise(), [((40, 40, 12), RED)]), Box(40, 40, 12, 12))
    frame = _with_squares(_grey_noise(2, size=(1080, 1920)), [((1500, 900, 12), RED)])
    (x, y), *_ = colour_peaks(frame, target, (12, 12), 1, avoid=[], min_contrast=2.0)
    assert (x, y) == (pytest.approx(1506, abs=3), pytest.approx(906, abs=3))
