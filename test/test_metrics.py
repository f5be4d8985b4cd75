"""Metrics with real numbers, including the side accuracy."""

import pytest
import torch

from depth_defocus_ros.metrics import MetricAccumulator


def _maps(values):
    return torch.tensor(values, dtype=torch.float32).view(1, 1, 1, -1)


def test_perfect_prediction():
    acc = MetricAccumulator()
    d = _maps([1.0, 2.0, 4.0, 8.0])
    c = _maps([3.0, 0.0, 2.0, 5.0])
    acc.update(d, c, d, c, torch.tensor([2.0]), torch.ones_like(d, dtype=torch.bool))
    o = acc.result()["overall"]
    assert o["abs_rel"] == 0 and o["rmse"] == 0 and o["delta1"] == 1 and o["coc_mae"] == 0
    assert o["side_acc"] == 1.0 and o["side_pixels"] == 3  # the in-focus pixel does not count


def test_hand_computed_errors_and_side():
    acc = MetricAccumulator()
    gt = _maps([1.0, 4.0])
    pred = _maps([1.5, 2.0])  # second sits at the focus distance: wrong side
    acc.update(pred, _maps([2.0, 2.0]), gt, _maps([3.0, 2.5]), torch.tensor([2.0]),
               torch.ones_like(gt, dtype=torch.bool))
    o = acc.result()["overall"]
    assert o["abs_rel"] == pytest.approx((0.5 / 1 + 2 / 4) / 2)
    assert o["rmse"] == pytest.approx(((0.25 + 4) / 2) ** 0.5)
    assert o["delta1"] == 0.0 and o["delta2"] == 0.5  # ratios 1.5 and 2
    assert o["coc_mae"] == pytest.approx((1.0 + 0.5) / 2)
    assert o["side_acc"] == 0.5
    r = acc.result()
    assert r["by_side"]["behind"]["side_acc"] == 0.0 and r["by_side"]["front"]["side_acc"] == 1.0
    assert r["by_coc"]["2-4px"]["pixels"] == 2
