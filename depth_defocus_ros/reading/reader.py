"""The learned blur reader: a small CNN that reads small blur well, applied over an image pyramid.

Scale equivariance does most of the work: a disc of ``c`` px at full resolution is a disc of
``c / 2`` px at half resolution, so one reader that is accurate for small blur, applied at every
level of a pyramid (2x2 averages of linear luminance), reads every blur size: a large blur is a
small one a few levels down. The reader is trained on small patches (:mod:`~depth_defocus_ros.learn.patches`,
:mod:`.train_reader`) and outputs, per pixel of each level, a CoC (px at that level) and its
standard deviation (a Laplace likelihood: the sigma is fitted, not a heuristic).

Per image (all vectorised; no per-pixel Python loop):

1. linear luminance ``y``; for each level ``l`` (``y`` averaged 2^l x 2^l while the short side
   stays at least ``min_level_side``): the reader's input is ``y / local mean - 1`` (exposure
   free), space-to-depth 2x2 (so the CNN runs at half the level's resolution) and the level's
   noise relative to the local mean;
2. every level's CoC and sigma, times 2^l (px at full resolution), brought to one grid (a
   quarter of the input resolution) and combined: per pixel the finest level whose reading is
   within the reader's range (:func:`fuse_levels`);
3. edge-aware spread (:func:`.propagate.propagate`): the precision-weighted mean and variance of
   the readings around each pixel, bounded by image edges; a pixel's own reading and its
   neighbourhood's are combined by precision, so textured pixels keep their own reading and flat
   ones take their neighbourhood's, with a sigma that grows with the neighbourhood's spread;
4. upsampled to the input resolution.

Returns a :class:`.reblur.DefocusEstimate` (CoC px, sigma px, confidence = the share of the
estimate that comes from the pixel's own reading), as the training-free estimate does.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from .propagate import propagate
from .reblur import DefocusEstimate, luminance, noise_sigma
from .refiner import MAX_LEVELS, Refiner
from .side import SideHead, side_inputs

__all__ = [
    "ReaderConfig",
    "read_with_side",
    "refine",
    "to_input",
    "BlurReader",
    "box_mean",
    "read_levels",
    "fuse_levels",
    "grid_features",
    "read_defocus",
    "laplace_nll",
]


@dataclass
class ReaderConfig:
    """Architecture and pyramid of the reader. Stored inside every checkpoint."""

    channels: int = 16
    dilations: list = field(default_factory=lambda: [1, 2, 4, 8, 1])  # residual 3x3 layers
    norm_window: int = 15  # px (at each level): the local mean that makes the input exposure-free
    coc_unit: float = 4.0  # px: output scale of the CoC head
    levels: int = 5  # at most this many pyramid levels (factor 2)
    min_level_side: int = 24  # px: a level's short side must be at least this
    sigma_floor: float = 0.05  # px (at a level): the smallest sigma the head can state
    level_switch_px: float = 10.0  # px at a level: above this the next coarser level reads the blur
    level_switch_width: float = 1.5  # px: width of that switch
    grid: int = 4  # levels are fused and spread on a grid this many times coarser than the input
    spread_sigma_s: float = 12.0  # px (on that grid): extent of the edge-aware spread
    spread_sigma_r: float = 0.4  # guide step (summed sRGB) that costs spread_sigma_s px
    spread_power: float = 1.0  # weight of a reading in the spread: variance ** -spread_power
    # "px": readings are spread as CoC (px), weighted by their variance in px^2 (a large blur, with
    # its large sigma in px, weighs little against small readings around it); "log": as
    # log(CoC + 1 px), weighted by their relative variance (every blur size weighs alike)
    spread_domain: str = "px"
    sigma_scale: float = 1.0  # calibration of the final sigma (fitted on synthetic scenes)
    refine_channels: int = 0  # width of the stage-2 refiner (:mod:`.refiner`); 0: the rule-based spread
    refine_candidates: int = 2  # readings the refiner blends: 2 (near, far) or 6 (+ every level's own)
    side_channels: int = 0  # width of the stage-3 side head (:mod:`.side`); 0: no learned side

    def to_dict(self) -> dict:
        return asdict(self)


class BlurReader(nn.Module):
    """Reads the CoC of one pyramid level (see module doc).

    ``forward(y, noise)`` with ``y`` (B, 1, H, W) linear luminance (H, W even) and ``noise`` (B,)
    its noise standard deviation returns ``coc`` and ``sigma``, (B, 1, H/2, W/2), px at this level.
    """

    def __init__(self, config: ReaderConfig | None = None):
        super().__init__()
        self.config = cfg = config or ReaderConfig()
        ch = cfg.channels
        self.stem = nn.Conv2d(5, ch, 3, padding=1)
        self.blocks = nn.ModuleList(nn.Conv2d(ch, ch, 3, padding=d, dilation=d) for d in cfg.dilations)
        self.head = nn.Sequential(nn.Conv2d(ch, ch, 1), nn.ReLU(), nn.Conv2d(ch, 2, 1))
        self.refiner = Refiner(cfg.refine_channels, candidates=cfg.refine_candidates) if cfg.refine_channels else None
        self.side = SideHead(cfg.side_channels) if cfg.side_channels else None
        # NHWC: the narrow convolutions run about twice as fast on CPU (oneDNN) and suit tensor cores
        self.to(memory_format=torch.channels_last)

    def inputs(self, y: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """(B, 5, H/2, W/2): space-to-depth of ``y / local mean - 1`` and the relative noise."""
        mean = box_mean(y, self.config.norm_window) + 0.01
        z = (y / mean - 1.0).clamp(-1.0, 5.0)
        rel_noise = (10.0 * noise.view(-1, 1, 1, 1) / mean).clamp(0.0, 3.0)
        return torch.cat([F.pixel_unshuffle(z, 2), F.avg_pool2d(rel_noise, 2)], 1)

    def forward(self, y: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.stem(self.inputs(y, noise).contiguous(memory_format=torch.channels_last)))
        for conv in self.blocks:
            x = x + F.relu(conv(x))
        o = self.head(x).contiguous()
        cfg = self.config
        coc = F.softplus(o[:, :1]) * cfg.coc_unit
        sigma = cfg.sigma_floor + F.softplus(o[:, 1:2]) * (cfg.coc_unit / 4)
        return coc, sigma


LOG_OFFSET_PX = 1.0  # px: the log-domain spread reads log(CoC + this), finite at a sharp pixel


def box_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over a k x k window (k odd) of (B, C, H, W), the window clipped at the borders: what
    ``avg_pool2d(x, k, 1, k // 2, count_include_pad=False)`` gives (to float32 rounding of running
    sums, about 1e-5 of the values), in O(1) per pixel from running sums along each axis (the
    pooling took a third of the reader's time at 640x480)."""
    return _box_mean_1d(_box_mean_1d(x, k, -2), k, -1)


