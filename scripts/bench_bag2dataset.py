"""Benchmark ``bag2dataset``: frames/s and bytes per frame converting VGA RGB-D bags (MCAP and
sqlite3), for each shard compression (all lossless), in this process and with worker processes, and
in ``render`` mode.

The bags hold ``--frames`` frames of 640x480 rgb8 + 16UC1 depth + CameraInfo at 30 fps: the real
Middlebury Motorcycle photograph re-focused at four lens settings, with sensor noise (compression
depends on the content: a real photograph with noise, not a smooth synthetic scene).

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
from depth_defocus_ros.bags.synth import write_synthetic_bag  # noqa: E402
from depth_defocus_ros.evaluation.realbench import CASES, FULL_WIDTH, render_case  # noqa: E402
from depth_defocus_ros.synth.shards import COMPRESSIONS  # noqa: E402


def photo_frames(n_lenses: int = 4) -> dict:
    """640x480 frames of the re-focused Motorcycle photograph: image (focused, with noise), depth
    (m, 0 = unknown), fx."""
    import cv2

    frames = {"image": [], "aif": [], "depth": [], "fx": [], "lens": []}
    for case in [c for c in CASES if c.width == FULL_WIDTH and c.degraded][:n_lenses]:
        r = render_case(case)
        img = cv2.resize(r["image"], (640, 480), interpolation=cv2.INTER_AREA)
        depth = cv2.resize(np.nan_to_num(r["depth"], nan=0.0), (640, 480), interpolation=cv2.INTER_NEAREST)
        frames["image"].append(img)
        frames["aif"].append(img)
        frames["depth"].append(depth.astype(np.float32))
        frames["fx"].append(float(r["fx"]) * 640 / FULL_WIDTH)
        frames["lens"].append(r["lens"].astype(np.float32))
    return {k: np.stack(v) for k, v in frames.items()}


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
    fr = photo_frames()
    tiled = {k: v[np.arange(a.frames) % len(v)] for k, v in fr.items()}
    print(f"scenes rendered in {time.time() - t:.1f} s")
    lens = dict(focal_length_mm=35.0, f_number=1.8, focus_distance_m=1.2)
    res = {"frames": a.frames, "size": "640x480", "cpus": os.cpu_count(), "load_avg": os.getloadavg()}
    for storage in ("mcap", "sqlite3"):
        bag = out / f"vga_{storage}"
        if not bag.exists():
            write_synthetic_bag(bag, tiled, storage=storage, fps=30.0, invalid_fraction=0.02)
        res[f"bag_mb_{storage}"] = round(du(bag) / 1e6, 1)
        for comp in COMPRESSIONS:
            for w in (int(x) for x in a.workers.split(",")):
                ds = out / f"ds_{storage}_{comp}_w{w}"
                shutil.rmtree(ds, ignore_errors=True)
                opts = ConvertOptions(out=str(ds), workers=w, progress=False, compress=comp, **lens)
                status, man = convert_bags([bag], opts)
                assert status == 0
                r = man["report"]
                key = f"{storage}_{comp}_workers{w}"
                res[key] = {
                    "frames_per_s": r["frames_per_s"],
                    "seconds": r["seconds"],
                    "scan_s": r["scan_seconds"],
                    "bytes_per_frame": round(du(ds) / a.frames),
                }
                print(
                    f"{storage:8s} {comp:9s} workers {w}: {r['frames_per_s']:7.1f} frames/s, "
                    f"{res[key]['bytes_per_frame'] / 1e6:.3f} MB/frame",
                    flush=True,
                )
                shutil.rmtree(ds, ignore_errors=True)
    # render mode: two focused images per all-in-focus frame
    bag = out / "vga_aif"
    if not bag.exists():
        write_synthetic_bag(bag, {k: v[: a.render_frames] for k, v in tiled.items()}, image="aif", fps=30.0)
    ds = out / "ds_render"
    shutil.rmtree(ds, ignore_errors=True)
    status, man = convert_bags(
        [bag], ConvertOptions(out=str(ds), mode="render", renders=2, workers=0, progress=False, split_by="none")
    )
    assert status == 0
    res["render_workers0"] = {
        "frames_per_s": man["report"]["frames_per_s"],
        "samples": man["samples"],
        "seconds": man["report"]["seconds"],
    }
    print("render", res["render_workers0"])
    (out / "bench.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
