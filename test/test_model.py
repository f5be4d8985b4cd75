"""Network: shapes, the thin-lens composition, MC dropout, the ablation heads."""

import math

import pytest
import torch

from depth_defocus_ros.model import DepthDefocusNet, ModelConfig, coc_at_infinity, compose_depth
from depth_defocus_ros.optics import Lens, depth_candidates

SMALL = dict(channels=[8, 8, 16, 16, 16], decoder_channels=[16, 16, 8, 8, 8])


def _inputs(b=2, h=64, w=96):
    torch.manual_seed(0)
    return torch.randn(b, 3, h, w), torch.tensor([[0.05, 2.0, 2.0]] * b), torch.full((b,), 300.0)


@pytest.mark.parametrize("heads", ["both", "depth", "defocus"])
def test_outputs_and_shapes(heads):
    net = DepthDefocusNet(ModelConfig(heads=heads, **SMALL)).eval()
    out = net(*_inputs())
    for k in ("coc", "side_logit" if heads != "depth" else "coc", "depth", "log_ratio"):
        assert out[k].shape == (2, 1, 64, 96)
    assert bool((out["coc"] >= 0).all()) and bool((out["depth"] > 0).all())


def test_depth_is_one_of_the_two_thin_lens_solutions():
    lens_t = torch.tensor([[0.05, 2.0, 2.0]])
    fx = torch.tensor([1000.0])
    coc = torch.full((1, 1, 2, 2), 6.410256410256)
    logit = torch.tensor([[[[3.0, -3.0], [0.5, -0.1]]]])
    d = compose_depth(coc, logit, lens_t, fx)
    near, far = depth_candidates(6.410256410256, Lens(0.05, 2.0, 2.0), 1000.0)
    torch.testing.assert_close(d[0, 0], torch.tensor([[far, near], [far, near]], dtype=torch.float32))
    # never a blend near the focus plane
    assert not bool(((d - 2.0).abs() < 0.3).any())
    assert float(coc_at_infinity(lens_t, fx)) == pytest.approx(12.820513, rel=1e-5)
    # beyond the far limit: max depth
    assert float(compose_depth(torch.full((1, 1, 1, 1), 20.0), torch.ones(1, 1, 1, 1), lens_t, fx, 80.0)) == 80.0


def test_mc_dropout_only_when_asked():
    net = DepthDefocusNet(ModelConfig(dropout=0.3, **SMALL)).eval()
    x, lens, fx = _inputs(1)
    with torch.no_grad():
        a, b = net(x, lens, fx)["coc"], net(x, lens, fx)["coc"]
        assert torch.equal(a, b)
        net.set_mc_dropout(True)
        c, d = net(x, lens, fx)["coc"], net(x, lens, fx)["coc"]
    assert not torch.equal(c, d)


def test_lens_conditioning_changes_the_output():
    net = DepthDefocusNet(ModelConfig(**SMALL)).eval()
    for p in net.parameters():  # FiLM starts at zero: perturb so that the test is meaningful
        torch.nn.init.normal_(p, std=0.05) if p.dim() == 2 else None
    x, lens, fx = _inputs(1)
    with torch.no_grad():
        a = net(x, lens, fx)["coc"]
        b = net(x, torch.tensor([[0.05, 8.0, 2.0]]), fx)["coc"]
    assert not torch.allclose(a, b)
    assert math.isfinite(float(a.sum()))
