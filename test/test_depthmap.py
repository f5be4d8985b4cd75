"""Depth only where it is determined: thin-lens sides, relative error, side rules, validity."""

import math

import pytest
import torch

from depth_defocus_ros.estimate.depthmap import compose_depth, side_probability
from depth_defocus_ros.optics import Lens, depth_candidates, depth_on_side, relative_depth_error

LENS = Lens(0.05, 2.0, 2.0)
LT, FX = LENS.as_tensor(), torch.tensor([1000.0])
C_INF = 0.025 * 1000 / 1.95  # 12.82 px


def _m(values):
    return torch.tensor(values, dtype=torch.float32).view(1, 1, 1, -1)


def test_depth_on_side_is_the_thin_lens_solution():
    c = _m([6.410256, 6.410256, 20.0])
    d = depth_on_side(c, _m([1, 0, 1]).bool(), LT, FX)
    near, far = depth_candidates(6.410256, LENS, 1000.0)
    assert float(d[0, 0, 0, 0]) == pytest.approx(far, rel=1e-5)
    assert float(d[0, 0, 0, 1]) == pytest.approx(near, rel=1e-5)
    assert math.isinf(float(d[0, 0, 0, 2]))  # beyond the far limit


def test_relative_error_through_the_thin_lens_inverse():
    """In front: sigma_d / d = sigma_c / (c_inf + c), checked against a finite difference. Behind,
    where the depth diverges, the depth change of a CoC one sigma larger: exact, and larger than
    the first order; inf once c + sigma reaches c_inf."""
    c, s = 4.0, 0.1
    d = lambda cc, side: LENS.focus_distance_m / (1 - side * cc / C_INF)  # noqa: E731
    front = float(relative_depth_error(_m([s]), _m([c]), _m([False]).bool(), LT, FX))
    fd = (d(c + 1e-3, -1) - d(c - 1e-3, -1)) / 2e-3 * s / d(c, -1)
    assert front == pytest.approx(abs(fd), rel=1e-3)
    for c, s in ((4.0, 0.1), (10.0, 2.0)):
        behind = float(relative_depth_error(_m([s]), _m([c]), _m([True]).bool(), LT, FX))
        assert behind == pytest.approx(d(c + s, 1) / d(c, 1) - 1, rel=1e-4)
        assert behind > s / (C_INF - c)
    assert math.isinf(float(relative_depth_error(_m([0.1]), _m([C_INF + 1]), _m([True]).bool(), LT, FX)))
    assert math.isinf(float(relative_depth_error(_m([1.0]), _m([C_INF - 0.5]), _m([True]).bool(), LT, FX)))


def test_side_rules():
    sig = _m([0.2, 0.2, 0.2])
    c = _m([2.0, C_INF + 3.0, 2.0])
    p = side_probability(c, sig, LT, FX, "auto")
    assert float(p[0, 0, 0, 0]) == pytest.approx(0.5, abs=1e-6)  # no cue: unsure
    assert float(p[0, 0, 0, 1]) < 1e-3  # a CoC above the CoC at infinity is in front
    assert float(side_probability(c, sig, LT, FX, "front").max()) == 0.0
    assert float(side_probability(c, sig, LT, FX, "behind").min()) == 1.0
    # the working range: the far candidate of c = 2 px is 2 / (1 - 2/12.82) = 2.37 m; a range
    # ending at 2.2 m leaves only the front
    assert float(side_probability(c, sig, LT, FX, "auto", max_depth_m=2.2)[0, 0, 0, 0]) < 0.01


def test_a_learned_side_is_not_overruled_twice_by_the_lens_rule():
    """A learned side read c / c_inf itself and was calibrated with it: its probability stands
    (applying the lens rule again made it overconfident on the held-out scenes); the working
    range, which it cannot know, still rules out a side."""
    sig = _m([0.2, 0.2])
    c = _m([2.0, C_INF + 3.0])
    prior = _m([0.7, 0.05])
    p = side_probability(c, sig, LT, FX, "auto", prior)
    assert torch.allclose(p, prior)
    assert float(side_probability(c, sig, LT, FX, "auto", prior, max_depth_m=2.2)[0, 0, 0, 0]) < 0.01
    assert float(side_probability(c, sig, LT, FX, "auto", 1 - prior, min_depth_m=1.9)[0, 0, 0, 1]) > 0.99


