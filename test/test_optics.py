"""Optics against hand-computed numbers (f = 50 mm, N = 2, d_f = 2 m, fx = 1000 px)."""

import math

import numpy as np
import pytest
import torch

from depth_defocus_ros.optics import (
    Lens,
    LensError,
    coc_at_infinity_px,
    coc_px,
    depth_candidates,
    depth_from_signed_defocus,
    k_factor,
    resize_coc,
    resize_fx,
    signed_defocus_px,
)

LENS = Lens(0.05, 2.0, 2.0)  # A = 25 mm, d_f - f = 1.95 m
FX = 1000.0


def test_coc_behind_and_in_front():
    # behind: c = 0.025 * 1000 * (4 - 2) / (4 * 1.95) = 6.41026 px
    assert coc_px(4.0, LENS, FX) == pytest.approx(50.0 / 7.8, rel=1e-9)
    assert signed_defocus_px(4.0, LENS, FX) == pytest.approx(6.410256, rel=1e-6)
    # in front: c = 0.025 * 1000 * 1 / (1 * 1.95) = 12.8205 px, negative sign
    assert signed_defocus_px(1.0, LENS, FX) == pytest.approx(-12.820513, rel=1e-6)
    assert coc_px(2.0, LENS, FX) == 0.0


def test_inverse_and_far_limit():
    assert k_factor(LENS, FX) == pytest.approx(0.078)
    assert depth_from_signed_defocus(6.410256410256, LENS, FX) == pytest.approx(4.0, rel=1e-9)
    assert depth_from_signed_defocus(-12.8205128205, LENS, FX) == pytest.approx(1.0, rel=1e-9)
    # CoC at infinity 25 / 1.95 = 12.8205 px; k * s >= 1 is beyond the far limit
    assert coc_at_infinity_px(LENS, FX) == pytest.approx(12.820513, rel=1e-6)
    assert math.isinf(depth_from_signed_defocus(13.0, LENS, FX))
    assert depth_from_signed_defocus(13.0, LENS, FX, max_depth_m=50.0) == 50.0
    near, far = depth_candidates(6.410256410256, LENS, FX)
    assert far == pytest.approx(4.0) and near == pytest.approx(2 / (1 + 0.5))


def test_round_trip_numpy_and_torch():
    d = np.geomspace(0.3, 80.0, 50)
    s = signed_defocus_px(d, LENS, FX)
    np.testing.assert_allclose(depth_from_signed_defocus(s, LENS, FX), d, rtol=1e-9)
    dt = torch.tensor(d, dtype=torch.float64)
    back = depth_from_signed_defocus(signed_defocus_px(dt, LENS, FX), LENS, FX)
    torch.testing.assert_close(back, dt)


def test_resizing_scales_fx_and_coc_alike():
    c = coc_px(4.0, LENS, FX)
    # halving the image halves fx, and the CoC computed with the new fx is the halved CoC
    assert coc_px(4.0, LENS, resize_fx(FX, 0.5)) == pytest.approx(resize_coc(c, 0.5))
    assert resize_coc(c, 0.5) == pytest.approx(3.205128, rel=1e-6)


@pytest.mark.parametrize(
    "args, word",
    [
        ((0.05, float("nan"), 2.0), "f-number"),
        ((-0.05, 2.0, 2.0), "focal length"),
        ((0.05, 2.0, 0.04), "greater than the focal length"),
        ((0.05, 2.0, 0.05), "greater than the focal length"),
        ((0.05, 0.0, 2.0), "f-number"),
    ],
)
def test_invalid_lens_rejected(args, word):
    with pytest.raises(LensError, match=word):
        Lens(*args)


def test_lens_from_mapping():
    assert Lens.from_mapping({"focal_length_mm": 50, "f_number": 2, "focus_distance_m": 2}) == LENS
    with pytest.raises(LensError, match="f_number"):
        Lens.from_mapping({"focal_length_m": 0.05, "focus_distance_m": 2})
