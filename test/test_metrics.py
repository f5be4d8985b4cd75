"""Metrics with real numbers, including the side accuracy."""

import pytest
import torch

from depth_defocus_ros.learn.metrics import MetricAccumulator


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
    acc.update(
        pred, _maps([2.0, 2.0]), gt, _maps([3.0, 2.5]), torch.tensor([2.0]), torch.ones_like(gt, dtype=torch.bool)
    )
    o = acc.result()["overall"]
    assert o["abs_rel"] == pytest.approx((0.5 / 1 + 2 / 4) / 2)
    assert o["rmse"] == pytest.approx(((0.25 + 4) / 2) ** 0.5)
    assert o["delta1"] == 0.0 and o["delta2"] == 0.5  # ratios 1.5 and 2
    assert o["coc_mae"] == pytest.approx((1.0 + 0.5) / 2)
    assert o["side_acc"] == 0.5
    r = acc.result()
    assert r["by_side"]["behind"]["side_acc"] == 0.0 and r["by_side"]["front"]["side_acc"] == 1.0
    assert r["by_coc"]["2-4px"]["pixels"] == 2


def test_side_accuracy_by_model_confidence():
    """Four blurred pixels, focus at 2 m: two confident and right, one unsure and wrong, one
    confident and wrong; the reliability table bins them by max(p, 1 - p)."""
    acc = MetricAccumulator()
    gt = _maps([1.0, 4.0, 4.0, 1.0])
    pred = _maps([1.0, 4.0, 1.0, 4.0])  # last two on the wrong side
    p_behind = _maps([0.05, 0.97, 0.45, 0.8])  # confidences 0.95, 0.97, 0.55, 0.8
    coc = _maps([3.0, 3.0, 3.0, 3.0])
    acc.update(pred, coc, gt, coc, torch.tensor([2.0]), torch.ones_like(gt, dtype=torch.bool), side_prob=p_behind)
    rel = acc.result()["side_by_confidence"]
    assert rel["0.5-0.6"] == {"share": 0.25, "side_acc": 0.0}
    assert rel["0.6-0.75"] == {"share": 0.0, "side_acc": None}
    assert rel["0.75-0.9"] == {"share": 0.25, "side_acc": 0.0}
    assert rel["0.9-1"] == {"share": 0.5, "side_acc": 1.0}
    assert "side_by_confidence" not in MetricAccumulator().result()
