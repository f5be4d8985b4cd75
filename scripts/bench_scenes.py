"""Benchmark synthetic scene generation: scenes/s (ray casting + texturing + occlusion-aware
rendering + noise/JPEG) at the training resolution, on the CPU and, if present, with rendering on
the GPU.

Usage: python scripts/bench_scenes.py [--batch 16] [--batches 3] [--size 256x192]
"""

import argparse
import time

import torch

from depth_defocus_ros.synth.scenes import SceneConfig, SceneGenerator


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--size", default="256x192")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    for dev in devices:
        gen = SceneGenerator(SceneConfig(height=h, width=w), seed=0, device=dev)
        gen.batch(2)  # warm-up (texture pool, kernels)
        t = time.perf_counter()
        for _ in range(args.batches):
            gen.batch(args.batch)
        dt = time.perf_counter() - t
        n = args.batch * args.batches
        print(f"{dev}: {n} scenes at {w}x{h} in {dt:.1f} s = {n / dt:.1f} scenes/s")


if __name__ == "__main__":
    main()
