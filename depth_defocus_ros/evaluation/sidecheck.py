"""Is a reader's learned side of the focus plane calibrated? Measured on the held-out sets.

The estimator uses a reader's side head (:mod:`~depth_defocus_ros.reading.side`) only where its
stated probability matches its measured accuracy on scenes it never saw (issue 16, item 4). On
every valid pixel where a wrong side costs more than :data:`MIN_COST` (the two depths of its CoC
differ by more than that, relative to the true one; near the focus plane the side does not
matter), :func:`measure_side` compares

* the stated probability of the chosen side with how often it is right (reliability bins, ECE),
  for the probability the estimator uses (the head's prior combined with the lens rule,
  :func:`~depth_defocus_ros.estimate.depthmap.side_probability`);
* how often the chosen side (:func:`~depth_defocus_ros.estimate.depthmap.choose_behind`) is right,
  with the learned side and with the physics side alone (prior 0.5: the near side unless the lens
  rule rules it out).

:data:`MAX_ECE` and "more often right than physics on every set" make the check (fixed before the
first head was trained); ``scripts/side_check.py --write`` records the verdict in the checkpoint,
where :class:`~depth_defocus_ros.estimate.estimator.Estimator` reads it.
"""

from __future__ import annotations

import torch

from ..estimate.depthmap import choose_behind, side_probability
from ..learn.datasets import ShardDataset
from ..learn.train_side import side_reliability
from ..optics import depth_on_side
from ..reading.reader import read_with_side
from ..reading.side import MIN_COST, side_cost

__all__ = ["MIN_COST", "MAX_ECE", "measure_side", "side_verdict"]

MAX_ECE = 0.05  # stated probability within 5 points of the measured accuracy (weighted over bins)


def _chosen_behind(coc, p_behind, lens, fx) -> torch.Tensor:
    d_near = depth_on_side(coc, torch.zeros_like(coc, dtype=torch.bool), lens, fx)
    d_far = depth_on_side(coc, torch.ones_like(coc, dtype=torch.bool), lens, fx)
    return choose_behind(p_behind, d_near, d_far)


@torch.no_grad()
def measure_side(reader, root, batch: int = 8, progress: bool = False) -> dict:
    """Reliability and accuracy of the learned side on the scenes of shard folder ``root``
    (see module doc). The reader must have a side head."""
    if reader.side is None:
        raise ValueError("this reader has no side head (train one with train-reader --side-data)")
    ps, truth, right_learned, right_physics = [], [], [], []
    data = ShardDataset(root, batch, loop=False, augment=False)
    if progress:
        from tqdm import tqdm

        data = tqdm(data, desc=f"side {root}")
    for b in data:
        est, prior = read_with_side(reader, b["image"], b["lens"], b["fx"])
        m = b["valid"] & (side_cost(b["depth"], b["valid"], b["lens"], b["fx"]) > MIN_COST)
        behind = b["signed_defocus"] > 0
        p = side_probability(est.coc, est.sigma, b["lens"], b["fx"], "auto", prior)
        p0 = side_probability(est.coc, est.sigma, b["lens"], b["fx"], "auto", None)
        right_learned.append((_chosen_behind(est.coc, p, b["lens"], b["fx"]) == behind)[m])
        right_physics.append((_chosen_behind(est.coc, p0, b["lens"], b["fx"]) == behind)[m])
        ps.append(p[m])
        truth.append(behind[m])
    p, t = torch.cat(ps), torch.cat(truth)
    rel = side_reliability(p, t, torch.ones_like(p))
    return {
        "pixels": int(p.numel()),
        "ece": rel["ece"],
        "bins": rel["bins"],
        "more_probable_side_right": rel["accuracy"],
        "chosen_side_right": float(torch.cat(right_learned).float().mean()),
        "physics_side_right": float(torch.cat(right_physics).float().mean()),
        "share_behind": float(t.float().mean()),
    }


def side_verdict(results: dict) -> tuple[bool, list]:
    """(passed, [(check text, ok)]) for ``{set name: measure_side(...)}``."""
    checks = []
    for name, r in results.items():
        checks.append((f"{name}: side ECE {r['ece']:.3f} <= {MAX_ECE}", r["ece"] <= MAX_ECE))
        checks.append(
            (
                f"{name}: chosen side right {r['chosen_side_right']:.3f} > physics alone {r['physics_side_right']:.3f}",
                r["chosen_side_right"] > r["physics_side_right"],
            )
        )
    return all(ok for _, ok in checks), checks
