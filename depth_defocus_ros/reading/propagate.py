"""Edge-aware propagation of sparse measurements: domain-transform normalised convolution.

Gastal and Oliveira's domain transform (SIGGRAPH 2011) maps each image row (column) to a 1D
domain in which distances grow across image edges, so that a plain box filter there is an
edge-preserving filter in the image. Filtering ``w * v`` and ``w`` and dividing (normalised
convolution) spreads sparse values ``v`` with confidences ``w`` over regions bounded by image
edges. Each pass is a cumulative sum, a ``searchsorted`` and a gather per row: vectorised, with
no per-pixel Python loop, on the CPU or a GPU.
"""

from __future__ import annotations

import math

import torch

__all__ = ["propagate"]


def _box_pass(x: torch.Tensor, ct: torch.Tensor, radius: float) -> torch.Tensor:
    """Box sum of radius ``radius`` in domain coordinates along the last dim.

    Args:
        x: (N, C, L) values.
        ct: (N, L) non-decreasing domain coordinates of the samples.
    """
    n, c, length = x.shape
    # float64 cumulative sums: differences of large sums keep their precision
    cs = torch.cat([x.new_zeros(n, c, 1, dtype=torch.float64), x.double().cumsum(-1)], -1)
    lo = torch.searchsorted(ct, (ct - radius).contiguous(), side="left")  # first sample >= ct - r
    hi = torch.searchsorted(ct, (ct + radius).contiguous(), side="right")  # first sample > ct + r
    lo = lo[:, None].expand(n, c, length)
    hi = hi[:, None].expand(n, c, length)
    return (cs.gather(-1, hi) - cs.gather(-1, lo)).to(x.dtype)


def propagate(
    values: torch.Tensor,
    weight: torch.Tensor,
    guide: torch.Tensor,
    sigma_s: float = 400.0,
    sigma_r: float = 0.5,
    iterations: int = 3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spread sparse ``values`` over the image, stopping at edges of ``guide``.

    Args:
        values: (B, C, H, W) measurements (any unit; here CoC in px), C >= 1 channels sharing
            one weight (e.g. a value and its square, for a local mean and variance).
        weight: (B, 1, H, W) confidence of each measurement, >= 0 (0 = no measurement).
        guide: (B, C, H, W) image in [0, 1] whose edges bound the propagation.
        sigma_s: spatial extent (px) of the filter.
        sigma_r: range extent (guide units): a guide step of ``sigma_r`` costs ``sigma_s`` px.
        iterations: alternating horizontal/vertical passes (3 is the usual choice).
    Returns:
        dense (B, C, H, W) values, and support (B, 1, H, W): the filtered weight (how much
        measurement lies near each pixel, in the same unit as ``weight``).
    """
    b, nc, h, w = values.shape
    g = guide.float()
    dx = (g[..., :, 1:] - g[..., :, :-1]).abs().sum(1)  # (B, H, W-1)
    dy = (g[..., 1:, :] - g[..., :-1, :]).abs().sum(1)  # (B, H-1, W)
    ratio = sigma_s / sigma_r
    ctx = torch.cat([g.new_zeros(b, h, 1), (1 + ratio * dx).cumsum(-1)], -1).reshape(b * h, w).contiguous()
    cty = torch.cat([g.new_zeros(b, 1, w), (1 + ratio * dy).cumsum(-2)], -2)
    cty = cty.permute(0, 2, 1).reshape(b * w, h).contiguous()
    x = torch.cat([values * weight, weight], 1).float()  # (B, C + 1, H, W)
    for i in range(iterations):
        # sigma of pass i (Gastal and Oliveira, eq. 14): passes sum to sigma_s; box radius sqrt(3) sigma
        sigma_i = sigma_s * math.sqrt(3) * 2 ** (iterations - i - 1) / math.sqrt(4**iterations - 1)
        r = sigma_i * math.sqrt(3)
        xh = x.permute(0, 2, 1, 3).reshape(b * h, nc + 1, w)
        xh = _box_pass(xh, ctx, r).reshape(b, h, nc + 1, w)
        xv = xh.permute(0, 3, 2, 1).reshape(b * w, nc + 1, h)
        x = _box_pass(xv, cty, r).reshape(b, w, nc + 1, h).permute(0, 2, 3, 1)
    num, den = x[:, :nc], x[:, nc:]
    # where no measurement reaches, fall back to the image's weighted mean (not to zero)
    mean = (values * weight).sum((2, 3), keepdim=True) / weight.sum((2, 3), keepdim=True).clamp_min(1e-12)
    eps = 1e-2 * den.mean((2, 3), keepdim=True).clamp_min(1e-12)
    return (num + eps * mean) / (den + eps), den
