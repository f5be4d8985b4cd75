"""Benchmark ``Estimator.predict``: throughput (frames/s) and latency at a given input size.

Prints one line per configuration: device, precision, input size, processing size, mean / p50 /
p95 latency (ms) and frames/s. CPU always; on a CUDA machine also fp32 and fp16.

Usage: python scripts/bench_predict.py [--model PATH] [--size 640x480] [--frames 20]
"""

import argparse
import time

import numpy as np
import torch

from depth_defocus_ros.estimator import Estimator
from depth_defocus_ros.optics import Lens


def bench(est: Estimator, rgb, frames: int, warmup: int = 3) -> dict:
    lens = Lens.from_mm(35.0, 1.8, 1.5)
    fx = 0.97 * rgb.shape[1]
    for _ in range(warmup):
        est.predict(rgb, lens, fx)
    times = []
    for _ in range(frames):
        if est.device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        est.predict(rgb, lens, fx)  # returns numpy arrays: includes the device -> host copy
        times.append(time.perf_counter() - t)
    ms = np.array(times) * 1000
    return {"mean_ms": ms.mean(), "p50_ms": np.percentile(ms, 50), "p95_ms": np.percentile(ms, 95),
            "fps": 1000.0 / ms.mean()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--size", default="640x480", help="input WxH, comma-separated for several")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--process-long-side", type=int, default=None, help="override the checkpoint's")
    args = ap.parse_args()
    configs = [("cpu", False)]
    if torch.cuda.is_available():
        configs += [("cuda", False), ("cuda", True)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"))
    for size in args.size.split(","):
        w, h = (int(v) for v in size.split("x"))
        rgb = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
        for dev, half in configs:
            est = Estimator.load(args.model, device=dev, half=half)
            if args.process_long_side:
                est.long_side = args.process_long_side
            r = bench(est, rgb, args.frames)
            proc = f"{round(w * est.long_side / max(w, h))}x{round(h * est.long_side / max(w, h))}"
            print(f"{dev:4s} {'fp16' if half else 'fp32'} input {w}x{h} processed at {proc}: "
                  f"mean {r['mean_ms']:.1f} ms  p50 {r['p50_ms']:.1f} ms  p95 {r['p95_ms']:.1f} ms  "
                  f"{r['fps']:.1f} frames/s")


if __name__ == "__main__":
    main()
