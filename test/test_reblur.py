"""The training-free defocus estimate reads blur in pixels, with real numbers from the optics."""

import numpy as np
import pytest
import torch
from skimage.data import astronaut

from depth_defocus_ros.reading.propagate import propagate
from depth_defocus_ros.reading.reblur import estimate_defocus
from depth_defocus_ros.synth.render import linear_to_srgb, render_defocus, sensor_degrade, srgb_to_linear


def _blurred(lin: torch.Tensor, coc: float, noise: bool = False) -> torch.Tensor:
    """(1, 3, H, W) sRGB camera image of a linear image blurred by a disc of diameter ``coc``."""
    out = render_defocus(lin, torch.full((1, 1, *lin.shape[-2:]), float(coc)))[0]
    gen = torch.Generator().manual_seed(0)
    return sensor_degrade(out, gen, 3e-3 if noise else 0.0, 3e-5 if noise else 0.0)[None]


@pytest.mark.parametrize("coc", [2.0, 5.0, 9.0])
def test_step_edge_blur_is_read_in_pixels(coc):
    x = torch.arange(96, dtype=torch.float32) + 0.5
    step = 0.15 + 0.6 * (x - 48.3 + 0.5).clamp(0, 1)  # an anti-aliased vertical step in linear light
    lin = step.view(1, 1, 1, -1).expand(1, 3, 64, 96).contiguous()
    est = estimate_defocus(_blurred(lin, coc))
    at_edge = est.coc[0, 0, 16:48, 44:52][est.edges[0, 0, 16:48, 44:52]]
    assert at_edge.numel() > 10
    assert float(at_edge.median()) == pytest.approx(coc, abs=0.5, rel=0.1)
    # propagated over the flat sides too
    assert float(est.coc[0, 0, 32, 10]) == pytest.approx(coc, abs=0.75)


@pytest.mark.parametrize("coc, noise", [(3.0, False), (6.0, False), (6.0, True), (10.0, False)])
def test_blur_of_a_photograph_is_read(coc, noise):
    """A real photograph (not a training texture) blurred by one disc: the median CoC is right
    within 30 % (textures read a little sharp: neighbouring edges interfere at large scales)."""
    img = torch.from_numpy(astronaut()[:256, 128:384].copy()).permute(2, 0, 1)[None].float() / 255.0
    est = estimate_defocus(_blurred(srgb_to_linear(img), coc, noise))
    inner = est.coc[0, 0, 24:-24, 24:-24]
    assert float(inner.median()) == pytest.approx(coc, rel=0.3)
    assert bool((est.confidence >= 0).all() and (est.confidence <= 1).all())


def test_sharp_image_reads_sharp():
    img = torch.from_numpy(astronaut()[:256, 128:384].copy()).permute(2, 0, 1)[None].float() / 255.0
    est = estimate_defocus(linear_to_srgb(srgb_to_linear(img)))
    assert float(est.coc.median()) < 1.5


def test_propagation_stops_at_image_edges():
    """Two regions split by a strong edge in the guide: measurements on each side fill their own
    side only."""
    h, w = 48, 96
    guide = torch.zeros(1, 3, h, w)
    guide[..., w // 2 :] = 1.0
    values, weight = torch.zeros(1, 1, h, w), torch.zeros(1, 1, h, w)
    values[..., 10, 10], weight[..., 10, 10] = 2.0, 1.0
    values[..., 40, 80], weight[..., 40, 80] = 8.0, 1.0
    dense, support = propagate(values, weight, guide, sigma_s=200.0, sigma_r=0.2)
    left, right = dense[0, 0, :, : w // 2 - 2], dense[0, 0, :, w // 2 + 2 :]
    assert float((left - 2.0).abs().max()) < 0.2 and float((right - 8.0).abs().max()) < 0.2
    assert bool((support >= 0).all())
    assert np.isfinite(dense.numpy()).all()
