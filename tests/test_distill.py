"""Distillation targets: NanoTrack v3's target probabilities on the student's own crops, on the student's grid."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from tests.helpers import SHARED
from tracker.config import load_config, with_overrides
from tracker.errors import ConfigError
from tracker.train.distill import TeacherMaps, distill_loss, student_grid

TEACHER = SHARED / "peers" / "nanotrack_v3" / "nanotrack_v3.safetensors"
CLIP = SHARED / "data" / "train" / "sequences" / "OTB_Boy"  # training footage only


def _frames(count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(CLIP / "video.mp4"))
    frames = [capture.read()[1] for _ in range(count)]
    capture.release()
    return frames


def _crop(frame: np.ndarray, cx: float, cy: float, side: float, size: int, cfg) -> torch.Tensor:
    """A square crop of ``side`` pixels about (cx, cy), resized to ``size``, as the student's normalised RGB."""
    scale = size / side
    warp = np.array([[scale, 0, size / 2 - scale * cx], [0, scale, size / 2 - scale * cy]], np.float32)
    patch = cv2.warpAffine(frame, warp, (size, size), borderMode=cv2.BORDER_REPLICATE)
    rgb = torch.from_numpy(cv2.cvtColor(patch, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).float() / 255
    mean, std = torch.tensor(cfg.data.mean).view(3, 1, 1), torch.tensor(cfg.data.std).view(3, 1, 1)
    return ((rgb - mean) / std).unsqueeze(0)


@pytest.fixture(scope="module")
def teacher_and_cfg():
    if not (TEACHER.is_file() and CLIP.is_dir()):
        pytest.skip("the NanoTrack v3 weights or the training clip are not beside the repo")
    cfg = load_config("bundled_small")
    return TeacherMaps(TEACHER, tuple(cfg.data.mean), tuple(cfg.data.std), cfg.search_tokens_side), cfg


def test_the_student_grid_reads_the_teacher_map_at_the_students_cell_centres():
    grid = student_grid(10)
    assert grid.shape == (1, 10, 10, 2)
    # Cell 0 of 10 is centred 0.45 of the crop left of its centre; the teacher's outer points are 112 of 255 away.
    assert grid[0, 0, 0, 0].item() == pytest.approx(-0.45 / (112 / 255))
    assert torch.allclose(grid[0, 4, 5], torch.tensor([0.05, -0.05]) / (112 / 255))
    assert torch.allclose(grid[..., 0], -grid.flip(2)[..., 0])  # symmetric about the crop centre


@pytest.mark.parametrize("shift", [0.0, 0.25])
def test_the_teacher_finds_the_target_where_the_student_crop_put_it(teacher_and_cfg, shift):
    teacher, cfg = teacher_and_cfg
    first, *_, later = _frames(6)
    x, y, w, h = np.loadtxt(CLIP / "groundtruth.txt", delimiter=",")[0].tolist()
    lx, ly, lw, lh = np.loadtxt(CLIP / "groundtruth.txt", delimiter=",")[5].tolist()
    side = np.sqrt(w * h)
    template = _crop(first, x + w / 2, y + h / 2, 2 * side, cfg.data.template.size, cfg)
    search_side = 4 * np.sqrt(lw * lh)
    # The crop is cut `shift` of its side to the right of the target, so the target sits that far left of centre.
    search = _crop(later, lx + lw / 2 + shift * search_side, ly + lh / 2, search_side, cfg.data.search.size, cfg)
    probabilities = teacher(template, search)
    side_cells = cfg.search_tokens_side
    assert probabilities.shape == (1, 1, side_cells, side_cells)
    row, col = divmod(int(probabilities.flatten().argmax()), side_cells)
    expected = (0.5 - shift) * side_cells - 0.5
    assert abs(col - expected) <= 1 and abs(row - (side_cells / 2 - 0.5)) <= 1
    assert probabilities.max() > 0.5 and probabilities.min() < 0.05


def test_the_distillation_loss_is_least_where_the_student_agrees():
    teacher = torch.zeros(2, 1, 10, 10)
    teacher[:, :, 4, 4] = 1.0
    agreeing, other = teacher.clamp(0.01, 0.99), teacher.roll(3, dims=3).clamp(0.01, 0.99)
    # Per crop: 100 cells at 0.01 from the teacher cost about 1; moving the peak costs two cells' worth more.
    assert distill_loss(agreeing, teacher) == pytest.approx(100 * -np.log(0.99), rel=1e-4)
    assert distill_loss(other, teacher) > 5 * distill_loss(agreeing, teacher)


@pytest.mark.parametrize(
    ("keys", "message"),
    [({"TRAIN.DISTILL_WEIGHT": "0.5"}, "needs TRAIN.DISTILL_TEACHER"),
     ({"TRAIN.DISTILL_WEIGHT": "-1", "TRAIN.DISTILL_TEACHER": "t.safetensors"}, "0 \\(off\\) or more")],
)
def test_a_distillation_setting_that_cannot_work_is_refused_in_one_line(keys, message):
    with pytest.raises(ConfigError, match=message):
        with_overrides(load_config("bundled_small"), keys, source="test")
