"""The renderer: disc PSF, blur widths predicted by the optics, energy, occlusion."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from depth_defocus_ros.optics import Lens, coc_px, signed_defocus_px
from depth_defocus_ros.synth.render import (
    disc_kernel,
    linear_to_srgb,
    render_defocus,
    render_defocus_gather,
    srgb_to_linear,
)


def edge_width(profile: np.ndarray) -> float:
    """Width (px) of a blurred step from its line spread function: a disc of diameter c has an
    LSF with standard deviation c / 4."""
    lsf = np.abs(np.diff(profile))
    x = np.arange(len(lsf))
    m = (lsf * x).sum() / lsf.sum()
    return 4.0 * np.sqrt((lsf * (x - m) ** 2).sum() / lsf.sum())


def test_srgb_round_trip():
    x = torch.linspace(0, 1, 101)
    torch.testing.assert_close(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-5, rtol=0)
    assert float(srgb_to_linear(torch.tensor(0.5))) == pytest.approx(0.214, abs=1e-3)


def test_constant_depth_equals_disc_convolution():
    torch.manual_seed(0)
    img = torch.rand(1, 3, 64, 80)
    c = 7.3
    out = render_defocus(img, torch.full((1, 1, 64, 80), c))
    k = disc_kernel(c)
    ref = F.conv2d(img.transpose(0, 1), k[None, None]).transpose(0, 1)
    p = k.shape[-1] // 2
    torch.testing.assert_close(out[..., p:-p, p:-p], ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("c", [3.0, 6.0, 11.5])
def test_single_plane_edge_width_matches_coc(c):
    img = torch.zeros(1, 1, 48, 96)
    img[..., 48:] = 1.0
    out = render_defocus(img, torch.full((1, 1, 48, 96), c))
    assert edge_width(out[0, 0, 24].numpy()) == pytest.approx(c, abs=0.5)


def _two_planes(d_left, d_right, lens, fx, w=160, h=40):
    """Left half at d_left (white, with a texture edge), right half at d_right (dark, edge too)."""
    depth = torch.full((1, 1, h, w), d_right)
    depth[..., : w // 2] = d_left
    img = torch.full((1, 1, h, w), 0.1)
    img[..., : w // 2] = 0.9
    img[..., : w // 4] = 0.5  # texture step inside the left plane
    img[..., 3 * w // 4 :] = 0.3  # texture step inside the right plane
    return img, depth, signed_defocus_px(depth, lens, fx)


def test_step_edges_between_two_planes_have_the_optics_blur():
    lens, fx = Lens(0.05, 1.8, 2.0), 800.0
    d_near, d_far = 1.5, 4.0
    c_near, c_far = coc_px(d_near, lens, fx), coc_px(d_far, lens, fx)  # 5.06 px, 5.70 px
    img, depth, s = _two_planes(d_near, d_far, lens, fx)
    out = render_defocus(img, s)[0, 0, 20].numpy()
    w = out.shape[0]
    # texture edges inside each plane
    assert edge_width(out[w // 4 - 15 : w // 4 + 15]) == pytest.approx(c_near, abs=0.5)
    assert edge_width(out[3 * w // 4 - 15 : 3 * w // 4 + 15]) == pytest.approx(c_far, abs=0.5)


def test_blurred_foreground_spreads_over_sharp_background():
    lens, fx = Lens(0.05, 1.4, 3.0), 1000.0
    d_fg, d_bg = 1.0, 3.0  # foreground strongly blurred (17.5 px), background in focus
    img, depth, s = _two_planes(d_fg, d_bg, lens, fx)
    img = torch.where(depth < 2, 0.9, 0.1)
    out = render_defocus(img, s)[0, 0, 20].numpy()
    w = out.shape[0]
    c_fg = coc_px(d_fg, lens, fx)  # 24.2 px
    # half a radius into the sharp background, a disc covers (acos(1/2) - sqrt(3)/4) / pi = 19.6 %
    # of foreground: 0.1 + 0.8 * 0.196 = 0.257
    r = c_fg / 2
    k = int(round(r / 2 - 0.5))  # pixel whose centre lies r/2 from the boundary
    x = (k + 0.5) / r
    frac = (np.arccos(x) - x * np.sqrt(1 - x * x)) / np.pi
    assert out[w // 2 + k] == pytest.approx(0.1 + 0.8 * frac, abs=0.03)
    # the spread follows the disc's edge profile out to the foreground's radius, and stops there
    for k in range(0, int(r) - 1, 3):
        x = (k + 0.5) / r
        frac = (np.arccos(x) - x * np.sqrt(1 - x * x)) / np.pi
        assert out[w // 2 + k] == pytest.approx(0.1 + 0.8 * frac, abs=0.03), k
    np.testing.assert_allclose(out[w // 2 + int(r) + 2 :], 0.1, atol=1e-3)


def test_sharp_foreground_keeps_its_edge_over_blurred_background():
    lens, fx = Lens(0.05, 1.4, 1.0), 1000.0
    d_fg, d_bg = 1.0, 5.0  # foreground in focus, background blurred (29 px)
    img, depth, s = _two_planes(d_fg, d_bg, lens, fx)
    img = torch.where(depth < 2, 0.9, 0.1)
    out = render_defocus(img, s)[0, 0, 20].numpy()
    w = out.shape[0]
    # no background bleeds into the sharp foreground: up to its edge it keeps its value
    np.testing.assert_allclose(out[: w // 2], 0.9, atol=1e-4)
    # the blurred background next to the edge holds only background light ...
    np.testing.assert_allclose(out[w // 2 : w // 2 + 10], 0.1, atol=1e-3)
    # ... while a naive per-pixel gather drags the sharp foreground into it (a wrong cue)
    gathered = render_defocus_gather(img, s)[0, 0, 20].numpy()
    assert gathered[w // 2 + 2] > 0.3


def test_mean_intensity_kept_within_one_percent():
    torch.manual_seed(1)
    img = torch.rand(2, 3, 96, 128)
    yy = torch.linspace(-1, 1, 96)[:, None]
    depth = (1.5 + 3 * (yy + 1)).expand(96, 128)[None, None].repeat(2, 1, 1, 1).clone()
    depth[:, :, 30:60, 40:90] = 0.8  # an occluder
    s = signed_defocus_px(depth, Lens(0.035, 1.8, 2.0), 600.0)
    out = render_defocus(img, s)
    assert float(out.mean()) == pytest.approx(float(img.mean()), rel=0.01)
