"""bag2dataset: bags written with rosbags (MCAP, sqlite3, ROS 1) from synthetic scenes with known depth.

Round trips bag -> dataset -> loader, pairing, registration and size checks, bad input, splits,
resuming an interrupted conversion, parallel conversion, render mode.
"""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_args import BAG_LENS

from depth_defocus_ros.bags import options as bag_options
from depth_defocus_ros.bags import write as bag_write
from depth_defocus_ros.bags.convert import ConvertOptions, convert_bags
from depth_defocus_ros.bags.synth import DEPTH_TOPIC, INFO_TOPIC, scene_frames, write_synthetic_bag
from depth_defocus_ros.learn.datasets import ShardDataset
from depth_defocus_ros.synth.scenes import SceneConfig
from depth_defocus_ros.synth.shards import FORMAT_VERSION, depth_metres

LENS = dict(focal_length_mm=35.0, f_number=2.0, focus_distance_m=1.0)
FX = 60.0


@pytest.fixture(scope="module")
def frames():
    cfg = SceneConfig(height=48, width=64, texture_size=64, fixed_fx=FX, fixed_lens=(0.035, 2.0, 1.0))
    return scene_frames(8, seed=3, config=cfg)


def tile(frames, n):
    """``n`` frames cycling through the drawn ones (long recordings without rendering more scenes)."""
    idx = np.arange(n) % len(frames["fx"])
    return {k: v[idx] for k, v in frames.items()}


def opts(out, **kw):
    base = dict(out=str(out), workers=0, progress=False, split_by="none", shard_size=3, **LENS)
    base.update(kw)
    return ConvertOptions(**base)


def load_all(root, split=None):
    """Every sample of a dataset, ordered by stamp: raw shard arrays and the loader's batches."""
    raw = {"image": [], "depth": [], "lens": [], "fx": [], "stamp_ns": [], "aif": []}
    names = json.loads((Path(root) / "manifest.json").read_text())["splits"][split] if split else None
    for p in sorted(Path(root).glob("shard_*.npz")):
        if names is not None and p.name not in names:
            continue
        with np.load(p) as z:
            for k in raw:
                if k in z.files:
                    raw[k].append(z[k])
            scale = float(z["depth_scale"])
    raw = {k: np.concatenate(v) for k, v in raw.items() if v}
    order = np.argsort(raw["stamp_ns"])
    raw = {k: v[order] for k, v in raw.items()}
    raw["depth_scale"] = scale
    return raw


