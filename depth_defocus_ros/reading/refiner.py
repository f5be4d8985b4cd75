"""Stage 2 of the blur reader: the final CoC and a fitted sigma from the evidence on the grid.

The pyramid reader (:mod:`~depth_defocus_ros.reading.reader`) states per pixel what the texture around it says, and how
sure it is. Where the texture is smooth it cannot say much, and the answer has to come from the
readings around it: near ones (the same surface) or far ones bounded by image edges. How to weigh
them is learned here, on whole synthetic scenes with exact CoC (``depth-defocus train-reader
--refine-data``), with a Laplace likelihood, so that the final sigma is fitted too.

Inputs (:data:`N_FEATURES` channels on the reader's grid, a quarter of the input resolution; see
:func:`depth_defocus_ros.reading.reader.grid_features`): every level's CoC and log sigma, the fused
reading, its edge-aware
neighbourhood at two reaches (mean, spread, support), and the local contrast and brightness of the
image. Output: CoC (px) and sigma (px). A small CNN: it sees about 70 px of the input around each
pixel. It does not invent a CoC: it chooses, per pixel, a blend of two readings (the pixel's own
reading mixed with its near neighbourhood's, and the far, edge-bounded neighbourhood's), so a
blur the reader read confidently stays as read whatever the scene statistics it was fitted on.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["Refiner", "N_FEATURES", "MAX_LEVELS"]

MAX_LEVELS = 4  # levels whose readings enter (missing ones are zero)
N_FEATURES = 2 * MAX_LEVELS + 2 + 2 + 3 + 2


class Refiner(nn.Module):
    """``forward(features, candidates)`` with features (B, N_FEATURES, h, w) and the two candidate
    readings (B, 2, h, w) px -> CoC, sigma (B, 1, h, w) px."""

    def __init__(self, channels: int = 24, coc_unit: float = 4.0):
        super().__init__()
        self.coc_unit = coc_unit
        self.stem = nn.Conv2d(N_FEATURES, channels, 3, padding=1)
        self.blocks = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=d, dilation=d) for d in (1, 2, 4, 1))
        self.head = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.ReLU(), nn.Conv2d(channels, 2, 1))
        self.to(memory_format=torch.channels_last)  # as the level CNN (reader.py)

    def forward(self, features: torch.Tensor, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.stem(features.contiguous(memory_format=torch.channels_last)))
        for conv in self.blocks:
            x = x + F.relu(conv(x))
        o = self.head(x).contiguous()
        a = torch.sigmoid(o[:, :1])  # share of the near reading
        coc = a * candidates[:, :1] + (1 - a) * candidates[:, 1:2]
        return coc, 0.05 + F.softplus(o[:, 1:2]) * (self.coc_unit / 4)
