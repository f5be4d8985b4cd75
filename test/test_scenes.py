"""Synthetic scenes: reproducible, exact ground truth consistent with the optics, real ranges."""

import numpy as np
import pytest
import torch

from depth_defocus_ros.optics import Lens, signed_defocus_px
from depth_defocus_ros.synth.scenes import SceneConfig, SceneGenerator

CFG = SceneConfig(height=48, width=64, texture_size=64, photo_fraction=0.5)


def test_same_seed_same_scenes_and_different_seed_differs():
    a = SceneGenerator(CFG, seed=3).batch(3)
    b = SceneGenerator(CFG, seed=3).batch(3)
    c = SceneGenerator(CFG, seed=4).batch(3)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert not torch.equal(a["depth"], c["depth"])


def test_ground_truth_follows_the_optics_and_lens_ranges():
    b = SceneGenerator(CFG, seed=11).batch(6)
    assert b["image"].shape == (6, 3, 48, 64) and b["depth"].shape == (6, 1, 48, 64)
    for i in range(6):
        f, n, d_f = b["lens"][i].tolist()
        assert 0.004 - 1e-6 <= f <= 0.085 + 1e-6 and 1.4 - 1e-4 <= n <= 8.0 + 1e-4
        assert 0.3 - 1e-6 <= d_f <= 10.0 + 1e-6 and d_f > f
        s = signed_defocus_px(b["depth"][i], Lens(f, n, d_f), float(b["fx"][i]))
        torch.testing.assert_close(b["signed_defocus"][i], s, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(b["defocus"][i], s.abs(), rtol=1e-4, atol=1e-4)
    assert float(b["depth"].min()) >= CFG.min_depth_m and float(b["depth"].max()) <= CFG.max_depth_m
    assert 0.0 <= float(b["image"].min()) and float(b["image"].max()) <= 1.0


def test_ray_cast_ground_plane_and_sphere_depths_are_exact():
    """A camera 1.5 m above level ground: a pixel v rows below the centre sees z = h * fx / v."""
    from depth_defocus_ros.synth.layout import _Canvas

    cfg = SceneConfig(height=48, width=64, texture_size=64)
    layout = SceneGenerator(cfg, seed=0).layout
    fx, h = 60.0, 1.5
    canvas = _Canvas(layout.rays(fx))
    tex = torch.rand(3, 8, 8)
    light = torch.tensor([0.0, -1.0, 0.0])
    ey = torch.tensor([0.0, 1.0, 0.0])
    layout.plane(
        canvas,
        torch.tensor([0.0, h, 0.0]),
        -ey,
        torch.tensor([1.0, 0, 0]),
        torch.tensor([0, 0, 1.0]),
        tex,
        1.0,
        light,
        fx,
    )
    v = torch.arange(48) + 0.5 - 24  # pixel centre rows relative to the principal point
    below = v > 0
    expected = h * fx / v[below]
    torch.testing.assert_close(canvas.t[below][:, 0], expected, rtol=1e-5, atol=1e-5)
    assert bool(torch.isinf(canvas.t[~below]).all())  # above the horizon: no ground
    # a sphere of radius 0.5 m centred 3 m ahead: nearest point on the axis at z = 2.5 m
    layout.sphere(canvas, torch.tensor([0.0, 0.0, 3.0]), 0.5, tex, 0.5, light)
    assert float(canvas.t[23:25, 31:33].min()) == pytest.approx(2.5, rel=2e-3)


def test_fixed_camera_is_honoured():
    cfg = SceneConfig(height=48, width=64, texture_size=64, fixed_fx=55.0, fixed_lens=(0.035, 1.8, 1.2))
    b = SceneGenerator(cfg, seed=1).batch(2)
    assert torch.allclose(b["fx"], torch.tensor(55.0))
    assert torch.allclose(b["lens"], torch.tensor([0.035, 1.8, 1.2]).expand(2, 3))


def test_visible_blur_share_raises_the_coc_at_infinity():
    """With every scene drawn for visible blur, the CoC at infinity (px at the render width) is at
    least the minimum wherever the camera can reach it (about three scenes in four: 0.69-0.86 over
    64 scenes for seeds 2-4), and far above the default draw's."""
    from depth_defocus_ros.optics import coc_at_infinity_batch as coc_at_infinity

    base = SceneConfig(height=48, width=64, texture_size=64)
    vis = SceneConfig(height=48, width=64, texture_size=64, visible_blur_fraction=1.0, visible_blur_min_px=1.0)
    c0 = coc_at_infinity(*(lambda b: (b["lens"], b["fx"]))(SceneGenerator(base, seed=2).batch(48)))
    c1 = coc_at_infinity(*(lambda b: (b["lens"], b["fx"]))(SceneGenerator(vis, seed=2).batch(48)))
    assert float((c1 >= 1.0).float().mean()) >= 0.6
    assert float((c1 >= 1.0).float().mean()) > float((c0 >= 1.0).float().mean())
    assert float(c1.median()) > 1.5 * float(c0.median())


def test_noise_range_sets_the_sensor_noise():
    """Same scenes, ten times lower noise variance range: the residual against the noise-free
    render shrinks accordingly (flat regions show the noise: std ratio about sqrt(10))."""
    kw = dict(height=48, width=64, texture_size=64, jpeg_prob=0.0)
    clean = SceneGenerator(SceneConfig(noise=False, **kw), seed=4).batch(2)["image"]
    hi = SceneGenerator(SceneConfig(noise_shot_range=(1e-2, 1e-2), noise_read_range=(1e-4, 1e-4), **kw), seed=4)
    lo = SceneGenerator(SceneConfig(noise_shot_range=(1e-3, 1e-3), noise_read_range=(1e-5, 1e-5), **kw), seed=4)
    e_hi = float((hi.batch(2)["image"] - clean).std())
    e_lo = float((lo.batch(2)["image"] - clean).std())
    assert 2.0 < e_hi / e_lo < 4.5


def test_a_dataset_folder_is_never_resumed_with_other_scenes(tmp_path):
    """Resuming adds shards only when they are drawn as the existing ones were; a folder of the
    held-out set rendered with an older texture recipe is rendered again, not reused."""
    import json

    from depth_defocus_ros.evaluation.heldout import ensure_heldout
    from depth_defocus_ros.synth.scenes import render_shards
    from depth_defocus_ros.synth.textures import TEXTURE_RECIPE

    cfg = SceneConfig(height=32, width=48, texture_size=32)
    out = render_shards(tmp_path / "d", 2, seed=1, shard_size=1, config=cfg, progress=False)
    (out / "shard_00001.npz").unlink()  # an interrupted run: resuming with the same draw is fine
    render_shards(out, 2, seed=1, shard_size=1, config=cfg, progress=False)
    assert json.loads((out / "manifest.json").read_text())["texture_recipe"] == TEXTURE_RECIPE
    with pytest.raises(ValueError, match="another seed"):
        render_shards(out, 3, seed=2, shard_size=1, config=cfg, progress=False)
    # a manifest written before an option existed resumes with that option's default, not another value
    man = json.loads((out / "manifest.json").read_text())
    del man["scene_config"]["flat_fraction"]
    (out / "manifest.json").write_text(json.dumps(man))
    (out / "shard_00001.npz").unlink()
    render_shards(out, 2, seed=1, shard_size=1, config=cfg, progress=False)
    with pytest.raises(ValueError, match="another seed"):
        render_shards(out, 2, seed=1, shard_size=1, config=SceneConfig(**{**cfg.to_dict(), "flat_fraction": 0.3}))

    root = ensure_heldout("layers", tmp_path / "cache", scenes=1, progress=False)
    man = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps({**man, "texture_recipe": TEXTURE_RECIPE - 1}))
    shard = next(root.glob("shard_*.npz"))
    shard.write_bytes(b"rendered with the older recipe")
    assert ensure_heldout("layers", tmp_path / "cache", scenes=1, progress=False) == root
    assert json.loads((root / "manifest.json").read_text())["texture_recipe"] == TEXTURE_RECIPE
    with np.load(shard) as z:
        assert z["depth"].shape[0] == 1  # rendered again
