"""Training-free defocus estimate: multi-scale re-blur gradient ratios at edges, propagated
edge-aware, with a confidence.

At a step edge blurred by a disc of diameter ``c`` (px), the peak gradient after a further
Gaussian blur of std ``s`` is ``A * h(c, s)``: the contrast ``A`` times a known function of the
blur (Zhuo and Sim 2011 use one ``s`` and a Gaussian PSF). Measuring the peak gradient at several
``s`` and fitting ``log g_k = log A + log h(c, s_k)`` for ``c`` (``A`` free) reads the blur in
pixels without knowing the contrast, and without any training: ``h`` is computed once from the
optics (:mod:`.render`'s anti-aliased disc, through the very same gradient code).

Steps (all vectorised torch, CPU or GPU; no per-pixel Python loop):

1. linear-light luminance; sensor noise level from the median absolute Laplacian (Immerkaer);
2. gradient magnitudes at ``s = 0, 1, 2, 4, 8`` px (the large scales on a decimated image);
3. edges: local maxima of the ``s = 1`` gradient across the edge, above ``edge_snr`` times noise;
4. at edges: noise energy subtracted per scale, weighted least squares over a grid of CoC
   candidates (0-48 px), using larger scales only where the blur is large enough to need them;
5. :func:`.propagate.propagate` spreads the edge values over the image, bounded by its edges.

Returns the CoC (px at the input resolution), a confidence in [0, 1] (how much edge evidence
lies near a pixel) and a CoC standard deviation (px) that grows with the CoC and falls with the
confidence.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..synth.render import render_defocus, srgb_to_linear
from .propagate import propagate

__all__ = ["DefocusEstimate", "ReblurConfig", "estimate_defocus", "measured_edges", "scale_gradients", "SCALES_PX"]

SCALES_PX = (0.0, 1.0, 2.0, 4.0, 8.0)  # Gaussian re-blur std (px)
COC_GRID_MAX = 48.0  # px: the largest CoC the estimate can return
# CoC candidates (px): 0.25 px steps to 4 px, 0.5 px to 12 px, 1 px beyond (relative precision)
COC_GRID = tuple([0.25 * i for i in range(16)] + [4.0 + 0.5 * i for i in range(16)] + [12.0 + i for i in range(37)])


@dataclass(frozen=True)
class ReblurConfig:
    """Knobs of the training-free estimate (defaults are the shipped ones)."""

    edge_snr: float = 6.0  # an edge's gradient (s = 1) must exceed this many noise std
    max_edge_fraction: float = 0.03  # measure at most this share of the pixels (the strongest edges)
    max_weight_snr: float = 5.0  # edge weight (snr / edge_snr)^2, capped at this factor squared
    adapt: float = 1.5  # use scale s_k once the CoC read with the smaller scales exceeds adapt * s_{k-1}
    sigma_s: float = 400.0  # propagation extent (px)
    sigma_r: float = 0.5  # propagation range (summed RGB step that costs sigma_s px)
    support_radius: int = 7  # px: the neighbourhood whose edge evidence makes a pixel's confidence
    support_half: float = 2.5  # mean edge weight in that neighbourhood at which the confidence is 0.5
    propagation_decimation: int = 2  # propagate on a grid this many times coarser (speed)


@dataclass
class DefocusEstimate:
    """Per-pixel outputs, each (B, 1, H, W) float32 at the input resolution."""

    coc: torch.Tensor  # CoC diameter (px)
    confidence: torch.Tensor  # [0, 1]: 0 = no edge evidence nearby
    sigma: torch.Tensor  # CoC standard deviation (px)
    edges: torch.Tensor  # bool: pixels where the blur was measured
    # (B, 5, H, W) when asked for: log(g_k / g_1) for s_k = 0, 2, 4, 8 px, and log(g_1 / noise)
    features: torch.Tensor | None = None


# ------------------------------------------------------------------------------ filters
@functools.lru_cache(maxsize=32)
def _gauss_1d(sigma: float) -> torch.Tensor:
    r = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, 1, H, W), replicate borders; sigma 0 = identity."""
    if sigma <= 0:
        return x
    k = _gauss_1d(float(sigma)).to(x)
    r = k.numel() // 2
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))


