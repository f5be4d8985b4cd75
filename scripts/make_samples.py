"""Make the bundled sample sequence (data/samples): the Middlebury 2014 "Motorcycle" left view with
its measured depth (scikit-image's copy, see depth_defocus_ros/evaluation/realbench.py), re-focused by the
package's renderer at four lens settings, at the shipped width (741x500 px), with sensor noise + JPEG.

A real photograph with measured depth, not training data (the benchmark is never trained on).
Writes ``frame_NNN.png`` (focused sRGB), ``frame_NNN_depth.png`` (measured depth, uint16 mm, 0 =
unknown) and ``camera.yaml`` (intrinsics, and the lens settings of each frame).
Usage: python scripts/make_samples.py [OUT] (default data/samples)
"""

import argparse
from pathlib import Path

import cv2
import numpy as np
import yaml

from depth_defocus_ros.evaluation.realbench import FULL_WIDTH, MOTORCYCLE, RealCase, motorcycle_scene, render_case

# (focal length mm, f-number, focus distance m): focused beyond the scene (everything in front of
# the focus plane), far beyond it, inside it, and in front of it (everything behind)
LENSES = ((85.0, 2.8, 6.0), (70.0, 1.8, 10.0), (50.0, 1.4, 3.2), (35.0, 1.4, 2.0))


def main(out="data/samples"):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scene = motorcycle_scene()
    frames = []
    for i, (f_mm, n, d_f) in enumerate(LENSES):
        r = render_case(RealCase(f_mm, n, d_f, FULL_WIDTH, degraded=True), scene)
        cv2.imwrite(str(out / f"frame_{i:03d}.png"), r["image"][:, :, ::-1])
        depth_mm = np.where(np.isfinite(r["depth"]), np.round(r["depth"] * 1000), 0).astype(np.uint16)
        cv2.imwrite(str(out / f"frame_{i:03d}_depth.png"), depth_mm)
        frames.append({"focal_length_mm": f_mm, "f_number": n, "focus_distance_m": d_f})
        print(f"frame {i}: {f_mm:g} mm f/{n:g} focused at {d_f:g} m, CoC up to {np.nanmax(r['coc']):.1f} px")
    h, w = r["image"].shape[:2]
    scale = w / 741
    cam = {
        "width": w,
        "height": h,
        "fx": float(r["fx"]),
        "fy": float(r["fx"]),
        "cx": MOTORCYCLE["cx"] * scale,
        "cy": MOTORCYCLE["cy"] * scale,
        "frame_id": "camera_optical_frame",
        "rate_hz": 2.0,
        "frames": frames,
        "note": "Middlebury 2014 Motorcycle (left view, measured depth) re-focused by scripts/make_samples.py; "
        "*_depth.png is the measured depth (uint16 mm, 0 = unknown)",
    }
    (out / "camera.yaml").write_text(yaml.safe_dump(cam, sort_keys=False))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default="data/samples", help="output folder (default data/samples)")
    main(ap.parse_args().out)
