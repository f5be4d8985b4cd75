"""Estimator: any input size, outputs at the input resolution, units rescaled with the resize."""

import cv2
import numpy as np
import pytest

from depth_defocus_ros.estimator import Estimator, InputError
from depth_defocus_ros.optics import Lens, LensError
from depth_defocus_ros.testing import make_tiny_checkpoint

LENS = Lens.from_mm(35.0, 1.8, 1.2)


@pytest.fixture(scope="module")
def est(tmp_path_factory):
    p = make_tiny_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.pt")
    return Estimator.load(p, device="cpu")


def _image(w, h, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


@pytest.mark.parametrize("w, h", [(640, 480), (333, 101), (97, 211), (1280, 720)])
def test_any_size_gives_input_resolution(est, w, h):
    pred = est.predict(_image(w, h), LENS, fx=0.9 * w)
    assert pred.depth.shape == (h, w) and pred.defocus.shape == (h, w)
    assert pred.depth.dtype == np.float32 and pred.defocus.dtype == np.float32
    assert pred.uncertainty is None
    assert np.isfinite(pred.depth).all() and (pred.depth > 0).all() and (pred.defocus >= 0).all()


def test_resizing_scales_defocus_and_keeps_depth(est):
    """The same scene at 320x240 and 640x480 (fx doubled): CoC doubles, depth stays."""
    small = _image(320, 240)
    big = cv2.resize(small, (640, 480), interpolation=cv2.INTER_LINEAR)
    a = est.predict(small, LENS, fx=300.0)
    b = est.predict(big, LENS, fx=600.0)
    ratio = np.median(b.defocus) / np.median(a.defocus)
    assert ratio == pytest.approx(2.0, rel=0.03)
    assert np.median(b.depth) == pytest.approx(np.median(a.depth), rel=0.03)


def test_uncertainty(est):
    pred = est.predict(_image(160, 120), LENS, fx=150.0, uncertainty=True, mc_samples=4)
    assert pred.uncertainty.shape == (120, 160) and (pred.uncertainty >= 0).all()
    depth, defocus, unc = pred
    assert unc is pred.uncertainty


@pytest.mark.parametrize("bad, word", [
    (np.zeros((48, 64), np.uint8), "HxWx3"),
    (np.zeros((48, 64, 4), np.uint8), "HxWx3"),
    (np.zeros((48, 64, 3), np.uint16), "uint8"),
    (np.zeros((0, 64, 3), np.uint8), "too small"),
])
def test_bad_images(est, bad, word):
    with pytest.raises(InputError, match=word):
        est.predict(bad, LENS, fx=50.0)


@pytest.mark.parametrize("lens, fx, word", [
    ({"focal_length_m": 0.035, "f_number": float("nan"), "focus_distance_m": 1.0}, 50.0, "f-number"),
    ({"focal_length_m": 0.035, "f_number": 2.0, "focus_distance_m": 0.02}, 50.0, "greater than"),
    (LENS, -3.0, "fx"),
    (LENS, float("nan"), "fx"),
])
def test_bad_lens(est, lens, fx, word):
    with pytest.raises(LensError, match=word):
        est.predict(_image(64, 48), lens, fx=fx)
