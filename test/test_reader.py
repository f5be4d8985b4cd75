"""The learned blur reader: patches with the CoC the optics gave them, the pyramid and its fusion,
checkpoints of kind "reader", training (resume, DDP) on patches the test renders itself."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from depth_defocus_ros.estimate.estimator import Estimator
from depth_defocus_ros.learn.patches import PatchConfig, TileMaker, load_patches, render_patch_shards
from depth_defocus_ros.learn.train_refiner import bin_weights
from depth_defocus_ros.model.checkpoint import CheckpointError, build_model, load_checkpoint, save_checkpoint
from depth_defocus_ros.reading.reader import (
    BlurReader,
    ReaderConfig,
    box_mean,
    fuse_levels,
    grid_features,
    laplace_nll,
    read_defocus,
    read_levels,
    spread,
)
from depth_defocus_ros.reading.reblur import luminance
from depth_defocus_ros.reading.refiner import MAX_LEVELS, N_FEATURES, Refiner
from depth_defocus_ros.synth.render import PSFShape, disc_kernel, render_defocus

SMALL = PatchConfig(tile=64, patch=32, crops=2, max_coc_px=8.0, leaves=(2, 6))


def test_patch_labels_are_the_coc_the_tile_was_rendered_with(monkeypatch):
    maker = TileMaker(SMALL, photos=[])
    monkeypatch.setattr(maker, "_coc_levels", lambda r, n: sorted([5.0, -3.0, 1.5][:n], reverse=True))
    for level_share, level in ((0.0, 0), (1.0, 1)):
        maker.cfg = PatchConfig(**{**SMALL.to_dict(), "level1_share": level_share, "ramp_share": 0.0, "layers": (3, 3)})
        seen = set()
        for seed in range(3, 8):  # a layer may be hidden behind the others in one tile
            y, coc, noise, lev = maker.tile(torch.Generator().manual_seed(seed))
            assert lev == level and y.shape == coc.shape == (SMALL.tile, SMALL.tile) and noise > 0
            values = set(np.round(coc.numpy().ravel(), 3))
            assert max(values) >= 5.0
            seen |= values
        # the layers' CoC (px at the reader's level; rendered at twice that before a 2x2 average)
        assert {5.0, 3.0, 1.5} <= seen


def test_shaped_psf_keeps_its_diameter_and_the_ideal_disc_is_unchanged():
    img = torch.zeros(1, 1, 64, 64)
    img[..., 32, 32] = 1.0
    s = torch.full((1, 1, 64, 64), 9.0)
    ideal = render_defocus(img, s)[0, 0]
    k = disc_kernel(9.0)
    r = k.shape[0] // 2
    np.testing.assert_allclose(ideal[32 - r : 33 + r, 32 - r : 33 + r].numpy(), k.numpy(), atol=1e-5)
    rim = render_defocus(img, s, psf=PSFShape(rim=0.8))[0, 0]
    assert abs(float(rim.sum()) - 1.0) < 1e-4 and (rim[32, 32:] > 1e-6).sum() == (ideal[32, 32:] > 1e-6).sum()
    assert rim[32, 36] > rim[32, 32]  # a brighter rim than centre


def test_patch_shards_are_resumable_and_refuse_another_config(tmp_path):
    out = render_patch_shards(tmp_path / "p", 2, tiles_per_shard=2, seed=4, config=SMALL)
    first = (out / "patches_00001.npz").read_bytes()
    (out / "patches_00001.npz").unlink()
    render_patch_shards(out, 2, tiles_per_shard=2, seed=4, config=SMALL)
    assert (out / "patches_00001.npz").read_bytes() == first  # the same seed, the same shard
    assert json.loads((out / "manifest.json").read_text())["complete"]
    p = load_patches(out)
    assert p["y"].shape[1:] == (SMALL.patch, SMALL.patch) and p["coc"].shape == p["y"].shape
    assert len(p["noise"]) == len(p["y"]) == len(p["level"])
    with pytest.raises(ValueError, match="another configuration"):
        render_patch_shards(out, 2, tiles_per_shard=3, seed=4, config=SMALL)


def test_pyramid_levels_fusion_and_full_resolution_outputs():
    reader = BlurReader(ReaderConfig()).eval()
    y = torch.rand(1, 1, 100, 130)
    levels = read_levels(reader, y)
    assert [tuple(c.shape[-2:]) for c, _ in levels] == [(50, 65), (25, 33), (13, 17)]
    ones = torch.ones(1, 1, 4, 4)

    def lv(c):
        return (torch.full((1, 1, 4, 4), c), ones)

    # the finest level whose reading is in range (<= 10 px at that level) wins
    coc, sigma = fuse_levels([lv(2.0), lv(8.0), lv(12.0)], (4, 4))
    assert torch.allclose(coc, torch.full_like(coc, 2.0), atol=0.05) and torch.allclose(sigma, ones, atol=0.1)
    coc, _ = fuse_levels([lv(30.0), lv(28.0), lv(24.0)], (4, 4))  # 30 and 14 px at their levels: too large
    assert torch.allclose(coc, torch.full_like(coc, 24.0), atol=0.5)  # a soft switch: 6 % of level 1 remains
    est = read_defocus(reader, torch.rand(2, 3, 61, 90))
    assert est.coc.shape == est.sigma.shape == est.confidence.shape == (2, 1, 61, 90)
    assert (est.sigma > 0).all() and (est.confidence >= 0).all() and (est.confidence <= 1).all()


def test_refiner_blends_only_the_readings_it_is_given():
    # six candidates: near, far and every level's own reading; a softmax picks among them, so the
    # output stays within the readings whatever the weights (it never invents a CoC)
    torch.manual_seed(0)
    ref = Refiner(8, candidates=2 + MAX_LEVELS).eval()
    feats = torch.randn(2, N_FEATURES, 6, 7)
    cands = torch.rand(2, 2 + MAX_LEVELS, 6, 7) * 20.0
    coc, sigma = ref(feats, cands)
    assert coc.shape == sigma.shape == (2, 1, 6, 7) and (sigma > 0).all()
    assert (coc >= cands.min(1, keepdim=True).values - 1e-4).all()
    assert (coc <= cands.max(1, keepdim=True).values + 1e-4).all()
    with torch.no_grad():  # logits that favour the third level's reading take it
        last = ref.head[-1]
        last.weight.zero_()
        last.bias.zero_()
        last.bias[2 + 2] = 30.0
    coc, _ = ref(feats, cands)
    assert torch.allclose(coc, cands[:, 4:5], atol=1e-3)
    with pytest.raises(ValueError, match="readings"):
        Refiner(8, candidates=3)
    # the reader hands it its level readings; a level the image is too small for is the fused one
    reader = BlurReader(ReaderConfig(refine_channels=8, refine_candidates=2 + MAX_LEVELS)).eval()
    img = torch.rand(1, 3, 96, 128)
    feats, cands, _ = grid_features(reader, img)
    assert feats.shape[1] == N_FEATURES and cands.shape == (1, 2 + MAX_LEVELS, 24, 32)
    levels = read_levels(reader, luminance(img))
    assert len(levels) == 3  # 128 x 96: no fourth level
    up = torch.nn.functional.interpolate(levels[1][0], size=(24, 32), mode="bilinear", align_corners=False)
    fused, _ = fuse_levels(levels, (24, 32))
    assert torch.allclose(cands[:, 3:4], up) and torch.allclose(cands[:, 5:6], fused, atol=1e-5)
    assert read_defocus(reader, img).coc.shape == (1, 1, 96, 128)


def _two_readings(c_left: float, c_right: float, rel_sigma: float, size: int = 32):
    """A reading of ``c_left`` px on the left half and ``c_right`` px on the right, both with the
    same sigma relative to CoC + 1 px, on a flat guide (no image edge between them)."""
    coc = torch.full((1, 1, size, size), c_left)
    coc[..., size // 2 :] = c_right
    return coc, rel_sigma * (coc + 1.0), torch.full((1, 3, size, size), 0.5)


def test_log_domain_spread_weighs_every_blur_size_alike():
    """Readings of 3 and 12 px with the same relative sigma (20 % of CoC + 1 px): spread in px, the
    neighbourhood leans to the 3 px reading (its sigma in px is 4/13 of the other's, its weight
    10.6x at power 1: a large blur is outweighed by small ones around it); spread as log CoC, both
    weigh alike and the neighbourhood's mean is their mean in log(CoC + 1 px)."""
    coc, sigma, guide = _two_readings(3.0, 12.0, 0.2)
    far = 1e4  # a reach beyond the image: every reading is in every pixel's neighbourhood
    px_mean = spread(coc, sigma, guide, far, 0.4, 1.0, "px")[3]
    log_mean = spread(coc, sigma, guide, far, 0.4, 1.0, "log")[3]
    w = (13 / 4) ** 2
    assert float(px_mean.mean()) == pytest.approx((w * 3 + 12) / (w + 1), rel=1e-3)
    assert float(log_mean.mean()) == pytest.approx(math.sqrt(4 * 13) - 1, rel=1e-3)
    # a uniform reading is returned as it is, with its own sigma, in both domains
    flat = torch.full((1, 1, 16, 16), 7.0)
    for domain in ("px", "log"):
        fused, sd, own = spread(flat, 0.1 * flat, guide[..., :16, :16], 12.0, 0.4, 2.0, domain)[:3]
        assert torch.allclose(fused, flat, rtol=1e-4) and torch.allclose(sd, 0.1 * flat, rtol=1e-2)
    with pytest.raises(ValueError, match="spread domain"):
        spread(flat, flat, guide[..., :16, :16], 12.0, 0.4, 1.0, "linear")


