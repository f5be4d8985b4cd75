"""Training: a few steps on the synthetic stream and on shards, resume, and DDP (torchrun, gloo)."""

import json
import os
import subprocess
import sys

import pytest
import torch
from cli_args import TINY_TRAIN

from depth_defocus_ros.model.checkpoint import load_checkpoint
from depth_defocus_ros.synth.scenes import SceneConfig, render_shards

TINY = [*TINY_TRAIN, "--visible-blur-fraction", "1.0", "--lr", "1e-3"]


def train(out, *extra, cwd=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "depth_defocus_ros", "train", "--out", str(out), *TINY, *extra],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=cwd,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_train_resume_and_outputs(tmp_path):
    out = tmp_path / "run"
    train(out, "--steps", "3", "--val-every", "3")
    for f in ("args.json", "last.pt", "best.pt", "metrics.jsonl", "loss.png", "samples.png"):
        assert (out / f).is_file(), f
    ck = load_checkpoint(out / "last.pt")
    assert ck["step"] == 3 and "optimizer" in ck and ck["process_long_side"] == 64
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert any(r["kind"] == "val" and "val_side_acc" in r for r in recs)
    assert all(r["loss"] == r["loss"] for r in recs if r["kind"] == "train")  # no NaN
    r = train(out, "--steps", "5", "--val-every", "5", "--resume")
    assert "resumed from" in r.stdout + r.stderr
    assert load_checkpoint(out / "last.pt")["step"] == 5
    # the released checkpoint (best.pt) carries no optimizer state
    assert "optimizer" not in load_checkpoint(out / "best.pt")


def test_train_on_shards_and_finetune(tmp_path):
    data = render_shards(
        tmp_path / "data",
        6,
        seed=1,
        shard_size=3,
        config=SceneConfig(height=64, width=64, texture_size=64),
        progress=False,
    )
    assert json.loads((data / "manifest.json").read_text())["complete"]
    train(tmp_path / "a", "--steps", "2", "--val-every", "2", "--data", str(data))
    train(
        tmp_path / "b",
        "--steps",
        "2",
        "--val-every",
        "2",
        "--data",
        str(data),
        "--data",
        "synthetic",
        "--init",
        str(tmp_path / "a" / "best.pt"),
        "--crop",
        "32x48",
    )


@pytest.mark.slow
def test_ddp_two_processes_end_with_identical_weights(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "depth_defocus_ros",
        "train",
        "--out",
        str(out),
        *TINY,
        "--steps",
        "3",
        "--val-every",
        "100",
        "--device",
        "cpu",
    ]
    # rank 0 also saves its weights at the end; each rank dumps its own for the comparison
    env["DEPTH_DEFOCUS_DUMP_RANK_WEIGHTS"] = str(tmp_path)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    # and the ranks did train (weights moved away from the common initialisation)
    init = torch.load(tmp_path / "rank0_init.pt", weights_only=True)
    assert any(not torch.equal(init[k], w0[k]) for k in w0)


def test_loss_weights_option_parses_and_refuses_unknown_terms():
    import argparse

    from depth_defocus_ros.learn.losses import LossWeights
    from depth_defocus_ros.learn.train_args import _loss_weights

    w = LossWeights(**_loss_weights("side=0.5,depth=0"))
    assert (w.side, w.depth, w.coc) == (0.5, 0.0, 1.0)
    with pytest.raises(argparse.ArgumentTypeError, match="unknown loss term 'blur'"):
        _loss_weights("blur=1")
    with pytest.raises(argparse.ArgumentTypeError, match="not TERM=NUMBER"):
        _loss_weights("coc=x")
