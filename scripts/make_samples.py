"""Render the bundled sample sequence (data/samples): structured synthetic scenes at 640x480 seen
by one fixed camera (35 mm lens on a full-frame sensor, f/1.8, focused at 1.2 m).

Writes ``frame_NNN.png`` (focused sRGB), ``frame_NNN_depth.png`` (ground-truth depth, uint16 mm)
and ``camera.yaml`` (lens settings and intrinsics). Usage: python scripts/make_samples.py [OUT]
"""

import sys
from pathlib import Path

import cv2
import numpy as np
import yaml

from depth_defocus_ros.scenes import SceneConfig, SceneGenerator

W, H = 640, 480
F_M, N, D_F = 0.035, 1.8, 1.2
FX = 35.0 / 36.0 * W


def main(out="data/samples", frames=4, seed=7):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = SceneConfig(height=H, width=W, structured_fraction=1.0, fixed_fx=FX, fixed_lens=(F_M, N, D_F),
                      jpeg_prob=0.0, max_depth_m=60.0)
    gen = SceneGenerator(cfg, seed=seed)
    for i in range(frames):
        b = gen.batch(1)
        img = (b["image"][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        cv2.imwrite(str(out / f"frame_{i:03d}.png"), img[:, :, ::-1])
        depth_mm = np.clip(b["depth"][0, 0].numpy() * 1000, 0, 65535).round().astype(np.uint16)
        cv2.imwrite(str(out / f"frame_{i:03d}_depth.png"), depth_mm)
        print(f"frame {i}: CoC max {float(b['defocus'].max()):.1f} px")
    cam = {
        "width": W, "height": H, "fx": FX, "fy": FX, "cx": W / 2, "cy": H / 2,
        "focal_length_mm": F_M * 1000, "f_number": N, "focus_distance_m": D_F,
        "frame_id": "camera_optical_frame", "rate_hz": 5.0,
        "note": "synthetic scenes rendered by scripts/make_samples.py; *_depth.png is ground truth (uint16 mm)",
    }
    (out / "camera.yaml").write_text(yaml.safe_dump(cam, sort_keys=False))


if __name__ == "__main__":
    main(*sys.argv[1:2])
