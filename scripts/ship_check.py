#!/usr/bin/env python3
"""The shipping rule of issue 10, fixed before measuring: may this checkpoint become the default?

A checkpoint is shipped (models/depth_defocus.pt) only if its CoC MAE beats the training-free
estimator's by at least 5 % on both synthetic held-out sets AND on the real-photo benchmark
(Middlebury Motorcycle, 64 cases), and its depth AbsRel on the benchmark is not worse. Otherwise the
default stays the training-free estimator plus the side rule.

    python scripts/ship_check.py runs/x/best.pt --cache heldout --out eval/ship_check.json

Prints the numbers of both estimators and the verdict; exit 0 when the rule is met, 1 when not.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from depth_defocus_ros.estimate.estimator import TRAINING_FREE, Estimator  # noqa: E402
from depth_defocus_ros.evaluation.heldout import HELDOUT, ensure_heldout, evaluate_estimator  # noqa: E402
from depth_defocus_ros.evaluation.realeval import evaluate_real  # noqa: E402

MARGIN = 0.05  # the checkpoint's CoC MAE must be at most (1 - MARGIN) x the training-free one's


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="candidate checkpoint")
    ap.add_argument("--cache", default="heldout", help="held-out sets and benchmark cases are kept here")
    ap.add_argument("--out", default=None, help="write every number as JSON here")
    args = ap.parse_args(argv)
    ests = {"candidate": Estimator.load(args.model, device="cpu"), "training-free": Estimator.load(TRAINING_FREE)}
    res = {"model": args.model, "margin": MARGIN, "heldout": {}, "motorcycle": {}}
    checks = []
    for name in HELDOUT:
        root = ensure_heldout(name, args.cache)
        r = {k: evaluate_estimator(e, root, progress=False)["overall"] for k, e in ests.items()}
        res["heldout"][name] = r
        c, t = r["candidate"]["coc_mae"], r["training-free"]["coc_mae"]
        checks.append((f"held-out {name}: CoC MAE {c:.3f} <= {1 - MARGIN:.2f} x {t:.3f}", c <= (1 - MARGIN) * t))
    real = evaluate_real({"candidate": ests["candidate"], TRAINING_FREE: ests["training-free"]}, args.cache)
    for k in ("candidate", TRAINING_FREE):
        res["motorcycle"][k] = real["groups"][k]
    c, t = (real["groups"][k]["all"]["coc_mae"] for k in ("candidate", TRAINING_FREE))
    checks.append((f"motorcycle: CoC MAE {c:.3f} <= {1 - MARGIN:.2f} x {t:.3f}", c <= (1 - MARGIN) * t))
    ca, ta = (real["groups"][k]["all"]["abs_rel"] for k in ("candidate", TRAINING_FREE))
    not_worse = (math.isnan(ta) and math.isnan(ca)) or (not math.isnan(ca) and (math.isnan(ta) or ca <= ta))
    checks.append((f"motorcycle: depth AbsRel {ca:.4f} not worse than {ta:.4f}", not_worse))
    for text, ok in checks:
        print(f"[{'pass' if ok else 'FAIL'}] {text}")
    ship = all(ok for _, ok in checks)
    res["checks"] = [{"check": t, "pass": ok} for t, ok in checks]
    res["ship"] = ship
    verdict = "ship it as models/depth_defocus.pt" if ship else "do not ship: the training-free estimator stays"
    print("verdict:", verdict)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1))
    return 0 if ship else 1


if __name__ == "__main__":
    raise SystemExit(main())
