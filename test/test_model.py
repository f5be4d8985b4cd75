"""Network: shapes; an untrained network is the training-free estimate; the defocus path never
sees the lens, the depth decoder does."""

import pytest
import torch

from depth_defocus_ros.model.network import DepthDefocusNet, ModelConfig
from depth_defocus_ros.reading.reblur import estimate_defocus

SMALL = dict(channels=[8, 8, 16, 16, 16], decoder_channels=[16, 8, 8, 8])


def _inputs(b=2, h=64, w=96):
    torch.manual_seed(0)
    return torch.rand(b, 3, h, w), torch.tensor([[0.05, 2.0, 2.0]] * b), torch.full((b,), 300.0)


def test_outputs_and_shapes():
    net = DepthDefocusNet(ModelConfig(**SMALL)).eval()
    with torch.no_grad():
        out = net(*_inputs())
    for k in ("coc", "coc_physics", "confidence", "coc_sigma", "side_logit", "log_ratio"):
        assert out[k].shape == (2, 1, 64, 96), k
    assert bool((out["coc"] >= 0).all()) and bool((out["coc_sigma"] > 0).all())


def test_untrained_network_is_the_training_free_estimate():
    """The correction's last layer starts at zero: training starts from physics."""
    net = DepthDefocusNet(ModelConfig(**SMALL)).eval()
    x, lens, fx = _inputs()
    with torch.no_grad():
        out = net(x, lens, fx)
    phys = estimate_defocus(x)
    torch.testing.assert_close(out["coc"], phys.coc)
    torch.testing.assert_close(out["coc_sigma"], phys.sigma)


@pytest.mark.parametrize("seed", [0, 1])
def test_defocus_path_ignores_the_lens_and_the_side_reads_it(seed):
    torch.manual_seed(seed)
    net = DepthDefocusNet(ModelConfig(**SMALL)).eval()
    for p in net.parameters():  # zero-initialised layers (correction, FiLM) perturbed: a trained-like net
        if p.dim() >= 2:
            torch.nn.init.normal_(p, std=0.1)
    x, lens, fx = _inputs(1)
    other = torch.tensor([[0.085, 1.4, 0.8]])
    with torch.no_grad():
        a, b = net(x, lens, fx), net(x, other, fx * 2)
    torch.testing.assert_close(a["coc"], b["coc"])  # CoC in px is a property of the image
    assert not torch.allclose(a["coc"], a["coc_physics"])  # the correction is active
    assert not torch.allclose(a["side_logit"], b["side_logit"])  # the side depends on the lens