def _box_mean_1d(x: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    n, r = x.shape[dim], k // 2
    c = torch.cumsum(x, dim)
    c = torch.cat([torch.zeros_like(c.narrow(dim, 0, 1)), c], dim)  # c[i] = sum of x[:i]
    idx = torch.arange(n, device=x.device)
    hi, lo = (idx + r + 1).clamp(max=n), (idx - r).clamp(min=0)
    shape = [1] * x.dim()
    shape[dim] = n
    return (c.index_select(dim, hi) - c.index_select(dim, lo)) / (hi - lo).to(x.dtype).view(shape)


def laplace_nll(coc: torch.Tensor, sigma: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel negative log-likelihood of ``target`` under a Laplace distribution of mean ``coc``
    and standard deviation ``sigma`` (scale ``sigma / sqrt(2)``), up to a constant."""
    b = sigma / math.sqrt(2.0)
    return (coc - target).abs() / b + torch.log(b)


def _pad_even(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    return F.pad(x, (0, w % 2, 0, h % 2), mode="replicate") if (h % 2 or w % 2) else x


def read_levels(reader: BlurReader, y: torch.Tensor) -> list:
    """[(coc, sigma)] per pyramid level, px at full resolution, each at half its level's size.

    Args:
        y: (B, 1, H, W) linear luminance.
    """
    cfg = reader.config
    out = []
    level = y
    for lev in range(cfg.levels):
        if lev and min(level.shape[-2:]) // 2 < cfg.min_level_side:
            break
        if lev:
            level = F.avg_pool2d(_pad_even(level), 2)
        h, w = level.shape[-2:]
        coc, sigma = reader(_pad_even(level), noise_sigma(level))
        hh, ww = (h + 1) // 2, (w + 1) // 2
        out.append((coc[..., :hh, :ww] * 2**lev, sigma[..., :hh, :ww] * 2**lev))
    return out


def fuse_levels(levels: list, size: tuple, switch_px: float = 10.0, width_px: float = 1.5):
    """One CoC and sigma (px) from the levels, on a grid of ``size``: the finest level whose
    reading is within the reader's range (scale equivariance: a blur too large for one level is
    in range a level or two down; a coarser level reads small blur poorly, so it is not used
    where a finer one can read).

    Level ``l`` is out of range where its reading exceeds ``switch_px`` px *at that level*
    (a logistic step of width ``width_px``): its weight is the chance that every finer level is
    out of range and it is not; the coarsest level takes what is left. CoC and sigma are the
    weighted mixture's mean and standard deviation. Finer levels enter as block averages,
    coarser ones upsampled."""
    maps = []
    for lev, (coc, sigma) in enumerate(levels):
        m = torch.cat([coc, sigma * sigma], 1)
        if m.shape[-2:] != tuple(size):
            finer = m.shape[-1] > size[-1]
            m = F.interpolate(
                m, size=size, mode="area" if finer else "bilinear", align_corners=None if finer else False
            )
        maps.append((m[:, :1], m[:, 1:2], lev))
    remaining = torch.ones_like(maps[0][0])
    mean = torch.zeros_like(remaining)
    second = torch.zeros_like(remaining)  # E[c^2] of the mixture
    for i, (coc, var, lev) in enumerate(maps):
        out = torch.sigmoid((coc / 2**lev - switch_px) / width_px) if i < len(maps) - 1 else torch.zeros_like(coc)
        w = remaining * (1.0 - out)
        mean = mean + w * coc
        second = second + w * (var + coc * coc)
        remaining = remaining * out
    return mean, (second - mean * mean).clamp_min(1e-8).sqrt()


def spread(coc, sigma, guide, sigma_s: float, sigma_r: float, power: float = 1.0, domain: str = "px"):
    """Combine each pixel's reading with its edge-bounded neighbourhood's (see module doc).

    Readings weigh ``variance ** -power`` in the neighbourhood. Returns CoC (px), sigma (px), the
    share of the pixel's own reading in [0, 1], and the neighbourhood's mean (px), standard
    deviation (px) and support (summed weight). ``domain`` ``log`` spreads ``u = log(CoC + 1 px)``
    with its standard deviation ``sigma / (CoC + 1 px)`` (to first order) and maps the results
    back to px."""
    if domain == "log":
        u, sigma_u = torch.log(coc + LOG_OFFSET_PX), sigma / (coc + LOG_OFFSET_PX)
        fu, sd_u, own, mean_u, sd_nu, support = spread(u, sigma_u, guide, sigma_s, sigma_r, power)
        fused, mean_n = torch.exp(fu) - LOG_OFFSET_PX, torch.exp(mean_u) - LOG_OFFSET_PX
        return fused, sd_u * (fused + LOG_OFFSET_PX), own, mean_n, sd_nu * (mean_n + LOG_OFFSET_PX), support
    if domain != "px":
        raise ValueError(f"spread domain must be 'px' or 'log', got {domain!r}")
    var = sigma * sigma
    w = var.pow(-power)
    moments, support = propagate(torch.cat([coc, coc * coc, var], 1), w, guide, sigma_s, sigma_r)
    mean_n = moments[:, :1]
    # the neighbourhood's reading as an estimate of this pixel's CoC: its error is the readings'
    # own (their typical variance) plus how much they differ around the pixel
    var_n = moments[:, 2:3] + (moments[:, 1:2] - mean_n * mean_n).clamp_min(0.0)
    own = var_n / (var + var_n)  # precision share of the pixel's own reading
    fused = own * coc + (1.0 - own) * mean_n
    # a mixture of the two estimates (their errors are correlated: no precision gain)
    sd = (own * var + (1.0 - own) * var_n).sqrt()
    return fused, sd, own, mean_n, var_n.sqrt(), support


@torch.no_grad()
def grid_features(reader: BlurReader, image_srgb: torch.Tensor):
    """The evidence on the reader's grid (a ``grid``-th of the input resolution): features
    (B, N_FEATURES, h, w) and the candidate readings (B, K, h, w) px for the refiner (K =
    ``refine_candidates``: near and far spread, then every level's own reading, the fused reading
    standing in for a level the image is too small to have), and (CoC px, sigma px, own share) of
    the rule-based spread."""
    cfg = reader.config
    h, w = image_srgb.shape[-2:]
    grid = (-(-h // cfg.grid), -(-w // cfg.grid))
    y = luminance(image_srgb)
    levels = [(c.float(), s.float()) for c, s in read_levels(reader, y.to(next(reader.parameters()).dtype))]
    coc, sigma = fuse_levels(levels, grid, cfg.level_switch_px, cfg.level_switch_width)
    guide = F.interpolate(image_srgb.float(), size=grid, mode="area")
    near = spread(coc, sigma, guide, cfg.spread_sigma_s, cfg.spread_sigma_r, cfg.spread_power, cfg.spread_domain)
    far = spread(coc, sigma, guide, 8 * cfg.spread_sigma_s, cfg.spread_sigma_r, 3.0)
    feats, level_cocs = [], []
    for lev in range(MAX_LEVELS):
        if lev < len(levels):
            c, s = (F.interpolate(t, size=grid, mode="bilinear", align_corners=False) for t in levels[lev])
            feats += [c / 8.0, torch.log(s)]
            level_cocs.append(c)
        else:
            feats += [torch.zeros_like(coc), torch.zeros_like(coc)]
            level_cocs.append(coc)
    feats += [coc / 8.0, torch.log(sigma), near[3] / 8.0, torch.log(near[4] + 1e-3)]
    feats += [far[3] / 8.0, torch.log(far[4] + 1e-3), torch.log1p(far[5])]
    mean_y = F.interpolate(y, size=grid, mode="area")
    contrast = (F.interpolate(y * y, size=grid, mode="area") - mean_y * mean_y).clamp_min(0).sqrt()
    feats += [torch.log(contrast / (mean_y + 0.01) + 1e-3), torch.log(mean_y + 0.01)]
    candidates = [near[0], far[3]] + (level_cocs if cfg.refine_candidates > 2 else [])
    return torch.cat(feats, 1), torch.cat(candidates, 1), near[:3]


def refine(reader: BlurReader, evidence) -> tuple:
    """The final (CoC px, sigma px, own share) on the reader's grid from :func:`grid_features`'
    ``evidence``: stage 2's where the reader has a refiner, else the rule-based spread's; sigma
    calibrated (``sigma_scale``)."""
    feats, candidates, (coc, sigma, own) = evidence
    if reader.refiner is not None:
        dt = next(reader.refiner.parameters()).dtype
        coc, sigma = reader.refiner(feats.to(dt), candidates.to(dt))
    return coc.float(), sigma.float() * reader.config.sigma_scale, own


def to_input(maps: torch.Tensor, grid: int, h: int, w: int) -> torch.Tensor:
    """Maps on the reader's grid (B, C, h / grid, w / grid) -> (B, C, h, w), bilinear."""
    size = (maps.shape[-2] * grid, maps.shape[-1] * grid)
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)[..., :h, :w]


