#!/usr/bin/env python3
"""How good can depth from defocus alone be on the held-out sets? Prints the depth metrics of an
oracle that knows the true side of the focus plane and the true CoC up to Gaussian noise of
``sigma`` px, and takes the thin-lens solution (``optics.depth_on_side``, the same function every
estimator's depth goes through).

The held-out lenses follow the issue's ranges, so many scenes have a CoC at infinity of one or
two pixels; there the depth behind the focus plane is ill-conditioned (a 0.3 px CoC error moves
it by a large factor). This bound says how much of a depth target defocus can reach at a given
CoC accuracy, and how much must come from monocular cues.

    python scripts/defocus_bound.py --cache heldout --sigmas 0,0.1,0.3,1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from depth_defocus_ros.evaluation.heldout import HELDOUT, ensure_heldout  # noqa: E402
from depth_defocus_ros.learn.datasets import ShardDataset  # noqa: E402
from depth_defocus_ros.learn.metrics import MetricAccumulator  # noqa: E402
from depth_defocus_ros.optics import coc_at_infinity_batch, depth_on_side  # noqa: E402


def bound(root, sigma_px: float, seed: int = 0, max_depth_m: float = 100.0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    acc = MetricAccumulator(max_depth_m=max_depth_m)
    c_infs = []
    for b in ShardDataset(root, 16, loop=False, augment=False):
        noise = torch.randn(b["defocus"].shape, generator=gen) * sigma_px
        coc = (b["defocus"] + noise).clamp_min(0.0)
        depth = depth_on_side(coc, b["signed_defocus"] > 0, b["lens"], b["fx"], max_depth_m)
        acc.update(depth, coc, b["depth"], b["defocus"], b["lens"][:, 2], b["valid"])
        c_infs.append(coc_at_infinity_batch(b["lens"], b["fx"]))
    res = acc.result()
    res["median_coc_at_infinity_px"] = float(torch.cat(c_infs).median())
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="heldout", help="folder where held-out sets are kept")
    ap.add_argument("--sets", default="layers,structured")
    ap.add_argument("--sigmas", default="0.1,0.3,1.0", help="CoC noise std devs (px)")
    args = ap.parse_args(argv)
    print("oracle: true side, true CoC + N(0, sigma^2) px, thin-lens depth")
    print(
        f"{'set':<11} {'sigma px':>8} {'CoC MAE':>8} {'AbsRel':>7} {'d<1.25':>7} {'RMSElog':>8}"
        f" {'AbsRel front':>12} {'AbsRel behind':>13}"
    )
    for name in args.sets.split(","):
        if name not in HELDOUT:
            ap.error(f"unknown set {name!r}; choose from {sorted(HELDOUT)}")
        root = ensure_heldout(name, args.cache)
        for s in (float(v) for v in args.sigmas.split(",")):
            r = bound(root, s)
            o, front, behind = r["overall"], r["by_side"]["front"], r["by_side"]["behind"]
            print(
                f"{name:<11} {s:>8.2f} {o['coc_mae']:>8.3f} {o['abs_rel']:>7.3f} {o['delta1']:>7.3f}"
                f" {o['rmse_log']:>8.3f} {front['abs_rel']:>12.3f} {behind['abs_rel']:>13.3f}"
            )
        print(f"{name:<11} median CoC at infinity {r['median_coc_at_infinity_px']:.2f} px")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
