"""The learned side of the focus plane (stage 3 of the reader): what a wrong side costs, how stated
probabilities are judged, the temperature that calibrates them, training on scenes the test
renders itself, and the gate that keeps an unchecked head out of the estimator."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from depth_defocus_ros.estimate.estimator import Estimator
from depth_defocus_ros.evaluation.sidecheck import MAX_ECE, measure_side, side_verdict
from depth_defocus_ros.learn.train_side import best_temperature, cell_targets, fit_temperature, side_reliability
from depth_defocus_ros.model.checkpoint import build_reader, load_checkpoint, save_checkpoint
from depth_defocus_ros.optics import Lens, coc_px
from depth_defocus_ros.reading.reader import BlurReader, ReaderConfig, read_defocus, read_with_side, to_input
from depth_defocus_ros.reading.refiner import N_FEATURES
from depth_defocus_ros.reading.side import SIDE_FEATURES, side_cost, side_inputs

LENS = torch.tensor([[0.05, 2.0, 2.0]])  # f 50 mm, f/2, focused at 2 m
FX = torch.tensor([1000.0])


def test_side_cost_is_the_relative_gap_to_the_other_sides_depth():
    depth = torch.tensor([2.0, 3.0, 1.5, 40.0]).view(1, 1, 1, 4)
    cost = side_cost(depth, torch.ones_like(depth, dtype=torch.bool), LENS, FX)[0, 0, 0]
    c_inf = 0.05 / 2.0 * 1000.0 / (2.0 - 0.05)
    lens = Lens(0.05, 2.0, 2.0)
    c3, c15 = coc_px(3.0, lens, 1000.0), coc_px(1.5, lens, 1000.0)
    near3 = 2.0 / (1 + c3 / c_inf)  # 3 m behind: the front depth of its CoC
    far15 = 2.0 / (1 - c15 / c_inf)  # 1.5 m in front: the behind depth of its CoC
    assert cost[0] == pytest.approx(0.0, abs=1e-6)  # at the focus plane both sides agree
    assert cost[1] == pytest.approx((3.0 - near3) / 3.0, rel=1e-4)
    assert cost[2] == pytest.approx(min((far15 - 1.5) / 1.5, 1.0), rel=1e-4)
    near40 = 2.0 / (1 + coc_px(40.0, lens, 1000.0) / c_inf)
    assert 0.0 < cost[1] < 1.0 and cost[3] == pytest.approx((40.0 - near40) / 40.0, rel=1e-4)
    invalid = side_cost(depth, torch.zeros_like(depth, dtype=torch.bool), LENS, FX)
    assert float(invalid.abs().max()) == 0.0


def test_cell_targets_weigh_the_share_behind_by_the_cost():
    depth = torch.full((1, 1, 8, 8), 2.0)
    depth[..., :, 4:] = 4.0  # right half behind the focus plane, left half on it
    depth[..., :4, :4] = 1.0  # top-left quarter in front
    valid = torch.ones_like(depth, dtype=torch.bool)
    sd = torch.sign(depth - 2.0)
    batch = {"depth": depth, "valid": valid, "lens": LENS, "fx": FX, "signed_defocus": sd}
    share, weight = cell_targets(batch, 4, (2, 2))
    assert share[0, 0, 0, 1] == 1 and share[0, 0, 1, 1] == 1 and share[0, 0, 0, 0] == 0
    assert float(weight[0, 0, 1, 0]) == pytest.approx(0.0, abs=1e-6)  # all at the focus plane: no weight
    assert float(weight[0, 0, 0, 1]) > 0.1 and float(weight[0, 0, 0, 0]) > 0.1


def test_reliability_finds_calibrated_and_overconfident_probabilities():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(200_000, generator=g)
    truth = torch.rand(200_000, generator=g) < p  # behind with exactly the stated probability
    good = side_reliability(p, truth, torch.ones_like(p))
    assert good["ece"] < 0.01
    assert good["accuracy"] == pytest.approx(0.75, abs=0.01)  # E[max(p, 1 - p)] for uniform p
    # stated 0.95 for the chosen side, right 70 % of the time
    right = torch.rand(200_000, generator=g) < 0.7
    over = side_reliability(torch.full_like(p, 0.95), right, torch.ones_like(p))
    assert over["ece"] == pytest.approx(0.25, abs=0.01) and over["bins"][0][3] == pytest.approx(0.95)
    assert over["ece"] > MAX_ECE > good["ece"]


def test_temperature_undoes_overconfidence():
    """Logits twice the true ones (too sure of themselves): the fitted temperature is about 2."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(4, 1, 8, 12, generator=g) * 2.0  # true logits on the grid (grid 4: 32 x 48 px)
    coc = torch.full((4, 1, 32, 48), 2.0)  # far below c_inf (12.8 px): the lens rule is silent
    prior = to_input(torch.sigmoid(z), 4, 32, 48)
    behind = torch.rand(coc.shape, generator=g) < prior
    batch = {"logit": 2.0 * z, "coc": coc, "sigma": torch.full_like(coc, 0.2), "lens": LENS.repeat(4, 1)}
    batch.update(fx=FX.repeat(4), behind=behind, mask=torch.ones_like(behind))
    assert fit_temperature([batch], 4) == pytest.approx(2.0, rel=0.15)
    assert best_temperature(lambda t: (t - 3.0) ** 2) == pytest.approx(3.0, rel=0.06)


