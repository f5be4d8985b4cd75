#!/usr/bin/env python3
"""Where is the blur reading lost? Bias per true-CoC bin of every stage of a learned reader.

Prints, for every pixel and for the edge pixels, the bias (% of the true CoC) per true-CoC bin,
the MAE (px) and the slope of each pyramid level's reading, the fused reading, the near and far
spreads, the final reading, and two oracles (the best level, the best stage per pixel: they use
the truth, so they only bound what a per-pixel choice could gain). See
:mod:`depth_defocus_ros.evaluation.stages`.

    python scripts/reader_stages.py models/depth_defocus.pt --data scenes_val
    python scripts/reader_stages.py models/depth_defocus.pt --real motorcycle --cache heldout --clean

Decide on synthetic scenes that no training used (``depth-defocus render --seed ...``); the
benchmark is for diagnosis only, never for tuning.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from depth_defocus_ros.evaluation.stages import StageTable, format_stage_table, stage_readings  # noqa: E402
from depth_defocus_ros.model.checkpoint import build_reader, load_checkpoint  # noqa: E402
from depth_defocus_ros.reading.reblur import measured_edges  # noqa: E402


def scene_batches(root: str, batch: int):
    """(sRGB image (B, 3, H, W), true CoC px with NaN where invalid) of a shard folder."""
    from depth_defocus_ros.learn.datasets import ShardDataset

    for b in ShardDataset(root, batch, loop=False, augment=False):
        coc = b["defocus"].float()
        yield b["image"].float(), torch.where(b["valid"].bool(), coc, torch.full_like(coc, float("nan")))


def benchmark_batches(cache: str, width: int, clean: bool):
    """(image, true CoC) of the motorcycle benchmark's cases (optionally one width, clean only)."""
    from depth_defocus_ros.evaluation.realbench import load_cases

    for case, r in load_cases(cache, progress=False):
        if (width and case.width != width) or (clean and case.degraded):
            continue
        image = torch.from_numpy(r["image"]).permute(2, 0, 1)[None].float() / 255.0
        yield image, torch.from_numpy(r["coc"])[None, None]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a reader checkpoint (kind 'reader')")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="a shard folder of synthetic scenes (depth-defocus render)")
    src.add_argument("--real", choices=["motorcycle"], help="the real-photograph benchmark (diagnosis only)")
    ap.add_argument("--cache", default="heldout", help="benchmark cases are kept here (--real)")
    ap.add_argument("--width", type=int, default=0, help="--real: only cases of this width (px); 0: all")
    ap.add_argument("--clean", action="store_true", help="--real: only the cases without noise and JPEG")
    ap.add_argument("--batch", type=int, default=8, help="--data: scenes per batch")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="write every number as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    reader = build_reader(load_checkpoint(args.model)).eval()
    batches = (
        benchmark_batches(args.cache, args.width, args.clean) if args.real else scene_batches(args.data, args.batch)
    )
    table = StageTable()
    for image, truth in batches:
        table.update(stage_readings(reader, image), truth, measured_edges(image))
    res = table.result()
    print(f"== {args.model} on {args.real or args.data}")
    print(format_stage_table(res))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
