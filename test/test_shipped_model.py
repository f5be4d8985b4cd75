"""The shipped default estimator: what ``Estimator.load()`` gives is what models/README.md says
was measured (a checkpoint in models/, or the training-free estimator when no checkpoint beat
it), and on the bundled samples (the Middlebury Motorcycle re-focused, with measured depth) it
reads blur better than the "no blur" answer and publishes depth that is the thin-lens solution of
its CoC.
"""

import math
from pathlib import Path

import numpy as np
import pytest

from depth_defocus_ros.checkpoint import VERSION, load_checkpoint
from depth_defocus_ros.estimator import TRAINING_FREE, Estimator
from depth_defocus_ros.optics import depth_candidates
from depth_defocus_ros.paths import default_model_path
from depth_defocus_ros.ros.demo import load_samples

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def estimator():
    return Estimator.load(device="cpu")


def test_the_default_is_the_one_the_model_card_names(monkeypatch):
    monkeypatch.delenv("DEPTH_DEFOCUS_MODEL", raising=False)
    path = default_model_path()
    card = (ROOT / "models" / "README.md").read_text()
    shipped = ROOT / "models" / "depth_defocus.pt"
    if shipped.is_file():
        assert Path(path).resolve() == shipped.resolve()
        assert shipped.stat().st_size <= 30 * 1024 * 1024
        ckpt = load_checkpoint(shipped)
        assert ckpt["format_version"] == VERSION and ckpt["process_long_side"] > 0
        assert "Default estimator: the shipped checkpoint" in card
    else:
        assert path == TRAINING_FREE
        assert "Default estimator: training-free" in card


def test_default_on_the_bundled_samples(estimator):
    frames, cam = load_samples()
    coc_err, zero_err = [], []
    for _name, rgb, gt, lens in frames:
        pred = estimator.predict(rgb, lens, fx=cam["fx"], uncertainty=True)
        assert pred.depth.shape == gt.shape and (pred.defocus >= 0).all()
        valid = np.isfinite(gt)
        from depth_defocus_ros.optics import coc_px

        gt_coc = coc_px(gt[valid].astype(np.float64), lens, cam["fx"])
        coc_err.append(np.abs(pred.defocus[valid] - gt_coc))
        zero_err.append(gt_coc)
        # every published depth is one of the two thin-lens solutions of the published CoC
        pub = np.isfinite(pred.depth)
        if pub.any():
            near, far = depth_candidates(pred.defocus[pub].astype(np.float64), lens, cam["fx"])
            off = np.minimum(np.abs(pred.depth[pub] - near) / near, np.abs(pred.depth[pub] - far) / far)
            assert off.max() < 1e-3
            assert (pred.relative_error[pub] <= 0.25).all()
    coc_mae, zero_mae = float(np.concatenate(coc_err).mean()), float(np.concatenate(zero_err).mean())
    print(f"samples: CoC MAE {coc_mae:.2f} px (no-blur answer {zero_mae:.2f} px)")
    assert coc_mae < 0.75 * zero_mae and math.isfinite(coc_mae)