def run_cli(*args, check=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "depth_defocus_ros", "bag2dataset", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    if check is not None:
        assert r.returncode == check, r.stdout[-3000:] + r.stderr[-3000:]
    return r


@pytest.mark.parametrize(
    "storage,depth_enc,rgb_enc",
    [
        ("mcap", "16UC1", "rgb8"),
        ("sqlite3", "32FC1", "bgr8"),
        ("ros1", "16UC1", "rgb8"),
        ("mcap", "16UC1", "png"),
    ],
)
def test_round_trip_bag_dataset_loader(tmp_path, frames, storage, depth_enc, rgb_enc):
    bag = tmp_path / ("rec.bag" if storage == "ros1" else "rec")
    gt = write_synthetic_bag(bag, frames, storage=storage, depth_encoding=depth_enc, rgb_encoding=rgb_enc)
    status, man = convert_bags([bag], opts(tmp_path / "ds"))
    assert status == 0
    assert man["samples"] == 8 and man["counts"]["paired"] == 8 and man["complete"]
    assert man["topics"] == {"rgb": gt["rgb_topic"], "depth": DEPTH_TOPIC, "camera_info": INFO_TOPIC}
    assert man["camera"]["fx"] == FX and man["camera"]["depth_encoding"] == depth_enc
    assert man["bags"][0]["kind"] in ("rosbag2", "ros1")
    assert man["format_version"] == FORMAT_VERSION == bag_options.FORMAT_VERSION
    raw = load_all(tmp_path / "ds")
    assert np.array_equal(raw["stamp_ns"], gt["stamps"])
    assert np.array_equal(raw["image"], gt["image"])  # lossless RGB (raw and PNG)
    if depth_enc == "16UC1":  # bit-exact millimetres
        assert raw["depth"].dtype == np.uint16 and np.array_equal(raw["depth"], gt["depth_raw"])
        assert raw["depth_scale"] == 0.001
    else:  # float metres, NaN kept
        assert raw["depth"].dtype == np.float32
        assert np.array_equal(raw["depth"], gt["depth_raw"], equal_nan=True)
    assert np.allclose(raw["lens"], [[0.035, 2.0, 1.0]] * 8) and np.all(raw["fx"] == FX)
    # the loader: same images, depths in metres, lens, fx; defocus from the optics
    ds = ShardDataset(tmp_path / "ds", batch_size=8, loop=False, augment=False)
    batches = list(ds)
    img = torch.cat([b["image"] for b in batches])
    dep = torch.cat([b["depth"] for b in batches])
    assert img.shape == (8, 3, 48, 64)
    got = list(range(8))  # loader order (loop=False) = shard order = stamp order here
    exp_img = torch.from_numpy(gt["image"]).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(img[got], exp_img)
    exp_d = torch.from_numpy(depth_metres(gt["depth_raw"], 0.001 if depth_enc == "16UC1" else None))[:, None]
    valid = torch.isfinite(exp_d) & (exp_d > 0)
    assert torch.equal(torch.cat([b["valid"] for b in batches]), valid)
    assert torch.equal(dep[valid], exp_d[valid]) and bool((dep[~valid] == 0).all())
    assert torch.allclose(torch.cat([b["lens"] for b in batches]), torch.tensor([[0.035, 2.0, 1.0]] * 8))
    assert bool((torch.cat([b["defocus"] for b in batches])[valid] >= 0).all())


def test_pairing_tolerance_counts_unmatched_and_never_mispairs(tmp_path, frames):
    gt = write_synthetic_bag(tmp_path / "b", frames, depth_offset_ns=5_000_000, drop_rgb={2}, drop_depth={5})
    status, man = convert_bags([tmp_path / "b"], opts(tmp_path / "ds", max_dt=0.01))
    c = man["counts"]
    assert status == 0 and c["paired"] == 6 and c["unmatched_rgb"] == 1 and c["unmatched_depth"] == 1
    raw = load_all(tmp_path / "ds")
    kept = [i for i in range(8) if i not in (2, 5)]
    assert np.array_equal(raw["stamp_ns"], gt["stamps"][kept])
    assert np.array_equal(raw["image"], gt["image"][kept]) and np.array_equal(raw["depth"], gt["depth_raw"][kept])
    # beyond the tolerance nothing pairs: a clear error and a non-zero exit
    status, man = convert_bags([tmp_path / "b"], opts(tmp_path / "ds2", max_dt=0.001))
    assert status == 2 and "no RGB frame has a depth frame within --max-dt" in man["bags"][0]["error"]


def test_depth_size_registration_and_lens_checks(tmp_path, frames):
    # registered depth at half resolution: RGB stored at the depth's size, fx halved
    write_synthetic_bag(tmp_path / "half", frames, depth_size=(32, 24))
    status, man = convert_bags([tmp_path / "half"], opts(tmp_path / "ds"))
    raw = load_all(tmp_path / "ds")
    assert status == 0 and raw["image"].shape == (8, 24, 32, 3) and np.all(raw["fx"] == FX / 2)
    # CameraInfo calibrated at twice the image size: fx scaled to the image
    write_synthetic_bag(tmp_path / "info2x", frames, info_size=(128, 96))
    status, man = convert_bags([tmp_path / "info2x"], opts(tmp_path / "ds2", long_side=32))
    raw = load_all(tmp_path / "ds2")
    assert status == 0 and raw["image"].shape == (8, 24, 32, 3) and np.allclose(raw["fx"], FX / 2)
    # another aspect ratio, another frame_id, no lens: refused, naming the bag and the problem
    write_synthetic_bag(tmp_path / "aspect", frames, depth_size=(64, 64))
    write_synthetic_bag(tmp_path / "unreg", frames, depth_frame_id="camera_depth_optical_frame")
    for bag, o, msg in [
        ("aspect", opts(tmp_path / "x1"), "mismatched sizes"),
        ("unreg", opts(tmp_path / "x2"), "not registered to the RGB frames"),
        ("half", opts(tmp_path / "x3", focal_length_mm=None), "no lens settings"),
    ]:
        status, man = convert_bags([tmp_path / bag], o)
        assert status == 2 and man["bags"][0]["error"].startswith(bag + ": ") and msg in man["bags"][0]["error"]
    status, _ = convert_bags([tmp_path / "unreg"], opts(tmp_path / "x4", assume_registered=True))
    assert status == 0
    # lens from a YAML file with a per-bag entry, and from lens.yaml inside the bag
    (tmp_path / "lens.yaml").write_text(
        "focal_length_mm: 50\nf_number: 4\nfocus_distance_m: 2\nbags:\n  half: {focus_distance_m: 3.5}\n"
    )
    status, man = convert_bags(
        [tmp_path / "half"],
        opts(
            tmp_path / "y",
            focal_length_mm=None,
            f_number=None,
            focus_distance_m=None,
            lens_file=str(tmp_path / "lens.yaml"),
        ),
    )
    assert status == 0 and man["bags"][0]["lens"] == {"focal_length_m": 0.05, "f_number": 4.0, "focus_distance_m": 3.5}
    (tmp_path / "half" / "lens.yaml").write_text("focal_length_mm: 25\nf_number: 1.4\nfocus_distance_m: 0.8\n")
    status, man = convert_bags(
        [tmp_path / "half"], opts(tmp_path / "z", focal_length_mm=None, f_number=None, focus_distance_m=None)
    )
    assert status == 0 and np.allclose(load_all(tmp_path / "z")["lens"][0], [0.025, 1.4, 0.8])


def _custom_bag(path, topics):
    """A rosbag2 (MCAP) with hand-made messages: topics = [(topic, msgtype, [(stamp_ns, msg)])]."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as wr:
        for topic, typ, msgs in topics:
            c = wr.add_connection(topic, typ, typestore=ts)
            for t, m in msgs:
                wr.write(c, t, ts.serialize_cdr(m(ts), typ))


def _hdr(ts, t, frame="cam"):
    T = ts.types["builtin_interfaces/msg/Time"]
    return ts.types["std_msgs/msg/Header"](stamp=T(sec=t // 10**9, nanosec=t % 10**9), frame_id=frame)


def _img(enc, h=4, w=6, bpp=3):
    return lambda ts, t=0: ts.types["sensor_msgs/msg/Image"](
        header=_hdr(ts, t),
        height=h,
        width=w,
        encoding=enc,
        is_bigendian=0,
        step=w * bpp,
        data=np.zeros(h * w * bpp, np.uint8),
    )


def test_topic_detection_and_bad_encodings(tmp_path):
    comp_depth = lambda ts: ts.types["sensor_msgs/msg/CompressedImage"](  # noqa: E731
        header=_hdr(ts, 0), format="16UC1; compressedDepth png", data=np.zeros(20, np.uint8)
    )
    cases = {
        "two_rgb": (
            [
                ("/a/image_raw", "sensor_msgs/msg/Image", [(1, _img("rgb8"))]),
                ("/b/image_raw", "sensor_msgs/msg/Image", [(1, _img("rgb8"))]),
            ],
            "several RGB image topics",
        ),
        "no_depth": ([("/cam/image_raw", "sensor_msgs/msg/Image", [(1, _img("rgb8"))])], "no depth topic found"),
        "comp_depth": (
            [
                ("/cam/color/image_raw", "sensor_msgs/msg/Image", [(1, _img("rgb8"))]),
                ("/cam/depth/image_raw/compressedDepth", "sensor_msgs/msg/CompressedImage", [(1, comp_depth)]),
            ],
            "compressedDepth",
        ),
        "bad_enc": (
            [
                ("/cam/color/image_raw", "sensor_msgs/msg/Image", [(1, _img("bayer_grbg8", bpp=1))]),
                ("/cam/depth/image_raw", "sensor_msgs/msg/Image", [(1, _img("16UC1", bpp=2))]),
            ],
            "unsupported image encoding 'bayer_grbg8'",
        ),
        "bad_depth_enc": (
            [
                ("/cam/color/image_raw", "sensor_msgs/msg/Image", [(1, _img("rgb8"))]),
                ("/cam/depth/image_raw", "sensor_msgs/msg/Image", [(1, _img("8UC1", bpp=1))]),
            ],
            "unknown depth encoding '8UC1'",
        ),
        "no_info": (
            [
                ("/cam/color/image_raw", "sensor_msgs/msg/Image", [(1, _img("rgb8"))]),
                ("/cam/depth/image_raw", "sensor_msgs/msg/Image", [(1, _img("16UC1", bpp=2))]),
            ],
            "no CameraInfo topic",
        ),
    }
    for name, (topics, msg) in cases.items():
        _custom_bag(tmp_path / name, topics)
        status, man = convert_bags([tmp_path / name], opts(tmp_path / f"ds_{name}"))
        err = man["bags"][0]["error"] or ""
        assert status == 2 and err.startswith(name + ": ") and msg in err, (name, err)
    # a named topic that is not there: the message lists what the bag has
    status, man = convert_bags([tmp_path / "two_rgb"], opts(tmp_path / "ds_x", rgb_topic="/nope"))
    assert status == 2 and "no topic '/nope'" in man["bags"][0]["error"] and "/a/image_raw" in man["bags"][0]["error"]


def test_truncated_and_corrupt_bags(tmp_path, frames):
    good = tmp_path / "good"
    write_synthetic_bag(good, frames)
    bad = {}
    for storage in ("mcap", "sqlite3"):
        p = tmp_path / f"trunc_{storage}"
        write_synthetic_bag(p, frames, storage=storage)
        f = next(p.glob("*.mcap")) if storage == "mcap" else next(p.glob("*.db3"))
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
        bad[p.name] = "truncated" if storage == "mcap" else "corrupt"
    write_synthetic_bag(tmp_path / "trunc.bag", frames, storage="ros1")
    data = (tmp_path / "trunc.bag").read_bytes()
    (tmp_path / "trunc.bag").write_bytes(data[: len(data) // 2])
    bad["trunc.bag"] = "cannot open bag"
    (tmp_path / "junk.mcap").write_bytes(os.urandom(2000))
    bad["junk.mcap"] = "cannot open bag"
    (tmp_path / "empty").mkdir()
    bad["empty"] = "not a bag"
    bad["missing"] = "no such file"
    # only bad bags: nothing useful, exit 2, every bag named with its problem
    lens = BAG_LENS
    r = run_cli(*[tmp_path / n for n in bad], "--out", tmp_path / "ds", *lens, "--quiet", "--workers", "0", check=2)
    for n, msg in bad.items():
        line = next((x for x in r.stdout.splitlines() if x.strip().startswith(n + ":")), "")
        assert "ERROR" in line and msg in line, (n, r.stdout)
    assert "Traceback" not in r.stderr
    # with a good bag: its data is written, exit 1 names the failures
    status, man = convert_bags([good, tmp_path / "trunc_mcap"], opts(tmp_path / "ds2"))
    assert status == 1 and man["samples"] == 8 and not man["complete"]
    assert np.array_equal(load_all(tmp_path / "ds2")["image"], frames["image"])


def test_metadata_less_recording_is_read_from_its_storage_file(tmp_path, frames):
    write_synthetic_bag(tmp_path / "crashed", frames, storage="sqlite3")
    (tmp_path / "crashed" / "metadata.yaml").unlink()
    status, man = convert_bags([tmp_path / "crashed"], opts(tmp_path / "ds"))
    assert status == 0 and man["samples"] == 8
    assert any("no metadata.yaml" in w for w in man["bags"][0]["warnings"])


def test_time_block_splits_keep_test_away_from_train(tmp_path, frames):
    fr = tile(frames, 120)  # 12 s at 10 fps
    write_synthetic_bag(tmp_path / "long", fr)
    o = opts(tmp_path / "ds", split_by="time", block_s=1.0, guard_s=0.25, split_ratio=(0.6, 0.2, 0.2), shard_size=4)
    status, man = convert_bags([tmp_path / "long"], o)
    assert status == 0 and set(man["splits"]) == {"train", "val", "test"}
    st = {s: load_all(tmp_path / "ds", s)["stamp_ns"] for s in man["splits"]}
    assert sum(len(v) for v in st.values()) == man["samples"] == 120 - man["counts"]["split_guard"]
    for a in st:
        for b in st:
            if a != b:  # frames of different splits are never temporal neighbours
                gap = np.abs(st[a][:, None] - st[b][None, :]).min() / 1e9
                assert gap >= 0.25, (a, b, gap)
    # every shard holds one split; the loader reads a split
    for split, names in man["splits"].items():
        for n in names:
            with np.load(tmp_path / "ds" / n) as z:
                assert json.loads(str(z["meta"]))["split"] == split
    test = ShardDataset(tmp_path / "ds", 4, split="test", loop=False)
    assert sum(b["image"].shape[0] for b in test) == len(st["test"])
    # the same options give the same splits (seeded), another seed others
    status, man2 = convert_bags([tmp_path / "long"], ConvertOptions(**{**o.__dict__, "out": str(tmp_path / "ds2")}))
    assert man2["splits"] == man["splits"]


def test_split_by_bag_and_subsampling(tmp_path, frames):
    for i in range(3):
        write_synthetic_bag(tmp_path / f"r{i}", frames)
    status, man = convert_bags(
        [tmp_path / f"r{i}" for i in range(3)],
        opts(tmp_path / "ds", split_by="bag", bag_split={"r2": "test"}, split_ratio=(1, 1, 0), every=2),
    )
    assert status == 0
    by_bag = {b["name"]: b["splits"] for b in man["bags"]}
    assert by_bag["r2"] == {"test": 4} and {tuple(by_bag[n]) for n in ("r0", "r1")} == {("train",), ("val",)}
    assert man["counts"]["subsampled_out"] == 12
    status, man = convert_bags([tmp_path / "r0"], opts(tmp_path / "ds2", min_gap=0.25))
    assert man["samples"] == 3  # 0, 0.3, 0.6 s of 0..0.7 s


def _same_dataset(a, b):
    ma, mb = (json.loads((Path(x) / "manifest.json").read_text()) for x in (a, b))
    assert ma["splits"] == mb["splits"] and ma["shards"] == mb["shards"] and ma["samples"] == mb["samples"]
    assert ma["counts"] == mb["counts"]
    for n in ma["shards"]:
        with np.load(Path(a) / n) as za, np.load(Path(b) / n) as zb:
            assert za.files == zb.files
            for k in za.files:
                assert np.array_equal(za[k], zb[k]), (n, k)


def test_interrupted_and_disk_full_conversions_resume_to_the_same_dataset(tmp_path, frames, monkeypatch):
    bags = [tmp_path / "a", tmp_path / "b"]
    write_synthetic_bag(bags[0], frames, storage="mcap")
    write_synthetic_bag(bags[1], frames, storage="sqlite3", t0_ns=1_800_000_000_000_000_000)
    split = dict(split_by="time", block_s=0.3, guard_s=0.0)
    assert convert_bags(bags, opts(tmp_path / "ref", **split))[0] == 0
    real = bag_write.write_shard

    def failing(after, exc):
        calls = {"n": 0}

        def write(path, **kw):
            calls["n"] += 1
            if calls["n"] > after:
                if isinstance(exc, OSError):  # a real half-written file first, as a full disk leaves it
                    Path(str(path) + ".partial").write_bytes(b"half")
                    os.unlink(str(path) + ".partial")
                raise exc
            real(path, **kw)

        return write

    # Ctrl-C in the middle of the third shard
    monkeypatch.setattr(bag_write, "write_shard", failing(2, KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        convert_bags(bags, opts(tmp_path / "int", **split))
    assert len(list((tmp_path / "int").glob("shard_*.npz"))) == 2
    assert not json.loads((tmp_path / "int" / "manifest.json").read_text())["complete"]
    (tmp_path / "int" / "shard_b001_00000.npz.partial").write_bytes(b"left by a crash")
    # the disk fills up at the fifth shard
    monkeypatch.setattr(bag_write, "write_shard", failing(2, OSError(errno.ENOSPC, "No space left on device")))
    status, man = convert_bags(bags, opts(tmp_path / "int", **split))
    assert status in (1, 2) and "disk full" in " ".join(str(b["error"]) for b in man["bags"])
    assert "re-run the same command" in " ".join(str(b["error"]) for b in man["bags"])
    assert len(list((tmp_path / "int").glob("shard_*.npz"))) >= 4 and not list((tmp_path / "int").glob("*.partial"))
    # other options are refused rather than mixed into the dataset
    monkeypatch.setattr(bag_write, "write_shard", real)
    with pytest.raises(bag_options.ConvertError, match="other options"):
        convert_bags(bags, opts(tmp_path / "int", **{**split, "every": 2}))
    status, man = convert_bags(bags, opts(tmp_path / "int", **split))
    assert status == 0 and man["complete"]
    _same_dataset(tmp_path / "ref", tmp_path / "int")


def test_parallel_conversion_with_progress_equals_serial(tmp_path, frames):
    bags = []
    for i, storage in enumerate(("mcap", "sqlite3", "ros1")):
        bags.append(tmp_path / (f"p{i}.bag" if storage == "ros1" else f"p{i}"))
        write_synthetic_bag(bags[-1], tile(frames, 16), storage=storage)
    assert convert_bags(bags, opts(tmp_path / "serial", split_by="time", block_s=0.4))[0] == 0
    r = run_cli(
        *bags,
        "--out",
        tmp_path / "par",
        "--workers",
        "2",
        "--split-by",
        "time",
        "--block-s",
        "0.4",
        "--shard-size",
        "3",
        *BAG_LENS,
        check=0,
    )
    assert "frames/s" in r.stdout and "convert" in r.stderr  # report and progress bar
    _same_dataset(tmp_path / "serial", tmp_path / "par")
    status, man = convert_bags(bags, opts(tmp_path / "par", split_by="time", block_s=0.4))
    assert status == 0 and man["report"]["frames_this_run"] == 0  # nothing left to do


def test_render_mode_from_all_in_focus_frames(tmp_path, frames):
    from depth_defocus_ros.optics import Lens, signed_defocus_px
    from depth_defocus_ros.synth.render import linear_to_srgb, render_defocus, srgb_to_linear

    gt = write_synthetic_bag(tmp_path / "aif", frames, image="aif", depth_encoding="32FC1", invalid_fraction=0.0)
    o = opts(
        tmp_path / "ds",
        mode="render",
        renders=2,
        focal_length_mm=50.0,
        f_number=None,
        focus_distance_m=None,
        f_number_range=(1.4, 2.8),
    )
    status, man = convert_bags([tmp_path / "aif"], o)
    assert status == 0 and man["samples"] == 16 and man["lens"]["renders_per_frame"] == 2
    raw = load_all(tmp_path / "ds")
    assert np.array_equal(raw["aif"][::2], gt["image"]) and np.array_equal(raw["aif"][1::2], gt["image"])
    assert np.all(raw["lens"][:, 0] == np.float32(0.05)) and np.all(raw["lens"][:, 1] >= 1.4 - 1e-6)
    assert not np.array_equal(raw["image"], raw["aif"])  # blurred
    # sample 0 is exactly the package renderer applied to the all-in-focus frame at its lens
    lens = Lens(*[float(v) for v in raw["lens"][0]])
    d = torch.from_numpy(raw["depth"][0].astype(np.float32))
    sd = signed_defocus_px(d, lens, float(raw["fx"][0]))
    img = srgb_to_linear(torch.from_numpy(raw["aif"][0]).permute(2, 0, 1).float()[None] / 255)
    exp = (linear_to_srgb(render_defocus(img, sd[None, None].float()))[0].permute(1, 2, 0) * 255).round()
    assert np.abs(exp.numpy() - raw["image"][0].astype(np.float32)).max() <= 1.0
    # the converted dataset re-renders identically (seeded per frame)
    status, man2 = convert_bags([tmp_path / "aif"], ConvertOptions(**{**o.__dict__, "out": str(tmp_path / "ds2")}))
    _same_dataset(tmp_path / "ds", tmp_path / "ds2")


def test_unlabeled_mode_needs_no_depth(tmp_path, frames):
    write_synthetic_bag(tmp_path / "nodepth", frames, with_depth=False, rgb_encoding="jpeg")
    status, man = convert_bags([tmp_path / "nodepth"], opts(tmp_path / "ds", mode="unlabeled"))
    assert status == 0 and man["samples"] == 8 and man["labeled"] is False
    bs = list(ShardDataset(tmp_path / "ds", 8, loop=False))
    assert sum(b["image"].shape[0] for b in bs) == 8 and not any(bool(b["valid"].any()) for b in bs)
