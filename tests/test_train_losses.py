"""The training objective (heat map, focal, GIoU, L1) and the LR / keep-rate schedules."""

import dataclasses
import itertools
import math

import pytest
import torch

from tests import train_fixtures as fx
from tracker import build_model
from tracker.config import load_config
from tracker.train import losses
from tracker.train.schedule import ce_keep_rate, lr_factor


def test_heatmap_peaks_at_the_rounded_centre_and_falls_off():
    boxes = torch.tensor([[0.40, 0.30, 0.20, 0.30], [0.0, 0.0, 0.05, 0.05]])
    heat = losses.gaussian_heatmap(boxes, 16)
    assert heat.shape == (2, 1, 16, 16)
    # centre (0.5, 0.45) * 16 = (8, 7.2) -> cell (8, 7)
    assert heat[0, 0, 7, 8] == 1 and (heat[0] == 1).sum() == 1
    assert heat[0, 0, 7, 9] < 1 and heat[0, 0, 7, 9] > heat[0, 0, 7, 10]
    # a tiny box gets radius 0: a single hot cell
    assert (heat[1] > 0).sum() == 1 and heat[1, 0, 0, 0] == 1


def test_gaussian_radius_matches_the_centernet_formula():
    w, h, overlap = 4.0, 6.0, 0.7
    r1 = ((w + h) + math.sqrt((w + h) ** 2 - 4 * w * h * (1 - overlap) / (1 + overlap))) / 2
    r2 = (2 * (w + h) + math.sqrt(4 * (w + h) ** 2 - 16 * (1 - overlap) * w * h)) / 2
    b3 = -2 * overlap * (w + h)
    r3 = (b3 + math.sqrt(b3**2 - 16 * overlap * (overlap - 1) * w * h)) / 2
    got = losses.gaussian_radius(torch.tensor([w]), torch.tensor([h])).item()
    assert got == pytest.approx(min(r1, r2, r3), rel=1e-6)


def test_focal_loss_rewards_a_peak_at_the_target():
    target = losses.gaussian_heatmap(torch.tensor([[0.4, 0.4, 0.2, 0.2]]), 8)
    good = target.clamp(1e-4, 1 - 1e-4)
    flat = torch.full_like(target, 0.5)
    wrong = torch.roll(good, shifts=4, dims=3)
    assert losses.focal_loss(good, target) < losses.focal_loss(wrong, target) < losses.focal_loss(flat, target) * 10
    assert losses.focal_loss(good, target) < 0.1


def test_giou_is_one_for_equal_boxes_and_negative_far_apart():
    a = torch.tensor([[0.1, 0.1, 0.3, 0.3], [0.0, 0.0, 0.1, 0.1]])
    b = torch.tensor([[0.1, 0.1, 0.3, 0.3], [0.8, 0.8, 0.9, 0.9]])
    giou, iou = losses.giou_and_iou(a, b)
    assert giou[0].item() == pytest.approx(1.0) and iou[0].item() == pytest.approx(1.0)
    assert iou[1].item() == 0 and giou[1].item() < -0.9


def test_tracking_loss_weights_and_gradients():
    cfg = load_config(fx.TRAIN_YAML)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    template, search = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 64, 64)
    out = model(template, search)
    gt = torch.tensor([[0.4, 0.4, 0.2, 0.2], [0.1, 0.5, 0.3, 0.1]])
    terms = losses.TrackingLoss(cfg)(out, gt)
    expected = 2.0 * terms.giou + 5.0 * terms.l1 + 1.0 * terms.focal
    assert terms.total.item() == pytest.approx(expected, rel=1e-5)
    terms.total.backward()
    assert model.box_head.conv5_size.weight.grad.abs().sum() > 0
    assert model.backbone.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def _with_train(cfg, **changes):
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **changes))


def test_keep_rate_warms_from_one_to_the_config_ratio():
    cfg = _with_train(load_config("ostrack_vitb256_ce"), ce_start_epoch=20, ce_warm_epoch=80)
    spe = 10
    assert ce_keep_rate(cfg, 0, spe) == 1.0 and ce_keep_rate(cfg, 199, spe) == 1.0
    assert ce_keep_rate(cfg, 200, spe) == pytest.approx(1.0)
    assert ce_keep_rate(cfg, 600, spe) == pytest.approx(0.85)  # halfway along the cosine
    assert ce_keep_rate(cfg, 1000, spe) == pytest.approx(0.7) and ce_keep_rate(cfg, 5000, spe) == 0.7
    rates = [ce_keep_rate(cfg, s, spe) for s in range(0, 1200, 7)]
    assert all(a >= b for a, b in itertools.pairwise(rates))
    assert ce_keep_rate(load_config("ostrack_vitb256"), 500, spe) is None


def test_step_schedule_drops_once_per_interval_after_warm_up():
    cfg = load_config("ostrack_vitb256_ce")  # LR_DROP_EPOCH 240, DECAY_RATE 0.1
    cfg = dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, scheduler=dataclasses.replace(cfg.train.scheduler, warmup_epoch=2))
    )
    assert lr_factor(cfg, 0, 100) == pytest.approx(1 / 200)
    assert lr_factor(cfg, 199, 100) == pytest.approx(1.0)
    assert lr_factor(cfg, 23999, 100) == 1.0 and lr_factor(cfg, 24000, 100) == pytest.approx(0.1)


def test_cosine_schedule_ends_at_zero():
    cfg = load_config("ostrack_vitb256_ce")
    cosine = dataclasses.replace(cfg.train.scheduler, type="cosine")
    cfg = _with_train(cfg, epoch=10, scheduler=cosine)
    assert lr_factor(cfg, 0, 10) == 1.0
    assert lr_factor(cfg, 50, 10) == pytest.approx(0.5)
    assert lr_factor(cfg, 100, 10) == pytest.approx(0.0, abs=1e-12)
