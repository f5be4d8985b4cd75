"""End to end on bags made here: convert -> fine-tune (alone and mixed with synthetic) -> eval on the test split."""

import json

import numpy as np
import pytest
from cli_args import BAG_LENS
from tiny_checkpoint import make_tiny_checkpoint

from depth_defocus_ros.bags.synth import scene_frames, write_synthetic_bag
from depth_defocus_ros.cli import main
from depth_defocus_ros.model.checkpoint import load_checkpoint
from depth_defocus_ros.synth.scenes import SceneConfig


def test_bags_to_dataset_to_finetune_to_eval(tmp_path, capsys):
    def cli(*args):  # the CLI in this process (the subprocess path is covered in test_bag2dataset / test_train)
        capsys.readouterr()
        assert main([str(a) for a in args]) == 0
        return capsys.readouterr()

    cfg = SceneConfig(height=48, width=64, texture_size=64, fixed_fx=60.0, fixed_lens=(0.035, 2.0, 1.0))
    fr = scene_frames(8, seed=7, config=cfg)
    tiled = {k: v[np.arange(24) % 8] for k, v in fr.items()}
    write_synthetic_bag(tmp_path / "run1", tiled, storage="mcap")
    write_synthetic_bag(tmp_path / "run2", tiled, storage="sqlite3", depth_encoding="32FC1")
    ds = tmp_path / "ds"
    r = cli(
        "bag2dataset",
        tmp_path / "run1",
        tmp_path / "run2",
        "--out",
        ds,
        *BAG_LENS,
        "--block-s",
        "0.5",
        "--guard-s",
        "0.1",
        "--shard-size",
        "4",
        "--workers",
        "0",
        "--quiet",
    )
    man = json.loads((ds / "manifest.json").read_text())
    assert set(man["splits"]) == {"train", "val", "test"} and "frames/s" in r.out
    init = make_tiny_checkpoint(tmp_path / "tiny.pt", long_side=96)
    common = ["--steps", "2", "--val-every", "2", "--batch-size", "2", "--log-every", "1", "--crop", "32x32"]
    # fine-tune on the real training split, validating on its val split
    cli(
        "train",
        "--out",
        tmp_path / "ft",
        "--data",
        ds,
        "--split",
        "train",
        "--init",
        init,
        "--val-data",
        ds,
        "--val-split",
        "val",
        *common,
    )
    ck = load_checkpoint(tmp_path / "ft" / "best.pt")
    tiny = load_checkpoint(init)
    assert ck["model_config"] == tiny["model_config"] and ck["process_long_side"] == 96  # the --init network
    assert ck["train_args"]["channels"] == "8,8,16,16,16"
    # mixed with the synthetic stream
    cli(
        "train",
        "--out",
        tmp_path / "mix",
        "--data",
        ds,
        "--data",
        "synthetic",
        "--split",
        "train",
        "--init",
        tmp_path / "ft" / "best.pt",
        "--height",
        "64",
        "--width",
        "64",
        "--val-scenes",
        "2",
        *common,
    )
    # eval on the test split
    r = cli(
        "eval",
        "--model",
        tmp_path / "mix" / "best.pt",
        "--data",
        ds,
        "--split",
        "test",
        "--out",
        tmp_path / "eval.json",
        "--plot",
        tmp_path / "sparsification.png",  # the read-vs-true plot goes next to it, not into the repo
        "--device",
        "cpu",
        "--max-relative-error",
        "1e9",
    )  # all published
    res = json.loads((tmp_path / "eval.json").read_text())["sets"][str(ds)]
    assert res["images"] == man["split_samples"]["test"] and "side_acc" in res["overall"] and "AbsRel" in r.out
    shares = [v["share"] for v in res["side_by_confidence"].values()]  # the side's reliability table
    assert sum(shares) == pytest.approx(1.0) and "by the model's side confidence" in r.out
    assert list(tmp_path.glob("*_read_vs_true.png")), "the read-vs-true plot is written next to --plot"
