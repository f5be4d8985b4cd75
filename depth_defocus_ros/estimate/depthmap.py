"""Depth only where it is determined: the side of the focus plane, the thin-lens inverse, and a
per-pixel validity.

Every CoC ``c`` has two depths, one in front of the focus plane and one behind it
(:func:`.optics.depth_on_side`). A pixel's depth is published only where it is determined:

* the side: ``focus_side`` ``front`` / ``behind`` (the user knows it: e.g. a camera focused at or
  beyond the far end of its working range sees everything in front), or ``auto``: a prior
  probability of "behind" (0.5 without a learned side, else the learned one's), overruled by
  physics: a CoC above the CoC at infinity can only be in front (applied only without a learned
  side: the learned side reads ``c / c_inf`` itself and is calibrated with it), and a candidate
  outside ``[min_depth_m, max_depth_m]`` (the working range) is not taken;
* the expected relative depth error: the CoC uncertainty ``sigma_c`` carried through the thin-lens
  inverse (:func:`.optics.relative_depth_error`), plus, where the side is unsure, the distance
  to the other side's depth weighted by the probability of the wrong side:
  ``rel = sqrt(rel_c^2 + p_wrong * spread^2)`` with ``p_wrong`` the probability of the side not
  taken (which may be the likelier one: where the far depth does not exist or is too far to
  risk) and ``spread = |d_far - d_near| / d_near`` (:func:`side_spread`): capped at 1 where the
  near depth is taken (the cap keeps a tiny chance of a far-side depth near infinity from ruling
  out a pixel whose side is all but certain), not where the far one is (a wrong far depth is off
  by ``d_far / d_near - 1``, without bound).

The side taken is the one with the lower expected AbsRel (:func:`choose_behind`): an even chance
takes the near depth, whose error is bounded. Pixels with ``rel > max_relative_error`` or a depth
outside the working range are NaN in the published depth (REP 118), and in the point cloud.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..optics import coc_at_infinity_batch, depth_on_side, relative_depth_error

__all__ = ["FOCUS_SIDES", "DepthResult", "side_probability", "choose_behind", "compose_depth"]

FOCUS_SIDES = ("auto", "front", "behind")
MAX_FAR_SPREAD = 100.0  # the largest relative cost of a wrong far side that enters the expected error


@dataclass
class DepthResult:
    """Per-pixel maps, each (B, 1, H, W) float32."""

    depth: torch.Tensor  # m, NaN where not published
    depth_all: torch.Tensor  # m, the chosen side's depth everywhere (inf beyond the far limit)
    relative_error: torch.Tensor  # expected sigma_d / d (inf where undetermined)
    uncertainty: torch.Tensor  # m: relative_error * depth_all
    p_behind: torch.Tensor  # probability that the pixel lies behind the focus plane


def _normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def side_probability(
    coc,
    coc_sigma,
    lens,
    fx,
    focus_side: str = "auto",
    prior_behind=None,
    min_depth_m: float = 0.0,
    max_depth_m: float = math.inf,
) -> torch.Tensor:
    """(B, 1, H, W) probability that each pixel lies behind the focus plane.

    Args:
        coc, coc_sigma: (B, 1, H, W) CoC and its standard deviation (px).
        lens: (B, 3); fx: (B,) px.
        focus_side: ``auto``, ``front`` or ``behind``.
        prior_behind: (B, 1, H, W) learned probability of "behind", or None (0.5: no side cue).
        min_depth_m, max_depth_m: the working range; a side whose depth falls outside it is unlikely.
    """
    if focus_side not in FOCUS_SIDES:
        raise ValueError(f"focus_side must be one of {FOCUS_SIDES}, got {focus_side!r}")
    if focus_side != "auto":
        return torch.full_like(coc, 1.0 if focus_side == "behind" else 0.0)
    p = torch.full_like(coc, 0.5) if prior_behind is None else prior_behind.to(coc)
    c_inf = coc_at_infinity_batch(lens, fx).view(-1, 1, 1, 1)
    d_f = lens[:, 2].view(-1, 1, 1, 1)
    sigma = coc_sigma.clamp_min(1e-3)
    # behind is only possible for c < c_inf, and within the range for c < c_inf (1 - d_f / max_depth);
    # a learned side has seen c / c_inf already (reading/side.py): counting the lens rule again
    # would make it overconfident, so it gets only the working range, which it cannot know
    if prior_behind is None or math.isfinite(max_depth_m):
        c_behind_max = c_inf * (1.0 - d_f / max_depth_m) if math.isfinite(max_depth_m) else c_inf
        p_behind_ok = _normal_cdf((c_behind_max - coc) / sigma)
    else:
        p_behind_ok = torch.ones_like(coc)
    # in front the depth is d_f / (1 + c / c_inf) >= min_depth: c <= c_inf (d_f / min_depth - 1)
    if min_depth_m > 0:
        p_front_ok = _normal_cdf((c_inf * (d_f / min_depth_m - 1.0) - coc) / sigma)
    else:
        p_front_ok = torch.ones_like(coc)
    behind, front = p * p_behind_ok, (1 - p) * p_front_ok
    return behind / (behind + front).clamp_min(1e-12)


def choose_behind(p_behind, d_near, d_far) -> torch.Tensor:
    """The side with the lower expected relative error ``|d - d_true| / d_true`` (AbsRel).

    Taking the near depth when the truth is the far one costs ``1 - d_near / d_far`` (< 1); taking
    the far depth when the truth is the near one costs ``d_far / d_near - 1`` (unbounded). So the
    far side is taken only when ``p_behind >= r / (1 + r)``, ``r = d_far / d_near``: at the focus
    plane (r = 1) that is 0.5, and a far depth near infinity needs near certainty.
    """
    r = (d_far / d_near).nan_to_num(nan=math.inf, posinf=math.inf)
    threshold = torch.where(torch.isfinite(r), r / (1.0 + r), torch.ones_like(r))
    return p_behind >= threshold


def side_spread(d, d_other, behind) -> torch.Tensor:
    """What a wrong side costs, relative: the gap between the two depths over the near one.

    Taking the near depth when the truth is the far one costs at most 100 % (capped: a tiny
    chance of a far depth near infinity must not rule out a pixel whose side is all but certain);
    taking the far depth when the truth is the near one costs ``d_far / d_near - 1``, without bound
    (up to :data:`MAX_FAR_SPREAD`): a far depth is published only where its side is near certain.
    """
    gap = ((d_other - d).abs() / torch.minimum(d, d_other)).nan_to_num(nan=MAX_FAR_SPREAD, posinf=MAX_FAR_SPREAD)
    return torch.where(behind, gap.clamp(max=MAX_FAR_SPREAD), gap.clamp(max=1.0))


def compose_depth(
    coc,
    coc_sigma,
    p_behind,
    lens,
    fx,
    max_relative_error: float = 0.25,
    min_depth_m: float = 0.0,
    max_depth_m: float = math.inf,
) -> DepthResult:
    """Depth (m) with NaN where it is not determined (see module doc).

    Args:
        coc, coc_sigma: (B, 1, H, W) px at the resolution where ``fx`` holds.
        p_behind: (B, 1, H, W) from :func:`side_probability`.
        lens: (B, 3); fx: (B,) px.
        max_relative_error: publish pixels whose expected relative depth error is at most this.
    """
    d_near = depth_on_side(coc, torch.zeros_like(coc, dtype=torch.bool), lens, fx)
    d_far = depth_on_side(coc, torch.ones_like(coc, dtype=torch.bool), lens, fx)
    behind = choose_behind(p_behind, d_near, d_far)
    d = torch.where(behind, d_far, d_near)
    d_other = torch.where(behind, d_near, d_far)
    rel_c = relative_depth_error(coc_sigma, coc, behind, lens, fx)
    p_wrong = torch.where(behind, 1 - p_behind, p_behind)  # the side not taken (it may be the likelier one)
    spread = side_spread(d, d_other, behind)
    side_term = p_wrong * spread * spread
    rel = torch.sqrt(rel_c * rel_c + side_term)
    ok = (rel <= max_relative_error) & (d >= min_depth_m) & (d <= max_depth_m) & torch.isfinite(d)
    nan = torch.full_like(d, math.nan)
    return DepthResult(
        depth=torch.where(ok, d, nan),
        depth_all=d,
        relative_error=rel,
        uncertainty=rel * d,
        p_behind=p_behind,
    )
