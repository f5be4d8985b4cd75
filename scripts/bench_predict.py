"""Benchmark ``Estimator.predict`` and its stages: latency (ms) and frames/s at given input sizes.

For each input size it prints the whole ``predict`` (decode excluded: the image is already a
numpy array; the device -> host copy of the outputs included) and its stages at the processing
size: the training-free defocus estimate (``reblur.estimate_defocus``), the learned blur reader
(when the estimator is one: its CNN over every pyramid level, then level fusion + edge-aware
spread; with its learned side head when the estimator uses one), the network forward (when the
estimator has one, its first stage included) and the depth composition (side, validity). The
input is the bundled sample (a real photograph) resized to the size: random noise would be all edges.
CPU always; on a CUDA machine also fp32 and fp16.

Usage: python scripts/bench_predict.py [--model PATH|training-free] [--size 320x240,640x480]
       [--frames 20] [--threads 1]
"""

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from depth_defocus_ros.estimate.depthmap import compose_depth, side_probability
from depth_defocus_ros.estimate.estimator import Estimator, prepare
from depth_defocus_ros.optics import Lens
from depth_defocus_ros.reading.reader import read_defocus, read_levels, read_with_side
from depth_defocus_ros.reading.reblur import estimate_defocus, luminance

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "samples" / "frame_000.png"
LENS = Lens.from_mm(50.0, 1.8, 6.0)


def timed(fn, frames: int, cuda: bool, warmup: int = 2) -> np.ndarray:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(frames):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t)
    return np.array(out) * 1000.0


def fmt(name: str, ms: np.ndarray) -> str:
    return (
        f"  {name:24s} mean {ms.mean():7.1f} ms  p50 {np.percentile(ms, 50):7.1f}  p95 {np.percentile(ms, 95):7.1f}"
        f"  ({1000.0 / ms.mean():6.1f} /s)"
    )


@torch.no_grad()
def bench(est: Estimator, rgb: np.ndarray, frames: int) -> None:
    cuda = est.device.type == "cuda"
    fx = 0.97 * rgb.shape[1]
    x, scale = prepare(rgb, est.device, est.long_side)
    hp, wp = x.shape[-2:]
    lens_t, fx_t = LENS.as_tensor(est.device), torch.tensor([fx * scale], device=est.device)
    print(
        f"{est.device.type} {'fp16' if est.half else 'fp32'} {est.kind}: input {rgb.shape[1]}x{rgb.shape[0]}, "
        f"processed at {wp}x{hp}"
    )
    print(fmt("predict (all stages)", timed(lambda: est.predict(rgb, LENS, fx), frames, cuda)))
    print(fmt("training-free estimate", timed(lambda: estimate_defocus(x), frames, cuda)))
    if est.reader is not None:
        y = luminance(x).to(torch.float16 if est.half else torch.float32)
        print(fmt("blur reader", timed(lambda: read_defocus(est.reader, x), frames, cuda)))
        print(fmt("  CNN over the pyramid", timed(lambda: read_levels(est.reader, y), frames, cuda)))
        if est.learned_side:
            side = timed(lambda: read_with_side(est.reader, x, lens_t, fx_t), frames, cuda)
            print(fmt("blur reader + learned side", side))
    if est.model is not None:
        print(fmt("network (with physics)", timed(lambda: est.read(x, lens_t, fx_t), frames, cuda)))
    coc, sigma, prior, _ = est.read(x, lens_t, fx_t)

    def compose():
        p = side_probability(coc, sigma, lens_t, fx_t, "auto", prior)
        return compose_depth(coc, sigma, p, lens_t, fx_t)

    print(fmt("side + validity", timed(compose, frames, cuda)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="checkpoint or 'training-free' (default: the shipped default)")
    ap.add_argument("--size", default="320x240,640x480", help="input WxH, comma-separated for several")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = [("cpu", False)]
    if torch.cuda.is_available():
        configs += [("cuda", False), ("cuda", True)]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
        + (f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU")
    )
    base = cv2.imread(str(SAMPLE))[:, :, ::-1]
    for size in args.size.split(","):
        w, h = (int(v) for v in size.split("x"))
        rgb = np.ascontiguousarray(cv2.resize(base, (w, h), interpolation=cv2.INTER_AREA))
        for dev, half in configs:
            bench(Estimator.load(args.model, device=dev, half=half), rgb, args.frames)


if __name__ == "__main__":
    main()
