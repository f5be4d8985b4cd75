"""The real-photo benchmark: a fixed case set on a real photograph with measured depth, rendered
by our optics, never trained on; the evaluation prints tables with reference answers."""

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from depth_defocus_ros.estimate.estimator import TRAINING_FREE, Estimator
from depth_defocus_ros.evaluation.realbench import CASES, FULL_WIDTH, HALF_WIDTH, motorcycle_scene, render_case
from depth_defocus_ros.evaluation.realeval import NO_BLUR, evaluate_real, format_real_report, spearman
from depth_defocus_ros.optics import coc_px
from depth_defocus_ros.synth.textures import load_photo_textures

ROOT = Path(__file__).resolve().parents[1]


def test_case_set_is_fixed_and_spans_the_issue_ranges():
    assert len(CASES) == 64 and len({c.name for c in CASES}) == 64
    lenses = {(c.focal_length_mm, c.f_number, c.focus_distance_m) for c in CASES}
    assert len(lenses) == 16
    assert min(n for _, n, _ in lenses) == 1.4 and max(n for _, n, _ in lenses) == 4.0
    assert {c.focus for c in CASES} == {"front", "inside", "beyond"}
    assert {c.width for c in CASES} == {FULL_WIDTH, HALF_WIDTH} and {c.degraded for c in CASES} == {False, True}
    _, depth, fx = motorcycle_scene()
    valid = np.isfinite(depth)
    assert 2.0 < np.percentile(depth[valid], 1) and np.percentile(depth[valid], 99) < 5.1  # measured, in metres
    cocs = [coc_px(depth[valid], c.lens, fx) for c in CASES if c.width == FULL_WIDTH and not c.degraded]
    assert min(float(c.min()) for c in cocs) < 0.5 and max(float(c.max()) for c in cocs) >= 12.0


def test_the_benchmark_photographs_are_not_training_textures():
    from depth_defocus_ros.synth.textures import _SKIMAGE_PHOTOS

    assert not [n for n in _SKIMAGE_PHOTOS if "motorcycle" in n]
    sizes = {tuple(t.shape[1:]) for t in load_photo_textures()}
    # the motorcycle view (500x741, down-sized to 512 px on its long side) is not among them
    assert (round(500 * 512 / 741), 512) not in sizes


def test_render_case_truth_follows_the_optics():
    case = next(c for c in CASES if c.width == HALF_WIDTH and c.degraded and c.focus == "beyond")
    r = render_case(case)
    h, w = r["depth"].shape
    assert r["image"].shape == (h, w, 3) and w == HALF_WIDTH
    ok = np.isfinite(r["depth"])
    np.testing.assert_allclose(
        r["coc"][ok], coc_px(r["depth"][ok].astype(np.float64), case.lens, float(r["fx"])), rtol=1e-4
    )
    assert float(r["fx"]) == pytest.approx(994.978 * HALF_WIDTH / FULL_WIDTH)


def test_spearman():
    a = np.arange(10.0)
    assert spearman(a, a**3) == pytest.approx(1.0) and spearman(a, -a) == pytest.approx(-1.0)


def test_evaluate_and_report_on_a_few_cases(tmp_path):
    cases = [c for c in CASES if c.width == HALF_WIDTH and not c.degraded][::5]
    res = evaluate_real({TRAINING_FREE: Estimator.load(TRAINING_FREE)}, tmp_path, cases=cases, progress=False)
    nb = res["groups"][NO_BLUR]["all"]
    assert nb["coverage"] == 1.0 and nb["coc_mae"] > 0.5
    tf = res["groups"][TRAINING_FREE]["all"]
    assert 0 <= tf["coverage"] <= 1 and tf["coc_mae"] < nb["coc_mae"]
    text = format_real_report(res, TRAINING_FREE)
    assert "constant depth (true median)" in text and "Spearman" in text
    rk = res["ranking"][TRAINING_FREE]
    by = rk["by_side"]
    assert by["right"]["pixels"] + by["wrong"]["pixels"] == rk["pixels"]
    assert rk["side_right_share"] == pytest.approx(by["right"]["pixels"] / rk["pixels"])
    assert "side right" in text and "mean stated" in text
    last = text.splitlines()[-1]
    assert re.fullmatch(r"motorcycle: coc_mae=\S+ absrel=\S+ delta1=\S+ coverage=\S+ side=\S+", last), last
    assert math.isfinite(float(last.split("coc_mae=")[1].split()[0]))


@pytest.mark.slow
def test_eval_real_motorcycle_cli(tmp_path):
    plot = tmp_path / "sparsification.png"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "depth_defocus_ros",
            "eval",
            "--real",
            "motorcycle",
            "--cache",
            str(tmp_path),
            "--plot",
            str(plot),
            "--out",
            str(tmp_path / "real.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    assert lines[-1].startswith("motorcycle: coc_mae=") and plot.is_file()
    for group in ("focus front", "focus inside", "focus beyond", "width 741", "width 370", "noisy+jpeg"):
        assert group in r.stdout
    assert "no blur (depth = focus distance)" in r.stdout and "training-free" in r.stdout