@torch.no_grad()
def read_defocus(reader: BlurReader, image_srgb: torch.Tensor, evidence=None) -> DefocusEstimate:
    """CoC (px), sigma (px) and confidence of an sRGB batch (B, 3, H, W) in [0, 1], at the input
    resolution (see module doc). ``evidence``: :func:`grid_features` of the same batch when the
    caller already has it (it is not computed again)."""
    h, w = image_srgb.shape[-2:]
    coc, sigma, own = refine(reader, evidence if evidence is not None else grid_features(reader, image_srgb))
    maps = to_input(torch.cat([coc, sigma, own], 1), reader.config.grid, h, w)
    return DefocusEstimate(coc=maps[:, :1], confidence=maps[:, 2:3], sigma=maps[:, 1:2], edges=maps[:, 2:3] > 0.5)


@torch.no_grad()
def read_with_side(reader: BlurReader, image_srgb: torch.Tensor, lens: torch.Tensor, fx: torch.Tensor):
    """:func:`read_defocus` and the side head's calibrated P(behind the focus plane) (B, 1, H, W)
    at the input resolution (None where the reader has no side head).

    Args:
        image_srgb: (B, 3, H, W) in [0, 1]; lens: (B, 3) [f (m), N, d_f (m)]; fx: (B,) px at
            this resolution.
    """
    h, w = image_srgb.shape[-2:]
    evidence = grid_features(reader, image_srgb)
    coc, sigma, own = refine(reader, evidence)
    maps = [coc, sigma, own]
    if reader.side is not None:
        guide = F.interpolate(image_srgb.float(), size=coc.shape[-2:], mode="area")
        x = side_inputs(evidence[0], coc, sigma, guide, lens, fx)
        maps.append(reader.side.probability(x.to(next(reader.side.parameters()).dtype)))
    maps = to_input(torch.cat(maps, 1), reader.config.grid, h, w)
    est = DefocusEstimate(coc=maps[:, :1], confidence=maps[:, 2:3], sigma=maps[:, 1:2], edges=maps[:, 2:3] > 0.5)
    return est, (maps[:, 3:4] if reader.side is not None else None)