def test_an_unsure_side_takes_the_near_depth():
    """Even odds: the near depth (bounded error) is taken; the far one needs p > r / (1 + r)."""
    c, sig = _m([3.0, 3.0, 3.0]), _m([0.1, 0.1, 0.1])
    near, far = depth_candidates(3.0, LENS, 1000.0)
    r = far / near
    p = _m([0.5, r / (1 + r) - 0.01, r / (1 + r) + 0.01])
    d = compose_depth(c, sig, p, LT, FX, 1e9).depth[0, 0, 0]
    assert float(d[0]) == pytest.approx(near, rel=1e-5) and float(d[1]) == pytest.approx(near, rel=1e-5)
    assert float(d[2]) == pytest.approx(far, rel=1e-5)


def test_validity():
    c = _m([0.3, 3.0, 3.0, 12.0])
    sig = _m([0.3, 0.3, 0.3, 0.3])
    auto = side_probability(c, sig, LT, FX, "auto")
    res = compose_depth(c, sig, auto, LT, FX, 0.25)
    # near the focus plane both sides agree: published although the side is unknown
    assert math.isfinite(float(res.depth[0, 0, 0, 0]))
    assert float(res.depth[0, 0, 0, 0]) == pytest.approx(2.0, rel=0.05)
    # 3 px with an unknown side: the two depths are 1.62 m and 2.61 m: not published
    assert math.isnan(float(res.depth[0, 0, 0, 1]))
    front = compose_depth(c, sig, side_probability(c, sig, LT, FX, "front"), LT, FX, 0.25)
    near = depth_candidates(3.0, LENS, 1000.0)[0]
    assert float(front.depth[0, 0, 0, 2]) == pytest.approx(near, rel=1e-5)
    # behind at 12 px of a 12.82 px CoC at infinity: ill-conditioned, not published
    behind = compose_depth(c, sig, side_probability(c, sig, LT, FX, "behind"), LT, FX, 0.25)
    assert math.isnan(float(behind.depth[0, 0, 0, 3])) and math.isfinite(float(behind.depth[0, 0, 0, 1]))
    # a CoC above the CoC at infinity has no depth behind the focus plane: 'behind' publishes nothing
    over = _m([C_INF + 2.0])
    res_over = compose_depth(over, _m([0.1]), side_probability(over, _m([0.1]), LT, FX, "behind"), LT, FX, 0.25)
    assert math.isnan(float(res_over.depth[0, 0, 0, 0]))
    # the threshold: everything finite is published at a huge max_relative_error
    loose = compose_depth(c, sig, side_probability(c, sig, LT, FX, "front"), LT, FX, 1e9)
    assert bool(torch.isfinite(loose.depth).all())
    assert bool((res.uncertainty >= 0).all())


def test_a_wrong_far_side_costs_its_full_relative_error():
    """The side term is the relative gap over the near depth: a near depth taken where the truth
    is far is off by at most 100 % (capped); a far depth taken where the truth is near is off by
    d_far / d_near - 1, which the stated error carries in full."""
    c, sig = _m([3.0, 3.0]), _m([1e-6, 1e-6])
    near, far = depth_candidates(3.0, LENS, 1000.0)
    r = far / near
    p = _m([0.3, 0.999])  # near taken (p below r / (1 + r)); far taken
    res = compose_depth(c, sig, p, LT, FX, 1e9)
    rel = res.relative_error[0, 0, 0]
    assert float(res.depth_all[0, 0, 0, 0]) == pytest.approx(near, rel=1e-4)
    assert float(res.depth_all[0, 0, 0, 1]) == pytest.approx(far, rel=1e-4)
    assert float(rel[0]) == pytest.approx(math.sqrt(0.3) * min(r - 1, 1.0), rel=1e-3)
    assert float(rel[1]) == pytest.approx(math.sqrt(0.001) * (r - 1), rel=1e-3)
    # a far depth near infinity (31 m against 1.03 m) is not published at p_wrong = 0.001
    big = compose_depth(_m([12.0]), _m([1e-6]), _m([0.999]), LT, FX, 0.25)
    assert math.isnan(float(big.depth[0, 0, 0, 0]))


def test_the_side_not_taken_counts_even_when_it_is_the_likelier_one():
    """Where the CoC is read at or above c_inf there is no far depth, so the near one is taken even
    when the learned side says "behind" with 0.97: the chance that the depth is wrong is 0.97, not
    0.03, and the pixel is not published."""
    c, sig = _m([C_INF + 0.5, 3.0]), _m([0.05, 0.05])
    res = compose_depth(c, sig, _m([0.97, 0.03]), LT, FX, 0.25)
    assert float(res.depth_all[0, 0, 0, 0]) < LENS.focus_distance_m  # the near depth, forced
    assert math.isnan(float(res.depth[0, 0, 0, 0])) and float(res.relative_error[0, 0, 0, 0]) > 0.9
    assert math.isfinite(float(res.depth[0, 0, 0, 1]))  # near taken and likely: published
