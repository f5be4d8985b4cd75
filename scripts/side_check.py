#!/usr/bin/env python3
"""May the estimator use this reader's learned side of the focus plane? Measured on the held-out sets.

The rule (depth_defocus_ros/evaluation/sidecheck.py, fixed before the first side head was trained):
on both synthetic held-out sets, over the pixels where a wrong side costs more than 10 % of the
depth, the stated side probability is calibrated (ECE <= 0.05) and the side chosen with it is right
more often than the physics side alone. ``--write`` records the verdict in the checkpoint
(``side_check``), where ``Estimator`` reads it: without a passed check the side head is not used.

    python scripts/side_check.py runs/s1/best.pt --cache heldout --write

Prints reliability bins per set and the verdict; exit 0 when the check passes, 1 when not.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from depth_defocus_ros.evaluation.heldout import HELDOUT, ensure_heldout  # noqa: E402
from depth_defocus_ros.evaluation.sidecheck import measure_side, side_verdict  # noqa: E402
from depth_defocus_ros.model.checkpoint import build_reader, load_checkpoint, save_checkpoint  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="reader checkpoint with a side head (train-reader --side-data)")
    ap.add_argument("--cache", default="heldout", help="held-out sets are kept here")
    ap.add_argument("--scenes", type=int, default=None, help="the first N scenes of each set (default all)")
    ap.add_argument("--write", action="store_true", help="record the verdict in the checkpoint")
    ap.add_argument("--out", default=None, help="write every number as JSON here")
    args = ap.parse_args(argv)
    ckpt = load_checkpoint(args.model)
    reader = build_reader(ckpt, args.model).eval()
    results = {}
    for name in HELDOUT:
        r = measure_side(reader, ensure_heldout(name, args.cache, args.scenes), progress=True)
        results[name] = r
        print(
            f"{name}: {r['pixels']} pixels where the side matters ({100 * r['share_behind']:.0f} % behind); "
            f"chosen side right {r['chosen_side_right']:.3f} (physics alone {r['physics_side_right']:.3f}); "
            f"ECE {r['ece']:.3f}"
        )
        for lo, hi, share, stated, measured in r["bins"]:
            print(f"  {lo:.2f}-{hi:.2f}: {100 * share:5.1f} % of pixels, stated {stated:.3f}, right {measured:.3f}")
    passed, checks = side_verdict(results)
    for text, ok in checks:
        print(f"[{'pass' if ok else 'FAIL'}] {text}")
    print("verdict:", "the estimator may use the learned side" if passed else "the side stays with physics")
    record = {"passed": passed, "sets": results, "checks": [{"check": t, "pass": ok} for t, ok in checks]}
    if args.write:
        for key in ("format", "format_version"):
            ckpt.pop(key, None)
        ckpt["side_check"] = record
        save_checkpoint(args.model, ckpt)
        print(f"recorded in {args.model}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=1))
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
