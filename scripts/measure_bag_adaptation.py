"""Measure the real-data loop on bags made here: conversion throughput, and the effect of
fine-tuning and of domain adaptation on a held-out split of a shifted ("real") domain.

The "real" camera: synthetic scenes seen through a fixed lens (50 mm f/2 focused at 1.2 m, fx
150 px at 64 px width) and a different sensor: warm white balance, vignetting, a flatter tone curve,
strong noise and JPEG. They are written as MCAP bags (RGB + 16UC1 depth + CameraInfo): two
labelled training bags, one unlabelled bag (no depth), one test bag (other scenes, so the test
split never neighbours the training frames), and converted with ``bag2dataset``.

Runs (tiny network, CPU, OMP_NUM_THREADS=1; every run a few minutes at most):

* ``base``: trained on synthetic shards only (the stand-in for the shipped weights);
* ``finetune``: ``base`` fine-tuned on the labelled real training bags;
* ``control``: ``base`` trained on for as many steps on synthetic shards only;
* ``adapt``: like ``control`` plus domain adaptation with the unlabelled real bag.

``control`` vs ``adapt`` is the effect of domain adaptation (same data, steps, seed); ``base`` vs
``finetune`` the effect of fine-tuning. All are evaluated on the real test split and on synthetic
held-out scenes.

    OMP_NUM_THREADS=1 python scripts/measure_bag_adaptation.py --out /tmp/measure [--seeds 0,1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from depth_defocus_ros.bags.convert import ConvertOptions, convert_bags  # noqa: E402
from depth_defocus_ros.bags.synth import scene_frames, write_synthetic_bag  # noqa: E402
from depth_defocus_ros.cli import main as cli  # noqa: E402
from depth_defocus_ros.estimate.estimator import Estimator  # noqa: E402
from depth_defocus_ros.evaluation.heldout import evaluate_estimator  # noqa: E402
from depth_defocus_ros.model.checkpoint import load_checkpoint  # noqa: E402
from depth_defocus_ros.synth.scenes import (
    SceneConfig,  # noqa: E402
    render_shards,  # noqa: E402
)

SIZE = 64
REAL_LENS = (0.05, 2.0, 1.2)
REAL_FX = 150.0
TINY = [
    "--channels",
    "8,8,16,16,16",
    "--decoder-channels",
    "16,16,8,8,8",
    "--process-long-side",
    "64",
    "--height",
    str(SIZE),
    "--width",
    str(SIZE),
    "--batch-size",
    "8",
    "--log-every",
    "50",
]


def sensor_shift(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another camera's look: white balance, vignetting, tone curve, noise, JPEG (uint8 RGB in, out)."""
    x = img.astype(np.float32) / 255.0
    lin = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    lin = lin * np.array([1.2, 1.0, 0.75], np.float32)
    h, w = lin.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2) / ((h / 2) ** 2 + (w / 2) ** 2)
    lin = lin * (1.0 - 0.4 * r2)[..., None]
    x = np.clip(lin, 0, 1) ** (1 / 2.0)  # flatter than sRGB
    x = x + rng.normal(0, 0.035, x.shape).astype(np.float32)
    out = (np.clip(x, 0, 1) * 255).round().astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", out[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 70])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].copy()


def real_frames(n: int, seed: int) -> dict:
    cfg = SceneConfig(
        height=SIZE,
        width=SIZE,
        texture_size=64,
        fixed_fx=REAL_FX,
        fixed_lens=REAL_LENS,
        structured_fraction=0.8,
        noise=False,
    )
    fr = scene_frames(n, seed=seed, config=cfg)
    rng = np.random.default_rng(seed)
    fr["image"] = np.stack([sensor_shift(im, rng) for im in fr["image"]])
    return fr