def _gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences (per px) of (B, 1, H, W)."""
    gx = F.pad(x[..., :, 2:] - x[..., :, :-2], (1, 1, 0, 0), mode="replicate") * 0.5
    gy = F.pad(x[..., 2:, :] - x[..., :-2, :], (0, 0, 1, 1), mode="replicate") * 0.5
    return gx, gy


def _magnitude(x: torch.Tensor) -> torch.Tensor:
    gx, gy = _gradients(x)
    return torch.sqrt(gx * gx + gy * gy + 1e-20)


def scale_gradients(y: torch.Tensor, scales=SCALES_PX, blurred: dict | None = None) -> torch.Tensor:
    """(B, K, H, W) gradient magnitude (per px) of luminance ``y`` (B, 1, H, W) after a Gaussian
    blur of std ``s`` for each ``s`` in ``scales``. Scales >= 4 px are computed on an image
    decimated by s/2 (box average, then the remaining blur) and interpolated back: a fixed cost
    per scale, whatever its size. ``blurred``: already blurred images by scale (reused)."""
    h, w = y.shape[-2:]
    out = []
    for s in scales:
        f = int(s // 2) if s >= 4 else 1
        if f > 1 and min(h, w) >= 4 * f:
            small = F.avg_pool2d(y, f, f, ceil_mode=True)
            rest = math.sqrt(max(s * s - f * f / 12.0, 0.0)) / f  # box of width f has variance f^2/12
            g = _magnitude(_blur(small, rest)) / f
            out.append(F.interpolate(g, size=(h, w), mode="bilinear", align_corners=False))
        else:
            out.append(_magnitude(blurred[s] if blurred and s in blurred else _blur(y, s)))
    return torch.cat(out, 1)


def luminance(image_srgb: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) linear-light luminance of an sRGB image (B, 3, H, W) in [0, 1]."""
    lin = srgb_to_linear(image_srgb.float())
    return 0.2126 * lin[:, :1] + 0.7152 * lin[:, 1:2] + 0.0722 * lin[:, 2:3]


def noise_sigma(y: torch.Tensor) -> torch.Tensor:
    """(B,) noise standard deviation of ``y`` from the median absolute Laplacian (Immerkaer 1996,
    robust form); floored at the 8-bit quantisation noise (1/255/sqrt(12) in sRGB) of a mid-grey
    in linear light, where an 8-bit image has no less noise than that."""
    k = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]], device=y.device).view(1, 1, 3, 3)
    hp = F.conv2d(y.float(), k).abs().flatten(1)
    return (hp.median(dim=1).values / (0.6745 * 6.0)).clamp_min(1e-3)


# ------------------------------------------------------------------------------ calibration
@functools.lru_cache(maxsize=4)
def _calibration(scales=SCALES_PX) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(grid (C,), log h (C, K), noise energy per unit variance (K,)), computed once from the
    optics: disc-blurred step edges and white noise through :func:`scale_gradients`."""
    grid = torch.tensor(COC_GRID)
    coarse = torch.arange(0.0, COC_GRID_MAX + 1e-6, 0.5)
    size, width = 160, 32
    x = torch.arange(size, dtype=torch.float32) + 0.5
    rows = []
    for offset in (0.0, 0.25, 0.5, 0.75):
        step = (x - size / 2 - offset + 0.5).clamp(0, 1)  # anti-aliased step, 0.2 -> 0.8 in linear light
        img = (0.2 + 0.6 * step).view(1, 1, 1, size).expand(len(coarse), 3, width, size).contiguous()
        blurred = render_defocus(img, coarse.view(-1, 1, 1, 1).expand(-1, 1, width, size).contiguous())
        g = scale_gradients(blurred[:, :1], scales)[:, :, width // 2]  # (C, K, size)
        centre = g[:, 1, size // 2 - 4 : size // 2 + 4].argmax(-1) + size // 2 - 4  # the edge, as NMS finds it
        rows.append(g.gather(-1, centre.view(-1, 1, 1).expand(-1, len(scales), 1))[..., 0])
    h_coarse = torch.stack(rows).mean(0)  # (C', K)
    # interpolate the coarse table onto the fine grid (h is smooth in c)
    pos = grid / 0.5
    lo = pos.floor().long().clamp(max=len(coarse) - 2)
    t = (pos - lo).unsqueeze(1)
    log_h = torch.lerp(h_coarse[lo].log(), h_coarse[lo + 1].log(), t)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 1, 256, 256, generator=gen)
    noise_energy = (scale_gradients(noise, scales)[..., 16:-16, 16:-16] ** 2).mean((0, 2, 3))
    return grid, log_h, noise_energy


def _fit_coc(
    log_g: torch.Tensor, weight: torch.Tensor, log_h: torch.Tensor, grid: torch.Tensor, adapt: float, scales=SCALES_PX
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted least squares of ``log g = log A + log h(c, s)`` over the CoC grid.

    Args:
        log_g, weight: (N, K) log peak gradients and their weights at N edge pixels.
        log_h: (C, K) calibration table on ``grid`` (C,).
    Returns:
        CoC (N,) px and the weighted residual variance (N,) of the chosen fit.
    """
    coc = resid = None
    for kmax in range(3, len(scales) + 1):
        w = weight.clone()
        w[:, kmax:] = 0
        sw = w.sum(1, keepdim=True).clamp_min(1e-6)  # (N, 1)
        wg = w * log_g
        # sum_k w (g - h - b)^2 with b the weighted mean of g - h, for every candidate at once
        s1 = wg.sum(1, keepdim=True) - w @ log_h.T  # (N, C): sum w (g - h)
        s2 = (wg * log_g).sum(1, keepdim=True) - 2 * wg @ log_h.T + w @ (log_h * log_h).T
        err = (s2 - s1 * s1 / sw) / sw
        best = err.argmin(1)
        c_k, r_k = _refine(err, best, grid), err.gather(1, best[:, None])[:, 0]
        if coc is None:
            coc, resid = c_k, r_k
        else:
            use = coc > adapt * scales[kmax - 2]
            coc, resid = torch.where(use, c_k, coc), torch.where(use, r_k, resid)
    return coc, resid


