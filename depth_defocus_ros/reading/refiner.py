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
pixel. It does not invent a CoC: it chooses, per pixel, a blend of readings, so a blur the reader
read confidently stays as read whatever the scene statistics it was fitted on. Two candidates
(:data:`CANDIDATES` 2): the pixel's own reading mixed with its near neighbourhood's, and the far,
edge-bounded neighbourhood's (a sigmoid chooses). Six (2 + :data:`MAX_LEVELS`): those two and every
pyramid level's own reading (a softmax chooses): where a fine level reads a blur beyond its range
low, the level that reads it within range can be taken, which the fixed level rule
(:func:`~depth_defocus_ros.reading.reader.fuse_levels`) and the spreads cannot.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["Refiner", "N_FEATURES", "MAX_LEVELS", "CANDIDATES"]

MAX_LEVELS = 4  # levels whose readings enter (missing ones are zero)
N_FEATURES = 2 * MAX_LEVELS + 2 + 2 + 3 + 2
CANDIDATES = (2, 2 + MAX_LEVELS)  # readings a refiner can blend: near, far (+ every level's)


class Refiner(nn.Module):
    """``forward(features, candidates)`` with features (B, N_FEATURES, h, w) and the candidate
    readings (B, K, h, w) px, K in :data:`CANDIDATES` -> CoC, sigma (B, 1, h, w) px."""

    def __init__(self, channels: int = 24, coc_unit: float = 4.0, candidates: int = 2):
        super().__init__()
        if candidates not in CANDIDATES:
            raise ValueError(f"the refiner blends {' or '.join(map(str, CANDIDATES))} readings, got {candidates}")
        self.coc_unit = coc_unit
        self.candidates = candidates
        self.stem = nn.Conv2d(N_FEATURES, channels, 3, padding=1)
        self.blocks = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=d, dilation=d) for d in (1, 2, 4, 1))
        outputs = 2 if candidates == 2 else candidates + 1  # blend (a share or K logits), sigma
        self.head = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.ReLU(), nn.Conv2d(channels, outputs, 1))
        self.to(memory_format=torch.channels_last)  # as the level CNN (reader.py)

    def forward(self, features: torch.Tensor, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.stem(features.contiguous(memory_format=torch.channels_last)))
        for conv in self.blocks:
            x = x + F.relu(conv(x))
        o = self.head(x).contiguous()
        if self.candidates == 2:
            a = torch.sigmoid(o[:, :1])  # share of the near reading
            coc = a * candidates[:, :1] + (1 - a) * candidates[:, 1:2]
        else:
            coc = (torch.softmax(o[:, :-1], 1) * candidates).sum(1, keepdim=True)
        return coc, 0.05 + F.softplus(o[:, -1:]) * (self.coc_unit / 4)