def test_side_inputs_carry_the_lens_rule():
    feats = torch.zeros(1, N_FEATURES, 4, 4)
    c_inf = 0.05 / 2.0 * 1000.0 / (2.0 - 0.05)
    coc = torch.full((1, 1, 4, 4), 3.0 * c_inf)  # three times the CoC at infinity: front for sure
    x = side_inputs(feats, coc, torch.ones_like(coc), torch.zeros(1, 3, 4, 4), LENS, FX)
    assert x.shape[1] == SIDE_FEATURES
    ratio, p_front = x[:, N_FEATURES + 2], x[:, N_FEATURES + 4]
    assert float(ratio.mean()) == pytest.approx(3.0, rel=1e-4) and float(p_front.min()) > 0.999


def _tiny_reader_ckpt(path):
    reader = BlurReader(ReaderConfig(channels=8, dilations=[1, 2]))
    save_checkpoint(
        path,
        {
            "kind": "reader",
            "reader_config": reader.config.to_dict(),
            "reader_state": reader.state_dict(),
            "process_long_side": 640,
        },
    )


@pytest.fixture(scope="module")
def side_run(tmp_path_factory):
    from depth_defocus_ros.synth.scenes import SceneConfig, render_shards

    tmp = tmp_path_factory.mktemp("side")
    scenes = render_shards(tmp / "scenes", 6, seed=3, shard_size=2, config=SceneConfig(height=64, width=96))
    _tiny_reader_ckpt(tmp / "reader.pt")
    cmd = [sys.executable, "-m", "depth_defocus_ros", "train-reader", "--out", str(tmp / "run")]
    cmd += ["--init", str(tmp / "reader.pt"), "--side-data", str(scenes), "--side-channels", "6"]
    cmd += ["--steps", "4", "--val-every", "2", "--lr", "1e-3", "--device", "cpu", "--side-calibration-scenes", "2"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp, scenes, r


def test_train_side_writes_one_reader_checkpoint_with_a_fitted_temperature(side_run):
    tmp, _, r = side_run
    ck = load_checkpoint(tmp / "run" / "best.pt")
    init = load_checkpoint(tmp / "reader.pt")
    assert ck["kind"] == "reader" and ck["reader_config"]["side_channels"] == 6 and "side_check" not in ck
    for k, v in init["reader_state"].items():  # level CNN (and refiner) as they were
        assert torch.equal(ck["reader_state"][k], v), k
    t = float(ck["reader_state"]["side.temperature"])
    assert 0.25 <= t <= 8.0 and ck["side_validation"]["temperature"] == pytest.approx(t)
    assert 0.0 <= ck["side_validation"]["accuracy"] <= 1.0 and math.isfinite(ck["side_validation"]["bce"])
    assert ck["side_validation"]["calibration_scenes"] == 2 and 0.0 <= ck["side_validation"]["calibration_ece"] <= 1
    assert "fitted on 2 fresh scenes" in r.stdout
    # a second run from this checkpoint continues from its head
    cmd = [sys.executable, "-m", "depth_defocus_ros", "train-reader", "--out", str(tmp / "run2")]
    cmd += ["--init", str(tmp / "run" / "best.pt"), "--side-data", str(tmp / "scenes"), "--side-channels", "6"]
    cmd += ["--steps", "1", "--val-every", "1", "--lr", "1e-9", "--device", "cpu", "--side-calibration-scenes", "2"]
    r2 = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r2.returncode == 0 and "continuing from" in r2.stdout, r2.stderr[-2000:]
    ck2 = load_checkpoint(tmp / "run2" / "best.pt")
    w = "side.enc0.0.weight"
    assert torch.allclose(ck2["reader_state"][w], ck["reader_state"][w], atol=1e-5)
    assert "side step 4: val cross-entropy" in r.stdout


def test_estimator_uses_the_side_head_only_after_a_passed_check(side_run):
    tmp, _, _ = side_run
    path = tmp / "run" / "best.pt"
    rgb = (np.random.default_rng(2).random((64, 96, 3)) * 255).astype(np.uint8)
    lens = {"focal_length_m": 0.05, "f_number": 2.0, "focus_distance_m": 2.0}
    unchecked = Estimator.load(path, device="cpu")
    assert unchecked.reader.side is not None and not unchecked.learned_side
    physics = unchecked.predict(rgb, lens, fx=100.0)
    forced = Estimator.load(path, device="cpu", learned_side=True)
    learned = forced.predict(rgb, lens, fx=100.0)
    # the head's probability (not 0.5) enters the side; the CoC is the same reading either way
    np.testing.assert_allclose(learned.defocus, physics.defocus, atol=1e-5)
    assert not np.allclose(learned.side_prob, physics.side_prob)
    ck = load_checkpoint(path)
    ck.pop("format", None), ck.pop("format_version", None)
    save_checkpoint(tmp / "checked.pt", {**ck, "side_check": {"passed": True}})
    assert Estimator.load(tmp / "checked.pt", device="cpu").learned_side
    assert not Estimator.load(tmp / "checked.pt", device="cpu", learned_side=False).learned_side


def test_read_with_side_reads_the_same_blur_and_a_probability(side_run):
    tmp, _, _ = side_run
    reader = build_reader(load_checkpoint(tmp / "run" / "best.pt")).eval()
    x = torch.rand(2, 3, 64, 96)
    lens = LENS.repeat(2, 1)
    est, p = read_with_side(reader, x, lens, FX.repeat(2))
    ref = read_defocus(reader, x)
    assert torch.allclose(est.coc, ref.coc) and torch.allclose(est.sigma, ref.sigma)
    assert p.shape == (2, 1, 64, 96) and float(p.min()) >= 0.0 and float(p.max()) <= 1.0


def test_side_check_measures_and_judges(side_run):
    tmp, scenes, _ = side_run
    reader = build_reader(load_checkpoint(tmp / "run" / "best.pt")).eval()
    r = measure_side(reader, scenes)
    assert r["pixels"] > 0 and 0.0 <= r["ece"] <= 1.0 and 0.0 <= r["share_behind"] <= 1.0
    assert sum(b[2] for b in r["bins"]) == pytest.approx(1.0)
    for key in ("chosen_side_right", "physics_side_right", "more_probable_side_right"):
        assert 0.0 <= r[key] <= 1.0
    good = {"ece": 0.02, "chosen_side_right": 0.8, "physics_side_right": 0.6}
    assert side_verdict({"a": good, "b": good})[0]
    assert not side_verdict({"a": good, "b": {**good, "ece": 0.08}})[0]
    assert not side_verdict({"a": good, "b": {**good, "chosen_side_right": 0.6}})[0]
    with pytest.raises(ValueError, match="no side head"):
        measure_side(BlurReader(ReaderConfig(channels=8, dilations=[1, 2])), scenes)


def test_eval_cli_learned_side_choice_reaches_the_estimator():
    from depth_defocus_ros.cli import build_parser
    from depth_defocus_ros.estimate.estimator import learned_side_arg

    parse = build_parser().parse_args
    assert learned_side_arg(parse(["eval"])) is None  # default: the checkpoint's check decides
    assert learned_side_arg(parse(["eval", "--learned-side", "on"])) is True
    assert learned_side_arg(parse(["eval", "--real", "motorcycle", "--learned-side", "off"])) is False
