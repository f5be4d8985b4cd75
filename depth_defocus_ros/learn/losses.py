"""Training losses. Every term takes an explicit valid mask and returns a scalar; the total
returns a dict of terms for logging.

* ``coc``: Charbonnier on the CoC (px): the published defocus, the physics estimate plus the
  learned correction (CoC MAE is what the benchmark measures).
* ``sigma``: Laplace negative log-likelihood of the CoC error under the predicted ``coc_sigma``
  (the error itself detached): the uncertainty learns to rank the error, not to shrink it.
* ``side``: BCE on the side logit where blur tells the side (true CoC >= 0.5 px; more blur weighs
  more, at the focus plane the side is meaningless).
* ``depth``: L1 on ``r = log(depth / d_f)`` of the depth decoder (scene structure for the side).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

__all__ = ["LossWeights", "multitask_loss"]


@dataclass
class LossWeights:
    coc: float = 1.0
    sigma: float = 0.2
    side: float = 0.5
    depth: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None = None):
    w = mask.float() if weight is None else mask.float() * weight
    return (x * w).sum() / w.sum().clamp_min(1.0)


def multitask_loss(pred: dict, batch: dict, weights: LossWeights):
    """Total loss and a dict of its terms (floats detached)."""
    valid = batch["valid"]
    d_f = batch["lens"][:, 2].view(-1, 1, 1, 1)
    c_gt = batch["defocus"]
    err = pred["coc"] - c_gt
    terms = {"coc": _masked_mean(torch.sqrt(err * err + 1e-2), valid)}
    sigma = pred["coc_sigma"].clamp_min(1e-2)
    terms["sigma"] = _masked_mean(err.detach().abs() / sigma + torch.log(sigma), valid)
    side_gt = (batch["signed_defocus"] > 0).float()
    side_w = ((c_gt - 0.5) / 2.0).clamp(0.0, 2.0)
    bce = F.binary_cross_entropy_with_logits(pred["side_logit"], side_gt, reduction="none")
    terms["side"] = _masked_mean(bce, valid & (c_gt >= 0.5), side_w)
    r_gt = torch.log(batch["depth"].clamp_min(1e-3) / d_f)
    terms["depth"] = _masked_mean((pred["log_ratio"] - r_gt).abs(), valid)
    total = sum(getattr(weights, k) * v for k, v in terms.items())
    return total, {k: float(v.detach()) for k, v in terms.items()}
