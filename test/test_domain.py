"""Domain adaptation: gradient reversal, the classifier moves only the encoder, and training runs with it."""

import json

import pytest
import torch
from cli_args import TINY_TRAIN

from depth_defocus_ros.bags.convert import ConvertOptions, convert_bags
from depth_defocus_ros.bags.synth import write_synthetic_bag
from depth_defocus_ros.cli import main
from depth_defocus_ros.learn.domain import (
    DomainAdaptNet,
    domain_loss,
    encoder_parameters,
    grad_reverse,
    grl_lambda,
    match_batch,
)
from depth_defocus_ros.model.checkpoint import load_checkpoint
from depth_defocus_ros.model.network import DepthDefocusNet, ModelConfig

TINY = ModelConfig(channels=[8, 8, 16, 16, 16], decoder_channels=[16, 8, 8, 8])


def test_gradient_reversal_and_schedule():
    x = torch.randn(3, 4, requires_grad=True)
    (grad_reverse(x, 0.25) * torch.arange(4.0)).sum().backward()
    assert torch.equal(x.grad, -0.25 * torch.arange(4.0).expand(3, 4))
    assert grl_lambda(0, 100) == 0.0 and 0.99 < grl_lambda(100, 100) <= 1.0
    assert grl_lambda(10, 100) < grl_lambda(50, 100)


def _inputs(b=4, h=64, w=64):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(b, 3, h, w, generator=g), torch.tensor([[0.035, 2.0, 1.0]] * b), torch.full((b,), 60.0))


def test_domain_loss_trains_the_encoder_against_the_classifier_and_leaves_the_decoders():
    torch.manual_seed(0)
    net = DepthDefocusNet(TINY)
    da = DomainAdaptNet(net, hidden=16)
    x, lens, fx = _inputs()
    is_target = torch.tensor([False, False, True, True])
    grads = {}
    for lam in (1.0, -1.0):  # -1: plain (not reversed) gradient, for comparison
        da.zero_grad(set_to_none=True)
        pred, logits = da(x, lens, fx, lam)
        assert logits.shape == (4, 1, 2, 2) and pred["coc"].shape == (4, 1, 64, 64)
        loss, acc = domain_loss(logits, is_target)
        assert 0.0 <= acc <= 1.0 and torch.isfinite(loss)
        loss.backward()
        grads[lam] = [p.grad.clone() for p in encoder_parameters(net) if p.grad is not None]
        # the decoders get no gradient from the domain loss; the classifier and the encoder do
        for dec in (net.depth_dec, net.defocus_dec):
            assert all(p.grad is None or not p.grad.any() for p in dec.parameters())
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in da.disc.parameters())
    assert grads[1.0] and any(g.abs().sum() > 0 for g in grads[1.0])
    for a, b in zip(grads[1.0], grads[-1.0]):  # reversed: the encoder climbs the classifier's loss
        assert torch.allclose(a, -b, atol=1e-6)
    # one optimiser step on the domain loss changes the encoder, not the decoders
    before = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.SGD(da.parameters(), lr=0.1)
    da.zero_grad(set_to_none=True)
    domain_loss(da(x, lens, fx, 1.0)[1], is_target)[0].backward()
    opt.step()
    after = net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("stages.") for k in changed)
    assert not any(k.startswith(("depth_dec.", "defocus_dec.")) for k in changed)
    # the hook captures nothing outside the wrapper's forward; the checkpointed model has no classifier keys
    net(x, lens, fx)
    assert da._feat is None and not any(k.startswith("disc") for k in net.state_dict())


def test_match_batch_crops_or_enlarges_with_fx():
    b = {"image": torch.rand(2, 3, 48, 64), "lens": torch.ones(2, 3), "fx": torch.tensor([60.0, 30.0])}
    m = match_batch(b, (32, 32), torch.Generator().manual_seed(0))
    assert m["image"].shape == (2, 3, 32, 32) and torch.equal(m["fx"], b["fx"])
    m = match_batch(b, (96, 96), torch.Generator().manual_seed(0))
    assert m["image"].shape == (2, 3, 96, 96) and torch.allclose(m["fx"], b["fx"] * 2)


@pytest.fixture(scope="module")
def unlabeled(tmp_path_factory):
    """Unlabelled 'real' frames: a bag without depth converted with --mode unlabeled."""
    tmp = tmp_path_factory.mktemp("unlabeled")
    write_synthetic_bag(tmp / "bag", n=6, seed=5, with_depth=False, rgb_encoding="jpeg")
    status, _ = convert_bags(
        [tmp / "bag"],
        ConvertOptions(
            out=str(tmp / "ds"),
            mode="unlabeled",
            workers=0,
            progress=False,
            split_by="none",
            focal_length_mm=35,
            f_number=2.0,
            focus_distance_m=1.0,
        ),
    )
    assert status == 0
    return tmp / "ds"


def test_train_with_domain_adaptation_runs_and_resumes(tmp_path, unlabeled, capsys):
    args = [
        "train",
        "--out",
        str(tmp_path / "run"),
        *TINY_TRAIN,
        "--domain-data",
        str(unlabeled),
        "--domain-weight",
        "0.5",
    ]
    assert main(args + ["--steps", "2", "--val-every", "2"]) == 0  # in this process: no second torch start-up
    recs = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in recs if x["kind"] == "train"]
    assert len(train) == 2 and all(0 <= x["domain_acc"] <= 1 and x["domain"] == x["domain"] for x in train)
    assert all(abs(x["loss"] - x["task"] - 0.5 * x["domain"]) < 1e-4 for x in train)
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    assert "domain_classifier" in ck and not any(k.startswith("disc") for k in ck["state_dict"])
    assert "domain_classifier" not in load_checkpoint(tmp_path / "run" / "best.pt")
    capsys.readouterr()
    assert main(args + ["--steps", "3", "--val-every", "3", "--resume"]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 3