def test_refiner_bin_weights_flatten_the_scenes_mix_of_blur_sizes():
    """Cells whose true CoC falls in bins of frequency 0.6, 0.3, 0.1: balance 0 weighs every cell 1,
    balance 1 gives each bin the same total weight; the cells' mean weight is 1 either way."""
    target = torch.tensor([0.5] * 6 + [1.5] * 3 + [10.0]).view(1, 1, 1, 10)
    data = [(None, None, target, torch.ones_like(target))]
    freq = torch.tensor([0.6, 0.3, 0.1])
    used = [0, 1, 6]  # bins 0-1, 1-2 and 8-12 px
    w0, w1 = bin_weights(data, 0.0), bin_weights(data, 1.0)
    assert torch.allclose(w0[used], torch.ones(3)) and float(w0.sum()) == pytest.approx(3.0)
    share = w1[used] * freq
    assert torch.allclose(share, torch.full((3,), 1 / 3), atol=1e-6)
    assert float((w1[used] * freq).sum()) == pytest.approx(1.0)


def test_box_mean_is_the_border_clipped_window_mean():
    y = torch.rand(2, 1, 37, 50)
    for k in (3, 15):
        ref = torch.nn.functional.avg_pool2d(y, k, 1, k // 2, count_include_pad=False)
        assert torch.allclose(box_mean(y, k), ref, atol=1e-5)
    # a corner pixel's window holds the 8 x 8 pixels from the corner (k = 15)
    assert abs(float(box_mean(y, 15)[0, 0, 0, 0]) - float(y[0, 0, :8, :8].mean())) < 1e-5


def test_laplace_nll_is_lowest_at_the_truth_with_the_right_sigma():
    t = torch.tensor(3.0)
    assert laplace_nll(t, torch.tensor(1.0), t) < laplace_nll(t + 0.5, torch.tensor(1.0), t)
    sig = torch.linspace(0.3, 4.0, 200)
    # a mean absolute error of 1 px is a Laplace scale of 1 px: a standard deviation of sqrt(2) px
    best = sig[laplace_nll(torch.zeros(()), sig, torch.tensor(1.0)).argmin()]
    assert abs(float(best) - math.sqrt(2.0)) < 0.05


def test_reader_checkpoint_loads_as_an_estimator_and_refuses_the_wrong_kind(tmp_path):
    reader = BlurReader(ReaderConfig(channels=8, dilations=[1, 2]))
    path = tmp_path / "reader.pt"
    ck = {"kind": "reader", "reader_config": reader.config.to_dict(), "reader_state": reader.state_dict()}
    save_checkpoint(path, {**ck, "process_long_side": 640})
    est = Estimator.load(path, device="cpu")
    assert est.kind == "reader"
    rgb = (np.random.default_rng(0).random((40, 52, 3)) * 255).astype(np.uint8)
    pred = est.predict(rgb, {"focal_length_m": 0.05, "f_number": 2.0, "focus_distance_m": 2.0}, fx=60.0)
    assert pred.defocus.shape == (40, 52) and np.isfinite(pred.defocus).all()
    with pytest.raises(CheckpointError, match="not the multi-task network"):
        build_model(load_checkpoint(path), path)
    save_checkpoint(tmp_path / "bad.pt", {**ck, "kind": "mystery", "process_long_side": 640})
    with pytest.raises(CheckpointError, match="unknown kind"):
        load_checkpoint(tmp_path / "bad.pt")


def _train(data, out, *extra, torchrun=False, env=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    head = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        if torchrun
        else [sys.executable]
    )
    cmd = [*head, "-m", "depth_defocus_ros", "train-reader", "--data", str(data), "--out", str(out)]
    cmd += ["--channels", "8", "--dilations", "1,2", "--batch-size", "4", "--val-shards", "1", "--log-every", "1"]
    cmd += ["--calibration-scenes", "2"]
    r = subprocess.run([*cmd, *extra], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def patches(tmp_path_factory):
    return render_patch_shards(tmp_path_factory.mktemp("patches") / "p", 3, tiles_per_shard=2, seed=1, config=SMALL)


def test_train_reader_resume_and_outputs(patches, tmp_path):
    out = tmp_path / "run"
    _train(patches, out, "--steps", "4", "--val-every", "4")
    for f in ("args.json", "last.pt", "best.pt", "metrics.jsonl", "loss.png"):
        assert (out / f).is_file(), f
    ck = load_checkpoint(out / "best.pt")
    assert ck["kind"] == "reader" and "optimizer" not in ck and ck["patch_config"]["patch"] == SMALL.patch
    # the final sigma's scale was fitted on synthetic scenes and stored with the reader
    assert ck["calibration"]["scenes"] == 2 and ck["reader_config"]["sigma_scale"] == ck["calibration"]["sigma_scale"]
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in recs if r["kind"] == "val"]
    assert val and 0 <= val[-1]["val_within_sigma"] <= 1 and math.isfinite(val[-1]["val_mae"])
    r = _train(patches, out, "--steps", "6", "--val-every", "6", "--resume")
    assert "resumed from" in r.stdout + r.stderr and load_checkpoint(out / "last.pt")["step"] == 6
    _train(patches, tmp_path / "ft", "--steps", "2", "--val-every", "2", "--init", str(out / "best.pt"))
    # stage 2 on whole scenes, the level CNN frozen: one reader checkpoint with its refiner
    from depth_defocus_ros.synth.scenes import SceneConfig, render_shards

    scenes = render_shards(tmp_path / "scenes", 4, seed=2, shard_size=2, config=SceneConfig(height=64, width=96))
    _train(
        patches,
        tmp_path / "st2",
        "--steps",
        "3",
        "--val-every",
        "3",
        "--init",
        str(out / "best.pt"),
        "--refine-data",
        str(scenes),
        "--refine-channels",
        "8",
        "--refine-candidates",
        "6",
        "--refine-balance",
        "1",
        "--spread-domain",
        "log",
    )
    st2 = load_checkpoint(tmp_path / "st2" / "best.pt")
    assert st2["reader_config"]["refine_candidates"] == 6 and st2["refine_args"]["candidates"] == 6
    assert st2["refine_args"]["balance"] == 1.0 and st2["reader_config"]["spread_domain"] == "log"
    assert math.isfinite(st2["metrics"]["nll_weighted"]) and math.isfinite(st2["metrics"]["nll"])
    lv = load_checkpoint(out / "best.pt")
    assert st2["reader_config"]["refine_channels"] == 8 and any(k.startswith("refiner.") for k in st2["reader_state"])
    assert all(torch.equal(st2["reader_state"][k], v) for k, v in lv["reader_state"].items())
    est = Estimator.load(tmp_path / "st2" / "best.pt", device="cpu")
    assert est.reader.refiner is not None


@pytest.mark.slow
def test_train_reader_ddp_two_processes_end_with_identical_weights(patches, tmp_path):
    env = {"DEPTH_DEFOCUS_DUMP_RANK_WEIGHTS": str(tmp_path)}
    _train(patches, tmp_path / "ddp", "--steps", "3", "--val-every", "100", "--device", "cpu", torchrun=True, env=env)
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    init = torch.load(tmp_path / "rank0_init.pt", weights_only=True)
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert any(not torch.equal(init[k], w0[k]) for k in w0)


def test_network_on_a_frozen_reader_first_stage(tmp_path):
    from cli_args import TINY_TRAIN

    reader = BlurReader(ReaderConfig(channels=8, dilations=[1, 2]))
    ck = {"kind": "reader", "reader_config": reader.config.to_dict(), "reader_state": reader.state_dict()}
    save_checkpoint(tmp_path / "reader.pt", {**ck, "process_long_side": 640})
    out = tmp_path / "net"
    cmd = [sys.executable, "-m", "depth_defocus_ros", "train", "--out", str(out), *TINY_TRAIN, "--steps", "2"]
    cmd += ["--val-every", "2", "--reader", str(tmp_path / "reader.pt")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    net = load_checkpoint(out / "last.pt")
    assert net["model_config"]["reader"]["channels"] == 8
    for k, v in reader.state_dict().items():  # the reader stayed as trained on patches
        assert torch.equal(net["state_dict"][f"reader.{k}"], v), k
    est = Estimator.load(out / "best.pt", device="cpu")
    rgb = (np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)
    pred = est.predict(rgb, {"focal_length_m": 0.05, "f_number": 2.0, "focus_distance_m": 2.0}, fx=60.0)
    assert est.kind == "network" and pred.defocus.shape == (64, 64)


def test_render_patches_cli_sets_the_coc_prior(tmp_path):
    """``render-patches --small-share/--small-max-px`` reach the tiles and the manifest; the
    defaults are PatchConfig's (one source of truth)."""
    from depth_defocus_ros.cli import main

    out = tmp_path / "p"
    args = ["render-patches", "--out", str(out), "--shards", "1", "--tiles-per-shard", "3", "--seed", "5"]
    assert main([*args, "--small-share", "1.0", "--small-max-px", "1.0"]) == 0
    cfg = json.loads((out / "manifest.json").read_text())["config"]
    assert cfg["small_share"] == 1.0 and cfg["small_max_px"] == 1.0
    # every tile's typical CoC is at most 1 px (a lognormal spread of 0.5 around it): the
    # patches' median CoC stays small
    assert float(np.median(load_patches(out)["coc"].astype(np.float32))) < 2.0
    assert main([*args[:2], str(tmp_path / "d"), *args[3:]]) == 0
    d = json.loads((tmp_path / "d" / "manifest.json").read_text())["config"]
    assert (d["small_share"], d["small_max_px"]) == (PatchConfig().small_share, PatchConfig().small_max_px)
    assert d["flat_leaf_share"] == PatchConfig().flat_leaf_share


def _abs_laplacian(img: torch.Tensor) -> torch.Tensor:
    """(C, H, W) -> (H - 2, W - 2): the largest absolute discrete Laplacian over the channels."""
    c = img[:, 1:-1, 1:-1]
    return (img[:, 1:-1, :-2] + img[:, 1:-1, 2:] + img[:, :-2, 1:-1] + img[:, 2:, 1:-1] - 4 * c).abs().amax(0)


def test_render_patches_cli_sets_the_flat_leaf_share(tmp_path):
    """``--flat-leaf-share`` reaches the manifest, and the share reaches the tiles: with 1 every
    leaf is one colour, so the scenes under the blur hold far more pixels without texture (zero
    Laplacian) than with 0."""
    from depth_defocus_ros.cli import main
    from depth_defocus_ros.synth.camera import Rand

    out = tmp_path / "p"
    args = ["render-patches", "--out", str(out), "--shards", "1", "--tiles-per-shard", "2", "--seed", "3"]
    assert main([*args, "--flat-leaf-share", "0.7"]) == 0
    assert json.loads((out / "manifest.json").read_text())["config"]["flat_leaf_share"] == 0.7
    flat = {}
    for share in (0.0, 1.0):
        maker, gen = TileMaker(PatchConfig(flat_leaf_share=share), photos=[]), torch.Generator().manual_seed(4)
        shares = []
        for _ in range(8):
            img, _ = maker.scene(Rand(gen), 96, 1.0)  # (3, 96, 96) linear RGB, before blur and noise
            shares.append(float((_abs_laplacian(img) < 1e-6).float().mean()))
        flat[share] = float(np.mean(shares))
    assert flat[1.0] > flat[0.0] + 0.2, flat


def test_flat_regions_leave_the_reader_views_without_texture():
    """``flat_region_share``: tiles with a textureless surface in front that is wider than the
    reader's view, so that some patches show nothing within 8 px of a pixel (the case a flat wall
    is on a real photograph); with 0 no tile has such pixels."""
    from depth_defocus_ros.synth.camera import Rand

    empty = {}
    for share in (0.0, 1.0):
        cfg = PatchConfig(flat_region_share=share, flat_leaf_share=0.0)
        maker, gen = TileMaker(cfg, photos=[]), torch.Generator().manual_seed(4)
        shares = []
        for _ in range(8):
            img, coc = maker.scene(Rand(gen), 96, 1.0)  # before blur and noise
            textured = torch.nn.functional.max_pool2d((_abs_laplacian(img) > 1e-6).float()[None, None], 17, 1, 8)
            shares.append(float((textured[0, 0] == 0).float().mean()))
        empty[share] = float(np.mean(shares))
    assert empty[0.0] == 0.0 and empty[1.0] > 0.15, empty


def test_render_patches_cli_passes_the_flat_region_share(tmp_path):
    from depth_defocus_ros.cli import main

    out = tmp_path / "p"
    args = ["render-patches", "--out", str(out), "--shards", "1", "--tiles-per-shard", "2", "--seed", "3"]
    assert main([*args, "--flat-region-share", "0.4"]) == 0
    assert json.loads((out / "manifest.json").read_text())["config"]["flat_region_share"] == 0.4


def test_photo_downscale_draws_denser_textures_and_refuses_magnifying(tmp_path, capsys):
    """Photographs reduced 6x instead of 1.5x put more detail in a tile: the mean gradient
    magnitude relative to the tile's contrast (median over 24 tiles) grows (0.35 -> 0.48: the
    originals' own softness shrinks with them); the CLI records the range, and a range that would
    magnify a photograph is refused with one error line."""
    from depth_defocus_ros.cli import main
    from depth_defocus_ros.synth.camera import Rand

    def edge_density(lo: float) -> float:
        maker = TileMaker(PatchConfig(photo_share=1.0, photo_downscale=(lo, lo)))
        r, vals = Rand(torch.Generator().manual_seed(4)), []
        for _ in range(24):
            y = maker._texture(96, r).mean(0)
            grad = (y[1:, :-1] - y[:-1, :-1]).abs() + (y[:-1, 1:] - y[:-1, :-1]).abs()
            vals.append(float(grad.mean() / (y.std() + 1e-6)))
        return float(np.median(vals))

    assert edge_density(6.0) > 1.25 * edge_density(1.5)
    out = tmp_path / "p"
    args = ["render-patches", "--out", str(out), "--shards", "1", "--tiles-per-shard", "2", "--seed", "3"]
    assert main([*args, "--photo-downscale", "2,6"]) == 0
    assert json.loads((out / "manifest.json").read_text())["config"]["photo_downscale"] == [2.0, 6.0]
    assert main([*args[:2], str(tmp_path / "q"), *args[3:], "--photo-downscale", "0.5,2"]) != 0
    assert "never magnified" in capsys.readouterr().err


def test_stage_readings_name_every_stage_and_the_table_measures_each():
    from depth_defocus_ros.evaluation.stages import STAGES, StageTable, format_stage_table, stage_readings

    reader = BlurReader(ReaderConfig(refine_channels=8)).eval()
    img = torch.rand(2, 3, 96, 128)
    stages = stage_readings(reader, img)
    assert list(stages) == [s for s in STAGES if s != "L3"]  # 128 x 96: three levels
    assert all(v.shape == (2, 1, 96, 128) for v in stages.values())
    assert torch.allclose(stages["final"], read_defocus(reader, img).coc)
    # known readings: a level reading half the truth, a fused reading exact -> -50 % and 0 % per bin
    truth = torch.linspace(0.5, 20.0, 2 * 96 * 128).reshape(2, 1, 96, 128)
    truth[0, 0, 0, :5] = float("nan")  # unknown pixels are not counted
    known = {"L0": truth * 0.5, "fused": truth.clone(), "final": truth + 1.0}
    table = StageTable()
    table.update(known, truth, edges=truth > 10.0)
    res = table.result()
    for b in res["all"]["L0"]["bins"].values():
        assert b["pixels"] == 0 or abs(b["bias_pct"] + 50.0) < 1e-6
    assert res["all"]["fused"]["mae"] < 1e-6 and abs(res["all"]["final"]["bias_px"] - 1.0) < 1e-6
    assert res["all"]["oracle all"]["mae"] < 1e-6 and abs(res["all"]["oracle levels"]["slope"] - 0.5) < 1e-6
    assert res["edges"]["L0"]["pixels"] == int((truth > 10.0).sum())
    text = format_stage_table(res)
    assert "oracle levels" in text and "edges pixels" in text and "-50" in text
