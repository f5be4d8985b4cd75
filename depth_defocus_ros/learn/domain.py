"""Domain adaptation: align the encoder's features of labelled (synthetic) and unlabelled (real) images.

DMENet (Lee et al., CVPR 2019) adapted a defocus network trained on synthetic blur to real photos
with a domain discriminator on its features and unlabelled real images. This module does the
same with a gradient-reversal layer (Ganin & Lempitsky, DANN): a small classifier learns to tell
source (labelled batches) from target (unlabelled real frames) on the encoder's deepest features
(1/32 resolution, after the lens FiLM), and the reversed gradient trains the encoder to make them
indistinguishable. The decoders only ever see the task loss on labelled data.

* :class:`GradReverse` / :func:`grad_reverse`: identity forward, ``-lambda * grad`` backward.
* :class:`DomainClassifier`: per-location domain logits from (B, C, h, w) features.
* :class:`DomainAdaptNet`: the network plus the classifier; ``forward(image, lens, fx, lam)``
  returns the network's output dict and the domain logits (B, 1, h, w). The features are taken
  with a forward hook on ``net.stages[-1]``, so the model itself is unchanged and its checkpoints
  carry no classifier.
* :func:`domain_loss`, :func:`grl_lambda` (DANN ramp), :func:`match_batch` (crop / resize an
  unlabelled batch to the labelled batch's size, fx scaled with it).

Used by ``depth-defocus train --domain-data DIR`` (see :mod:`.train`).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "GradReverse",
    "grad_reverse",
    "DomainClassifier",
    "DomainAdaptNet",
    "domain_loss",
    "grl_lambda",
    "match_batch",
    "encoder_parameters",
]


class GradReverse(torch.autograd.Function):
    """Identity in the forward pass; multiplies the gradient by ``-lam`` in the backward pass."""

    @staticmethod
    def forward(ctx, x, lam: float):
        ctx.lam = float(lam)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.lam * grad, None


def grad_reverse(x: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    return GradReverse.apply(x, lam)


class DomainClassifier(nn.Module):
    """(B, C, h, w) features -> (B, 1, h, w) logits of "target domain" (a patch discriminator)."""

    def __init__(self, channels: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1),
            nn.GroupNorm(max(1, hidden // 8), hidden),
            nn.SiLU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.SiLU(),
            nn.Conv2d(hidden, 1, 1),
        )

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.net(feats)


class DomainAdaptNet(nn.Module):
    """``net`` (a :class:`~depth_defocus_ros.model.network.DepthDefocusNet`) and a domain
    classifier on its 1/32 features."""

    def __init__(self, net: nn.Module, hidden: int = 64):
        super().__init__()
        self.net = net
        self.disc = DomainClassifier(net.config.channels[-1], hidden)
        self._feat = None
        self._capture = False
        self._hook = net.stages[-1].register_forward_hook(self._grab)

    def _grab(self, module, inputs, output):
        if self._capture:
            self._feat = output

    def forward(self, image, lens, fx, lam: float = 1.0):
        self._capture = True
        try:
            pred = self.net(image, lens, fx)
            feat, self._feat = self._feat, None
        finally:
            self._capture = False
        return pred, self.disc(grad_reverse(feat, lam))  # (B, 1, H/32, W/32)

    def remove(self) -> None:
        """Detach the hook from the network."""
        self._hook.remove()


def encoder_parameters(net: nn.Module) -> list:
    """The shared encoder's parameters (lens MLP, stem, stages): what domain adaptation moves."""
    return [p for m in (net.lens_mlp, net.full, net.stages) for p in m.parameters()]


def domain_loss(logits: torch.Tensor, is_target: torch.Tensor) -> tuple[torch.Tensor, float]:
    """BCE of the per-location domain logits (B, 1, h, w) against the domain of each sample
    (B,) bool, balanced between the two domains; returns (loss, accuracy)."""
    y = is_target.float()[:, None, None, None].expand_as(logits)
    per = F.binary_cross_entropy_with_logits(logits.float(), y, reduction="none").mean(dim=(1, 2, 3))  # (B,)
    tgt = is_target.float()
    loss = 0.5 * ((per * tgt).sum() / tgt.sum().clamp_min(1) + (per * (1 - tgt)).sum() / (1 - tgt).sum().clamp_min(1))
    acc = float(((logits.detach() > 0).float() == y).float().mean())
    return loss, acc


def grl_lambda(step: int, total: int, gamma: float = 10.0) -> float:
    """DANN schedule ``2 / (1 + exp(-gamma p)) - 1`` with ``p = step / total``: 0 -> 1."""
    p = min(max(step / max(1, total), 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


def match_batch(batch: dict, size: tuple, gen: torch.Generator | None = None) -> dict:
    """An unlabelled batch cropped (or, if smaller, first enlarged) to ``size`` = (h, w).

    Only ``image``, ``lens`` and ``fx`` are kept (the domain classifier needs no labels); a resize
    by ``s`` scales ``fx`` by ``s`` (the CoC scales with it, DESIGN.md). One crop for the batch.
    """
    img, fx = batch["image"], batch["fx"]
    h, w = size
    H, W = img.shape[-2:]
    if H < h or W < w:
        s = max(h / H, w / W)
        nh, nw = max(h, math.ceil(H * s)), max(w, math.ceil(W * s))
        img = F.interpolate(img, size=(nh, nw), mode="bilinear", align_corners=False, antialias=False)
        fx = fx * (nw / W)
        H, W = nh, nw
    y0 = int(torch.randint(0, H - h + 1, (1,), generator=gen))
    x0 = int(torch.randint(0, W - w + 1, (1,), generator=gen))
    return {"image": img[..., y0 : y0 + h, x0 : x0 + w], "lens": batch["lens"], "fx": fx}