def evaluate(ckpt_path: Path, data: Path, split=None) -> dict:
    res = evaluate_estimator(Estimator.load(ckpt_path, device="cpu"), data, split=split, progress=False)
    o = res["overall"]
    return {k: round(o[k], 4) for k in ("abs_rel", "delta1", "coc_mae", "side_acc") if k in o} | {
        "images": res["images"]
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--frames", type=int, default=64, help="frames per bag")
    ap.add_argument("--synth-scenes", type=int, default=768)
    ap.add_argument("--base-steps", type=int, default=1500)
    ap.add_argument("--steps", type=int, default=400, help="steps of finetune / control / adapt")
    ap.add_argument("--seeds", default="0", help="seeds of the control / adapt / finetune runs")
    ap.add_argument("--domain-weight", type=float, default=0.3)
    a = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else {}

    def save():
        (out / "results.json").write_text(json.dumps(results, indent=2))

    # 1. bags of the "real" camera and their conversion
    bags = {
        "real_train_a": (101, True),
        "real_train_b": (102, True),
        "real_unlabeled": (103, False),
        "real_test": (104, True),
    }
    t = time.time()
    for name, (seed, labeled) in bags.items():
        if not (out / "bags" / name).exists():
            write_synthetic_bag(
                out / "bags" / name, real_frames(a.frames, seed), storage="mcap", fps=5.0, with_depth=labeled, seed=seed
            )
    results["bag_writing_s"] = results.get("bag_writing_s", round(time.time() - t, 1))
    lens = dict(focal_length_mm=REAL_LENS[0] * 1000, f_number=REAL_LENS[1], focus_distance_m=REAL_LENS[2])
    labeled = [out / "bags" / n for n in ("real_train_a", "real_train_b", "real_test")]
    if "convert" not in results:
        for workers in (0, 2):
            o = ConvertOptions(
                out=str(out / f"real_w{workers}"),
                split_by="bag",
                bag_split={"real_test": "test"},
                split_ratio=(1, 0, 0),
                workers=workers,
                progress=False,
                **lens,
            )
            status, man = convert_bags(labeled, o)
            assert status == 0
            results.setdefault("convert", {})[f"workers_{workers}"] = man["report"]
        status, man = convert_bags(
            [out / "bags" / "real_unlabeled"],
            ConvertOptions(
                out=str(out / "real_unlabeled"), mode="unlabeled", split_by="none", workers=0, progress=False, **lens
            ),
        )
        assert status == 0
        save()
    real, unlabeled = out / "real_w0", out / "real_unlabeled"
    # 2. synthetic shards (pre-rendered once: rendering dominates CPU training otherwise)
    synth = out / "synth"
    if not (synth / "manifest.json").is_file() or not json.loads((synth / "manifest.json").read_text())["complete"]:
        render_shards(
            synth,
            a.synth_scenes,
            seed=7,
            shard_size=64,
            config=SceneConfig(height=SIZE, width=SIZE, texture_size=64),
            progress=False,
        )
    synth_val = out / "synth_val"
    if not (synth_val / "manifest.json").is_file():
        render_shards(
            synth_val,
            64,
            seed=99,
            shard_size=64,
            config=SceneConfig(height=SIZE, width=SIZE, texture_size=64),
            progress=False,
        )

    def train(name, *extra):
        """A run (skipped when a previous call of this script finished it)."""
        run = out / "runs" / name
        steps = int(extra[extra.index("--steps") + 1])
        if not (run / "last.pt").is_file() or load_checkpoint(run / "last.pt")["step"] < steps:
            if run.exists():
                shutil.rmtree(run)
            t = time.time()
            assert cli(["train", "--out", str(run), *TINY, *extra]) == 0
            results.setdefault("train_seconds", {})[name] = round(time.time() - t, 1)
        return run / "last.pt"

    base = train(
        "base",
        "--data",
        str(synth),
        "--steps",
        str(a.base_steps),
        "--val-every",
        str(a.base_steps),
        "--val-scenes",
        "16",
        "--lr",
        "2e-3",
        "--warmup",
        "100",
    )
    evals = results.setdefault("eval", {})
    evals["base"] = {"real_test": evaluate(base, real, "test"), "synth": evaluate(base, synth_val)}
    save()
    common = [
        "--init",
        str(base),
        "--steps",
        str(a.steps),
        "--val-every",
        str(a.steps),
        "--val-scenes",
        "16",
        "--lr",
        "5e-4",
        "--warmup",
        "20",
    ]
    for seed in (int(s) for s in a.seeds.split(",")):
        s = ["--seed", str(seed)]
        runs = {
            f"finetune_s{seed}": train(f"finetune_s{seed}", "--data", str(real), "--split", "train", *common, *s),
            f"control_s{seed}": train(f"control_s{seed}", "--data", str(synth), *common, *s),
            f"adapt_s{seed}": train(
                f"adapt_s{seed}",
                "--data",
                str(synth),
                "--domain-data",
                str(unlabeled),
                "--domain-weight",
                str(a.domain_weight),
                *common,
                *s,
            ),
        }
        for name, ck in runs.items():
            evals[name] = {"real_test": evaluate(ck, real, "test"), "synth": evaluate(ck, synth_val)}
            save()
    # the last logged domain-classifier accuracy of the adaptation runs (0.5 = features aligned)
    for run in sorted((out / "runs").glob("adapt_s*")):
        recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        tr = [r for r in recs if r.get("kind") == "train" and "domain_acc" in r]
        results.setdefault("domain_acc_last", {})[run.name] = [round(r["domain_acc"], 3) for r in tr[-4:]]
    save()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
