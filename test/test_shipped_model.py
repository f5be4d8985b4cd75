"""The shipped weights (models/depth_defocus.pt): size, self-description, and their quality on the
bundled samples (synthetic frames with ground-truth depth, DESIGN.md optics).

The bounds are loose: they catch a broken, swapped or mis-scaled checkpoint, not small regressions.
"""

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from depth_defocus_ros.checkpoint import load_checkpoint
from depth_defocus_ros.estimator import Estimator, default_model_path
from depth_defocus_ros.optics import Lens, coc_px

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"


@pytest.fixture(scope="module")
def estimator():
    return Estimator.load(device="cpu")


def test_shipped_checkpoint_is_small_self_describing_and_default():
    path = default_model_path()
    assert path.resolve() == (ROOT / "models" / "depth_defocus.pt").resolve()
    assert path.stat().st_size <= 30 * 1024 * 1024
    ckpt = load_checkpoint(path)
    assert ckpt["model_config"]["heads"] == "both"
    assert ckpt["process_long_side"] > 0


def _sample(i):
    cam = yaml.safe_load((SAMPLES / "camera.yaml").read_text())
    rgb = cv2.imread(str(SAMPLES / f"frame_{i:03d}.png"), cv2.IMREAD_COLOR)[:, :, ::-1].copy()
    depth = cv2.imread(str(SAMPLES / f"frame_{i:03d}_depth.png"), cv2.IMREAD_UNCHANGED).astype(np.float64) / 1000.0
    lens = Lens(cam["focal_length_mm"] / 1000.0, cam["f_number"], cam["focus_distance_m"])
    return rgb, depth, lens, cam["fx"]


def test_shipped_model_on_bundled_samples(estimator):
    """On the bundled frames at their own resolution: finite, positive outputs of the input size;
    the published depth is the thin-lens solution of the published CoC (DESIGN.md optics, at the
    input resolution: catches a CoC that was not rescaled with the image); and the CoC is closer to
    the truth than the trivial "no blur anywhere" answer. Depth quality is reported (printed), not
    bounded: the shipped CPU-trained weights do not yet get depth right on these frames
    (models/README.md)."""
    coc_err, zero_err, within, sides = [], [], [], []
    for i in range(4):
        rgb, gt, lens, fx = _sample(i)
        pred = estimator.predict(rgb, lens, fx=fx)
        assert pred.depth.shape == gt.shape and pred.defocus.shape == gt.shape
        assert np.isfinite(pred.depth).all() and (pred.depth > 0).all() and (pred.defocus >= 0).all()
        # optics tie between the two published images (away from the far limit and from edges,
        # where the two maps are resized separately)
        ok = (pred.depth < 0.5 * estimator.max_depth_m) & (pred.defocus > 0.5)
        ok &= cv2.erode(ok.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        implied = coc_px(pred.depth[ok].astype(np.float64), lens, fx)
        assert ok.mean() > 0.2
        assert np.median(np.abs(implied - pred.defocus[ok]) / pred.defocus[ok]) < 0.05
        valid = gt > 0
        gt_coc = coc_px(gt[valid], lens, fx)
        coc_err.append(np.abs(pred.defocus[valid] - gt_coc))
        zero_err.append(gt_coc)
        within.append(np.maximum(pred.depth[valid] / gt[valid], gt[valid] / pred.depth[valid]) < 1.25)
        blurred = gt_coc >= 1.0
        sides.append(((pred.depth[valid] > lens.focus_distance_m) == (gt[valid] > lens.focus_distance_m))[blurred])
    coc_mae, zero_mae = float(np.concatenate(coc_err).mean()), float(np.concatenate(zero_err).mean())
    delta1 = float(np.concatenate(within).mean())
    side_acc = float(np.concatenate(sides).mean())
    print(f"samples: CoC MAE {coc_mae:.2f} px (no-blur answer {zero_mae:.2f} px), delta<1.25 {delta1:.3f}, "
          f"side acc {side_acc:.3f}")
    assert coc_mae < 0.75 * zero_mae
