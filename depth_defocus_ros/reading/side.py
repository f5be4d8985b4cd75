"""Stage 3 of the blur reader: which side of the focus plane, learned, with a stated probability.

A CoC has two depths (:func:`depth_defocus_ros.optics.depth_on_side`); the blur alone does not
say which. What does, in one image (DESIGN.md, "The hard part"): occlusion (a blurred occluder
bleeds over a sharp background; a sharp occluder keeps a hard edge over a blurred one), scene
structure (a ground plane recedes upwards, objects stand on it), and the lens (a CoC above the
CoC at infinity ``c_inf`` can only be in front). :class:`SideHead` reads them on the reader's grid
(a quarter of the input resolution) from:

* the reader's evidence (:func:`~depth_defocus_ros.reading.reader.grid_features`: every level's
  CoC and log sigma, the spreads, local contrast and brightness),
* the final CoC and sigma (px), and the same relative to the lens: ``c / c_inf`` and
  ``sigma / c_inf`` (the lens enters here, where the side is decided, never in the CoC path),
  and the physics probability that ``c > c_inf`` (front for sure),
* the image itself at grid resolution (sRGB), for the monocular cues.

A small U-Net over the grid (three halvings and a global mean: it sees the whole image) gives the
logit of "behind". It is fitted on whole synthetic scenes with the side's cost as weight (a wrong
side matters where the two depths differ: the weight is ``min(|d_far - d_near| / d, 1)``), then a
temperature fitted on held-back scenes makes its probability a calibrated one; whether it is, on
the held-out sets, decides if an estimator uses it (``side_check`` in the checkpoint,
``scripts/side_check.py``). Without a passed check the side stays with physics and ``focus_side``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..optics import coc_at_infinity_batch
from .refiner import N_FEATURES

__all__ = ["SideHead", "SIDE_FEATURES", "MIN_COST", "side_inputs", "side_cost"]

SIDE_FEATURES = N_FEATURES + 2 + 3 + 3  # evidence, CoC and sigma, lens-relative (3), image (3)
MIN_COST = 0.1  # the side matters where a wrong one costs more than 10 % of the depth
MAX_RATIO = 4.0  # c / c_inf beyond this carries no more side information (front for sure)


def side_inputs(feats, coc, sigma, guide, lens, fx) -> torch.Tensor:
    """The head's input (B, SIDE_FEATURES, h, w) on the grid.

    Args:
        feats: (B, N_FEATURES, h, w) the reader's evidence on the grid.
        coc, sigma: (B, 1, h, w) final CoC and its sigma, px at the resolution where ``fx`` holds.
        guide: (B, 3, h, w) sRGB in [0, 1] at grid resolution.
        lens: (B, 3) [f (m), N, d_f (m)]; fx: (B,) px.
    """
    c_inf = coc_at_infinity_batch(lens.float(), fx.float()).view(-1, 1, 1, 1).clamp_min(1e-3)
    coc, sigma = coc.float(), sigma.float().clamp_min(1e-3)
    ratio = (coc / c_inf).clamp(0.0, MAX_RATIO)
    rel_sigma = torch.log((sigma / c_inf).clamp(1e-3, 10.0))
    p_front_sure = 0.5 * (1.0 + torch.erf((coc - c_inf) / (sigma * math.sqrt(2.0))))
    return torch.cat(
        [feats.float(), coc / 8.0, torch.log(sigma), ratio, rel_sigma, p_front_sure, guide.float() * 2 - 1], 1
    )


def side_cost(depth, valid, lens, fx) -> torch.Tensor:
    """(B, 1, H, W) what taking the wrong side costs at each pixel: ``min(|d_other - d| / d, 1)``
    with ``d`` the true depth (m) and ``d_other`` the other side's depth of the same CoC; 0 where
    ``valid`` is false. Near the focus plane both sides give about the same depth (cost ~0)."""
    from ..optics import depth_on_side, signed_defocus_batch

    d = depth.clamp_min(1e-6)
    sd = signed_defocus_batch(d, lens, fx)
    other = depth_on_side(sd.abs(), sd <= 0, lens, fx)  # the side the pixel is not on
    cost = ((other - d).abs() / d).nan_to_num(nan=1.0, posinf=1.0).clamp(max=1.0)
    return torch.where(valid, cost, torch.zeros_like(cost))


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class SideHead(nn.Module):
    """``forward(x)`` with x (B, SIDE_FEATURES, h, w) from :func:`side_inputs` -> logit of
    "behind the focus plane" (B, 1, h, w), before the temperature (``temperature`` buffer: the
    calibrated probability is ``sigmoid(logit / temperature)``)."""

    def __init__(self, channels: int = 24):
        super().__init__()
        c1, c2, c3 = channels, channels * 4 // 3, channels * 2
        self.enc0 = _block(SIDE_FEATURES, c1)
        self.enc1 = _block(c1, c2, 2)
        self.enc2 = _block(c2, c3, 2)
        self.enc3 = _block(c3, c3, 2)
        self.ctx = nn.Sequential(nn.Conv2d(2 * c3, c3, 1), nn.ReLU(inplace=True))
        self.dec2 = _block(2 * c3, c3)
        self.dec1 = _block(c3 + c2, c2)
        self.dec0 = _block(c2 + c1, c1)
        self.head = nn.Conv2d(c1, 1, 1)
        self.register_buffer("temperature", torch.ones(()))

    @staticmethod
    def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False), like], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e0 = self.enc0(x)
        e1 = self.enc1(e0)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        e3 = self.ctx(torch.cat([e3, e3.mean((-2, -1), keepdim=True).expand_as(e3)], 1))
        d2 = self.dec2(self._up(e3, e2))
        d1 = self.dec1(self._up(d2, e1))
        d0 = self.dec0(self._up(d1, e0))
        return self.head(d0)

    def probability(self, x: torch.Tensor) -> torch.Tensor:
        """Calibrated P(behind) (B, 1, h, w)."""
        return torch.sigmoid(self.forward(x).float() / self.temperature.float())
