"""Training losses. Every term takes an explicit valid mask and returns a scalar; the total
returns a dict of terms for logging.

* ``coc``: Charbonnier on the CoC (px) of the defocus decoder.
* ``depth``: L1 on ``log(depth / d_f)`` of the depth decoder (metric: d_f is known).
* ``side``: BCE on the side logit, weighted by how much blur tells (CoC >= 0.5 px counts, more
  blur weighs more; at the focus plane the side is meaningless).
* ``consistency``: the physics tie: the CoC that the depth decoder's depth implies through the
  thin-lens equation must equal the defocus decoder's CoC (in px, relative to the CoC scale).
* ``final``: L1 on log depth of the composed (thin-lens) depth of the fused CoC, using the true
  side: weights CoC errors by how much depth they cost and trains the fusion of the two heads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .model import coc_at_infinity

__all__ = ["LossWeights", "multitask_loss"]


@dataclass
class LossWeights:
    coc: float = 1.0
    depth: float = 1.0
    side: float = 0.5
    consistency: float = 0.2
    final: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None = None):
    w = mask.float() if weight is None else mask.float() * weight
    return (x * w).sum() / w.sum().clamp_min(1.0)


def multitask_loss(pred: dict, batch: dict, weights: LossWeights, heads: str = "both"):
    """Total loss and a dict of its terms (floats detached)."""
    valid = batch["valid"]
    lens, fx = batch["lens"], batch["fx"]
    d_f = lens[:, 2][:, None, None, None]
    c_inf = coc_at_infinity(lens, fx)[:, None, None, None]
    c_gt = batch["defocus"]
    side_gt = (batch["signed_defocus"] > 0).float()
    r_gt = torch.log(batch["depth"].clamp_min(1e-3) / d_f)
    terms = {}
    # relative scale: an error of 0.2 px matters at CoC 1 px, less at CoC 20 px
    scale = 1.0 + 0.1 * c_gt
    if heads in ("both", "defocus"):
        err = pred.get("coc_raw", pred["coc"]) - c_gt
        terms["coc"] = _masked_mean(torch.sqrt(err * err + 1e-4) / scale, valid)
        # the composed (fused) depth with the true side: trains the CoC where depth is sensitive
        # to it, and the fusion weights
        side = side_gt * 2 - 1
        denom = (1 - side * pred["coc"] / c_inf).clamp_min(1e-2)
        log_d = torch.log(d_f / denom)
        terms["final"] = _masked_mean((log_d - torch.log(batch["depth"].clamp_min(1e-3))).abs().clamp_max(3.0), valid)
    if heads in ("both", "depth"):
        terms["depth"] = _masked_mean((pred["log_ratio"] - r_gt).abs(), valid)
    side_w = ((c_gt - 0.5) / 2.0).clamp(0.0, 2.0)
    bce = F.binary_cross_entropy_with_logits(pred["side_logit"], side_gt, reduction="none")
    terms["side"] = _masked_mean(bce, valid & (c_gt >= 0.5), side_w)
    if heads == "both":
        c_from_depth = c_inf * (1 - torch.exp(-pred["log_ratio"])).abs()
        terms["consistency"] = _masked_mean((c_from_depth - pred["coc_raw"]).abs() / scale, valid)
    total = sum(getattr(weights, k) * v for k, v in terms.items())
    return total, {k: float(v.detach()) for k, v in terms.items()}
