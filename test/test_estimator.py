"""Estimator: any input size, processed at the camera's resolution (never upsampled), outputs at
the input resolution with the CoC in input pixels, depth only where it is determined."""

import cv2
import numpy as np
import pytest
from tiny_checkpoint import make_tiny_checkpoint

from depth_defocus_ros.estimate.estimator import TRAINING_FREE, Estimator, InputError, processing_size
from depth_defocus_ros.optics import Lens, LensError

LENS = Lens.from_mm(35.0, 1.8, 1.2)


@pytest.fixture(scope="module", params=["network", "training-free"])
def est(request, tmp_path_factory):
    if request.param == "training-free":
        return Estimator.load(TRAINING_FREE, device="cpu")
    p = make_tiny_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.pt", long_side=320, random_correction=True)
    return Estimator.load(p, device="cpu")


def _image(w, h, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def test_processing_size_never_upsamples():
    assert processing_size(240, 320, 640) == (240, 320, 1.0)
    assert processing_size(720, 1280, 640) == (360, 640, 0.5)


@pytest.mark.parametrize("w, h", [(640, 480), (333, 101), (97, 211), (1280, 720)])
def test_any_size_gives_input_resolution(est, w, h):
    pred = est.predict(_image(w, h), LENS, fx=0.9 * w, uncertainty=True)
    for m in (pred.depth, pred.defocus, pred.uncertainty, pred.relative_error, pred.side_prob):
        assert m.shape == (h, w) and m.dtype == np.float32
    assert (pred.defocus >= 0).all()
    fin = np.isfinite(pred.depth)
    assert (pred.depth[fin] > 0).all()
    # published exactly where the expected relative error is small enough
    assert np.array_equal(fin, np.isfinite(pred.depth) & (pred.relative_error <= 0.25))


def test_downsampling_beyond_the_cap_scales_the_coc(est):
    """An image twice the cap is read at half size: its CoC (in its own px) is twice the half-size
    image's, and the depth (m) is the same."""
    cap = est.long_side
    small = _image(cap // 2, cap * 3 // 8)
    big = cv2.resize(small, (cap * 2, cap * 3 // 2), interpolation=cv2.INTER_LINEAR)
    half = cv2.resize(big, (cap, cap * 3 // 4), interpolation=cv2.INTER_AREA)
    a = est.predict(half, LENS, fx=300.0, focus_side="front", max_relative_error=1e9)
    b = est.predict(big, LENS, fx=600.0, focus_side="front", max_relative_error=1e9)
    b_half = cv2.resize(b.defocus, (cap, cap * 3 // 4), interpolation=cv2.INTER_AREA)
    assert np.median(b_half / np.maximum(a.defocus, 1e-3)) == pytest.approx(2.0, rel=0.05)
    assert np.nanmedian(b.depth) == pytest.approx(np.nanmedian(a.depth), rel=0.05)


def test_focus_side_and_threshold(est):
    img = _image(160, 120)
    front = est.predict(img, LENS, fx=150.0, focus_side="front", max_relative_error=1e9)
    assert np.isfinite(front.depth).all() and (front.depth <= LENS.focus_distance_m + 1e-4).all()
    assert (front.side_prob == 0).all()
    strict = est.predict(img, LENS, fx=150.0, focus_side="front", max_relative_error=1e-4)
    assert np.isfinite(strict.depth).mean() < np.isfinite(front.depth).mean()
    with pytest.raises(ValueError, match="focus_side"):
        est.predict(img, LENS, fx=150.0, focus_side="sideways")
    depth, defocus, unc = est.predict(img, LENS, fx=150.0, uncertainty=True)
    assert unc.shape == depth.shape


@pytest.mark.parametrize(
    "bad, word",
    [
        (np.zeros((48, 64), np.uint8), "HxWx3"),
        (np.zeros((48, 64, 4), np.uint8), "HxWx3"),
        (np.zeros((48, 64, 3), np.uint16), "uint8"),
        (np.zeros((0, 64, 3), np.uint8), "too small"),
    ],
)
def test_bad_images(est, bad, word):
    with pytest.raises(InputError, match=word):
        est.predict(bad, LENS, fx=50.0)


@pytest.mark.parametrize(
    "lens, fx, word",
    [
        ({"focal_length_m": 0.035, "f_number": float("nan"), "focus_distance_m": 1.0}, 50.0, "f-number"),
        ({"focal_length_m": 0.035, "f_number": 2.0, "focus_distance_m": 0.02}, 50.0, "greater than"),
        (LENS, -3.0, "fx"),
        (LENS, float("nan"), "fx"),
    ],
)
def test_bad_lens(est, lens, fx, word):
    with pytest.raises(LensError, match=word):
        est.predict(_image(64, 48), lens, fx=fx)