def _refine(err: torch.Tensor, best: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Sub-grid CoC: the vertex of the parabola through the best candidate and its neighbours."""
    i = best.clamp(1, len(grid) - 2)
    e0, e1, e2 = (err.gather(1, (i + d)[:, None])[:, 0] for d in (-1, 0, 1))
    c0, c1, c2 = grid[i - 1], grid[i], grid[i + 1]
    # vertex of the parabola through three (c, e) points, kept within the two neighbours
    num = (c1 - c0) ** 2 * (e1 - e2) - (c1 - c2) ** 2 * (e1 - e0)
    den = (c1 - c0) * (e1 - e2) - (c1 - c2) * (e1 - e0)
    vertex = c1 - 0.5 * num / torch.where(den.abs() > 1e-12, den, torch.ones_like(den))
    vertex = torch.where(den > 1e-12, vertex.clamp(c0, c2), c1)
    return torch.where(best == i, vertex, grid[best])


def _edges(g1: torch.Tensor, y1: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Canny-style non-maximum suppression of the s = 1 gradient magnitude ``g1`` along the
    gradient direction of the s = 1 image ``y1`` (quantised to 0, 45, 90, 135 degrees), above
    ``threshold`` (B,)."""
    gx, gy = _gradients(y1)
    angle = torch.atan2(gy, gx)  # (B, 1, H, W)
    sector = torch.remainder(torch.round(angle / (math.pi / 4)), 4).long()  # 0: x, 1: diagonal, 2: y, 3: anti
    pad = F.pad(g1, (1, 1, 1, 1), mode="replicate")
    h, w = g1.shape[-2:]

    def at(dy, dx):
        return pad[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    ahead = torch.stack([at(0, 1), at(1, 1), at(1, 0), at(1, -1)])  # (4, B, 1, H, W)
    behind = torch.stack([at(0, -1), at(-1, -1), at(-1, 0), at(-1, 1)])
    a = ahead.gather(0, sector[None])[0]
    b = behind.gather(0, sector[None])[0]
    return (g1 > a) & (g1 >= b) & (g1 > threshold.view(-1, 1, 1, 1))


def _strongest(edges: torch.Tensor, g1: torch.Tensor, fraction: float) -> torch.Tensor:
    """Keep at most ``fraction`` of each image's pixels: the edges with the largest gradient."""
    b = edges.shape[0]
    k = max(1, int(fraction * edges[0].numel()))
    score = torch.where(edges, g1, torch.zeros_like(g1)).view(b, -1)
    if int(edges.view(b, -1).sum(1).max()) <= k:
        return edges
    kth = score.topk(k, dim=1).values[:, -1:]  # (B, 1)
    return edges & (score >= kth.clamp_min(1e-20)).view_as(edges)


def _edge_pixels(g1: torch.Tensor, y1: torch.Tensor, noise_g1: torch.Tensor, cfg: ReblurConfig) -> torch.Tensor:
    """Edges of the s = 1 gradient ``g1`` above ``edge_snr`` x its rms noise ``noise_g1`` (B,),
    at most the strongest ``max_edge_fraction`` of the pixels."""
    edges = _edges(g1, y1, cfg.edge_snr * noise_g1)
    return _strongest(edges, g1, cfg.max_edge_fraction)


@torch.no_grad()
def measured_edges(image_srgb: torch.Tensor, config: ReblurConfig | None = None) -> torch.Tensor:
    """(B, 1, H, W) bool: the edge pixels where the training-free estimate measures the blur of an
    sRGB batch (B, 3, H, W) in [0, 1]; found from the image alone (the same pixels whatever
    estimator is judged on them)."""
    cfg = config or ReblurConfig()
    noise_energy = _calibration()[2].to(image_srgb.device)
    y = luminance(image_srgb)
    y1 = _blur(y, SCALES_PX[1])
    return _edge_pixels(_magnitude(y1), y1, noise_sigma(y) * noise_energy[1].sqrt(), cfg)


@torch.no_grad()
def estimate_defocus(
    image_srgb: torch.Tensor, config: ReblurConfig | None = None, features: bool = False
) -> DefocusEstimate:
    """Training-free CoC (px) of an sRGB image batch (B, 3, H, W) in [0, 1] (see module doc).
    ``features``: also return the contrast-free gradient features (network inputs)."""
    cfg = config or ReblurConfig()
    grid, log_h, noise_energy = (t.to(image_srgb.device) for t in _calibration())
    y = luminance(image_srgb)
    y1 = _blur(y, SCALES_PX[1])  # the edge-detection scale
    g = scale_gradients(y, blurred={SCALES_PX[1]: y1})  # (B, K, H, W)
    sigma_n = noise_sigma(y)  # (B,)
    noise_g = sigma_n.view(-1, 1, 1, 1) * noise_energy.sqrt().view(1, -1, 1, 1)  # (B, K, 1, 1) rms noise gradient
    edges = _edge_pixels(g[:, 1:2], y1, noise_g[:, 1, 0, 0], cfg)
    idx = edges.flatten()
    b, k, h, w = g.shape
    gk = g.permute(0, 2, 3, 1).reshape(-1, k)[idx]  # (N, K)
    nk = noise_g.expand(b, k, h, w).permute(0, 2, 3, 1).reshape(-1, k)[idx]
    signal = (gk * gk - nk * nk).clamp_min(1e-20)
    snr = signal / (nk * nk)
    weight_k = snr / (1 + snr)  # scales drowned in noise count little
    coc_e, resid = _fit_coc(0.5 * signal.log(), weight_k, log_h, grid, cfg.adapt)
    snr1 = gk[:, 1] / nk[:, 1]
    w_e = (snr1 / cfg.edge_snr).clamp(max=cfg.max_weight_snr) ** 2 / (1 + resid / 0.01)
    values = torch.zeros(b * h * w, device=y.device)
    weights = torch.zeros(b * h * w, device=y.device)
    values[idx], weights[idx] = coc_e, w_e
    values, weights = values.view(b, 1, h, w), weights.view(b, 1, h, w)
    f = cfg.propagation_decimation if min(h, w) >= 64 * cfg.propagation_decimation else 1
    if f > 1:  # propagate on a decimated grid (edge weights summed, values weight-averaged)
        ws = F.avg_pool2d(weights, f, f, ceil_mode=True)
        vs = F.avg_pool2d(values * weights, f, f, ceil_mode=True) / ws.clamp_min(1e-12)
        gs = F.avg_pool2d(image_srgb.float(), f, f, ceil_mode=True)
        coc, _ = propagate(vs, ws * f * f, gs, cfg.sigma_s / f, cfg.sigma_r)
        coc = F.interpolate(coc, size=(h, w), mode="bilinear", align_corners=False)
    else:
        coc, _ = propagate(values, weights, image_srgb.float(), cfg.sigma_s, cfg.sigma_r)
    coc = coc.clamp(0.0, COC_GRID_MAX)
    r = cfg.support_radius
    # local edge evidence: a (2r+1)^2 box mean, separable (two 1D passes)
    support = F.avg_pool2d(weights, (1, 2 * r + 1), 1, (0, r), count_include_pad=False)
    support = F.avg_pool2d(support, (2 * r + 1, 1), 1, (r, 0), count_include_pad=False)
    confidence = support / (support + cfg.support_half)
    sigma = (0.3 + 0.25 * coc) * (1.0 + 2.0 * (1.0 - confidence))
    feats = None
    if features:
        log_g = torch.log(g + 1e-12)
        ratios = log_g[:, [0, 2, 3, 4]] - log_g[:, 1:2]
        feats = torch.cat([ratios, log_g[:, 1:2] - torch.log(noise_g[:, 1:2])], 1)
    return DefocusEstimate(coc=coc, confidence=confidence, sigma=sigma, edges=edges, features=feats)
