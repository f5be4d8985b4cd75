"""`depth-defocus predict`: outputs, and one-line errors (no traceback) for bad input."""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from tiny_checkpoint import make_tiny_checkpoint

ROOT = Path(__file__).resolve().parent.parent

LENS_ARGS = ["--focus-distance", "1.2", "--f-number", "1.8", "--focal-length-mm", "35"]


def predict_args(images, model, out, lens=LENS_ARGS):
    """The predict command line for ``images`` with the test lens and fx = 70 px."""
    return ["predict", *map(str, images), *lens, "--fx", "70", "--model", str(model), "--out", str(out)]


def run(args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "depth_defocus_ros", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    good = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    cv2.imwrite(str(d / "good.png"), good)
    cv2.imwrite(str(d / "gray.png"), good[:, :, 0])
    cv2.imwrite(str(d / "deep.png"), good.astype(np.uint16) * 257)
    cv2.imwrite(str(d / "rgba.png"), np.dstack([good, good[:, :, :1]]))
    (d / "empty.png").write_bytes(b"")
    (d / "junk.jpg").write_bytes(b"this is not an image at all")
    make_tiny_checkpoint(d / "tiny.pt")
    return d


def test_batch_goes_on_past_bad_inputs(files, tmp_path):
    """Grey, 16-bit and RGBA files are decoded as the node decodes such frames (one decoder); the
    unreadable ones are reported on one line each and the batch goes on."""
    names = ["good.png", "gray.png", "deep.png", "rgba.png", "empty.png", "junk.jpg", "missing.png"]
    r = run(
        [*predict_args([files / n for n in names], files / "tiny.pt", tmp_path), "--uncertainty"],
        files,
    )
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    errs = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errs) == 3
    for word in ("empty", "not a readable image", "not found"):
        assert any(word in e for e in errs), word
    assert "4 of 7 images done, 3 failed" in r.stdout
    for n in ("gray", "deep", "rgba"):
        assert np.load(tmp_path / f"{n}.npz")["defocus"].shape == (60, 80)
    z = np.load(tmp_path / "good.npz")
    assert z["depth"].shape == (60, 80) and z["defocus"].dtype == np.float32
    assert z["uncertainty"].shape == (60, 80)
    assert (tmp_path / "good_preview.png").is_file()


def test_files_are_read_through_the_one_decoder(files):
    from depth_defocus_ros.cli import read_rgb_image

    good = cv2.imread(str(files / "good.png"))[:, :, ::-1]
    np.testing.assert_array_equal(read_rgb_image(files / "good.png"), good)
    np.testing.assert_array_equal(read_rgb_image(files / "deep.png"), good)  # 16-bit rounded to 8
    np.testing.assert_array_equal(read_rgb_image(files / "rgba.png"), good)  # alpha dropped
    np.testing.assert_array_equal(read_rgb_image(files / "gray.png"), np.repeat(good[:, :, 2:3], 3, axis=2))


@pytest.mark.parametrize(
    "lens, word",
    [
        (["--focus-distance", "nan", "--f-number", "1.8", "--focal-length-mm", "35"], "focus distance"),
        (["--focus-distance", "1.2", "--f-number", "-2", "--focal-length-mm", "35"], "f-number"),
        (["--focus-distance", "0.03", "--f-number", "2", "--focal-length-mm", "35"], "greater than the focal"),
    ],
)
def test_bad_lens_values(files, tmp_path, lens, word):
    r = run(
        predict_args([files / "good.png"], files / "tiny.pt", tmp_path, lens=lens),
        files,
    )
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert word in r.stderr and len(r.stderr.strip().splitlines()) <= 2


def test_bad_checkpoints(files, tmp_path):
    tiny = (files / "tiny.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(tiny[:1000])
    np.save(tmp_path / "foreign.npy", np.zeros(3))
    cases = {"missing.pt": "not found", "trunc.pt": "cannot read checkpoint", "foreign.npy": "cannot read"}
    for name, word in cases.items():
        r = run(
            predict_args([files / "good.png"], tmp_path / name, tmp_path / "o"),
            files,
        )
        assert r.returncode == 2, name
        assert "Traceback" not in r.stderr and word in r.stderr, (name, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert str(tmp_path / name) in r.stderr


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "scripts").glob("*.py")))
def test_every_script_imports_and_has_help(script):
    """Every script still imports what it uses (a moved or removed module fails here, not on a user's
    machine) and answers --help."""
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), "--help"], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0 and "usage" in r.stdout.lower(), r.stdout[-1000:] + r.stderr[-2000:]
