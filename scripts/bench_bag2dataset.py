"""Benchmark ``bag2dataset``: frames/s converting VGA RGB-D bags (MCAP and sqlite3), in this process
and with worker processes, and in ``render`` mode.

The bags hold ``--frames`` frames of 640x480 rgb8 + 16UC1 depth + CameraInfo at 30 fps (a few
synthetic scenes repeated: the converter's cost does not depend on the content).

    OMP_NUM_THREADS=1 python scripts/bench_bag2dataset.py --out /tmp/bench_bags [--frames 300] [--workers 0,2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from depth_defocus_ros.bags.convert import ConvertOptions, convert_bags  # noqa: E402
from depth_defocus_ros.bags.synth import scene_frames, write_synthetic_bag  # noqa: E402
from depth_defocus_ros.scenes import SceneConfig  # noqa: E402


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--workers", default="0,2")
    ap.add_argument("--render-frames", type=int, default=8)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t = time.time()
    cfg = SceneConfig(height=480, width=640, texture_size=128, fixed_fx=600.0, fixed_lens=(0.035, 1.8, 1.2))
    fr = scene_frames(4, seed=1, config=cfg, batch=2)
    tiled = {k: v[np.arange(a.frames) % 4] for k, v in fr.items()}
    print(f"scenes rendered in {time.time() - t:.1f} s")
    lens = dict(focal_length_mm=35.0, f_number=1.8, focus_distance_m=1.2)
    res = {"frames": a.frames, "size": "640x480", "cpus": os.cpu_count(), "load_avg": os.getloadavg()}
    for storage in ("mcap", "sqlite3"):
        bag = out / f"vga_{storage}"
        if not bag.exists():
            write_synthetic_bag(bag, tiled, storage=storage, fps=30.0, invalid_fraction=0.02)
        res[f"bag_mb_{storage}"] = round(du(bag) / 1e6, 1)
        for w in (int(x) for x in a.workers.split(",")):
            ds = out / f"ds_{storage}_w{w}"
            shutil.rmtree(ds, ignore_errors=True)
            status, man = convert_bags([bag], ConvertOptions(out=str(ds), workers=w, progress=False, **lens))
            assert status == 0
            r = man["report"]
            res[f"{storage}_workers{w}"] = {"frames_per_s": r["frames_per_s"], "seconds": r["seconds"],
                                            "scan_s": r["scan_seconds"], "dataset_mb": round(du(ds) / 1e6, 1)}
            print(storage, w, res[f"{storage}_workers{w}"])
    # render mode: two focused images per all-in-focus frame
    bag = out / "vga_aif"
    if not bag.exists():
        write_synthetic_bag(bag, {k: v[: a.render_frames] for k, v in tiled.items()}, image="aif", fps=30.0)
    ds = out / "ds_render"
    shutil.rmtree(ds, ignore_errors=True)
    status, man = convert_bags([bag], ConvertOptions(out=str(ds), mode="render", renders=2, workers=0,
                                                     progress=False, split_by="none"))  # fmt: skip
    assert status == 0
    res["render_workers0"] = {"frames_per_s": man["report"]["frames_per_s"], "samples": man["samples"],
                              "seconds": man["report"]["seconds"]}  # fmt: skip
    print("render", res["render_workers0"])
    (out / "bench.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
