"""Thin-lens optics: the one definition of CoC, signed defocus and their inverse.

Conventions (shared/DESIGN.md):

* ``f``  focal length in metres, ``N`` f-number, ``A = f / N`` aperture diameter (m).
* ``d_f`` focus distance (m), ``d`` depth (m) along the optical axis (z of the optical frame).
* ``fx`` focal length in pixels (CameraInfo ``K[0]``) at the resolution of the image in question.
* CoC diameter in pixels: ``c = A * fx * |d - d_f| / (d * (d_f - f))``.
* Signed defocus ``s = sign(d - d_f) * c`` (positive behind the focus plane).
* Inverse: ``d = d_f / (1 - k * s)`` with ``k = (d_f - f) / (A * fx)``; ``k * s >= 1`` is beyond
  the far limit (infinite depth).
* Resizing an image by a factor ``r`` scales ``fx`` and ``c`` by ``r``.

The scalar-lens functions accept numpy arrays, torch tensors or floats (elementwise arithmetic
only). The batched tensor forms (``*_batch``, :func:`depth_on_side`, :func:`relative_depth_error`)
take a lens tensor ``(B, 3)`` = [focal length (m), f-number, focus distance (m)] and ``fx`` ``(B,)``
for a batch of images; model, losses, estimator and benchmark all use these, never a copy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "Lens",
    "LensError",
    "coc_px",
    "signed_defocus_px",
    "depth_from_signed_defocus",
    "depth_candidates",
    "coc_at_infinity_px",
    "k_factor",
    "resize_fx",
    "resize_coc",
    "coc_at_infinity_batch",
    "signed_defocus_batch",
    "depth_on_side",
    "relative_depth_error",
]


class LensError(ValueError):
    """Lens settings that no thin lens can have (NaN, non-positive, focus inside the focal length)."""


@dataclass(frozen=True)
class Lens:
    """Lens settings of one exposure.

    Attributes:
        focal_length_m: focal length ``f`` in metres (e.g. 0.05 for a 50 mm lens).
        f_number: f-number ``N`` (dimensionless, e.g. 1.8).
        focus_distance_m: focus distance ``d_f`` in metres, measured like depth (along z).
    """

    focal_length_m: float
    f_number: float
    focus_distance_m: float

    def __post_init__(self) -> None:
        validate_lens(self.focal_length_m, self.f_number, self.focus_distance_m)

    @property
    def aperture_m(self) -> float:
        """Aperture diameter ``A = f / N`` in metres."""
        return self.focal_length_m / self.f_number

    @classmethod
    def from_mm(cls, focal_length_mm: float, f_number: float, focus_distance_m: float) -> Lens:
        return cls(float(focal_length_mm) / 1000.0, float(f_number), float(focus_distance_m))

    @classmethod
    def from_mapping(cls, lens) -> Lens:
        """Accept a Lens, or a mapping with ``focal_length_m`` (or ``focal_length_mm``),
        ``f_number`` and ``focus_distance_m``."""
        if isinstance(lens, Lens):
            return lens
        try:
            if "focal_length_m" in lens:
                f_m = float(lens["focal_length_m"])
            else:
                f_m = float(lens["focal_length_mm"]) / 1000.0
            return cls(f_m, float(lens["f_number"]), float(lens["focus_distance_m"]))
        except KeyError as exc:
            raise LensError(f"lens settings lack {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            if isinstance(exc, LensError):
                raise
            raise LensError(f"lens settings are not numbers: {exc}") from None

    def as_tensor(self, device=None):
        """(1, 3) float32 tensor [f (m), N, d_f (m)] for the batched forms."""
        import torch

        return torch.tensor([[self.focal_length_m, self.f_number, self.focus_distance_m]], device=device)


def validate_lens(focal_length_m: float, f_number: float, focus_distance_m: float) -> None:
    """Raise :class:`LensError` with a one-line reason if the settings are impossible."""
    for name, value in (
        ("focal length", focal_length_m),
        ("f-number", f_number),
        ("focus distance", focus_distance_m),
    ):
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise LensError(f"{name} must be a finite number, got {value!r}")
        if value <= 0:
            raise LensError(f"{name} must be positive, got {value!r}")
    if focus_distance_m <= focal_length_m:
        raise LensError(
            f"focus distance ({focus_distance_m} m) must be greater than the focal length ({focal_length_m} m)"
        )


def validate_fx(fx: float) -> None:
    if not isinstance(fx, (int, float)) or not math.isfinite(fx) or fx <= 0:
        raise LensError(f"fx (focal length in pixels) must be a positive finite number, got {fx!r}")


def k_factor(lens: Lens, fx):
    """``k = (d_f - f) / (A * fx)`` in 1/px: the inverse of the CoC at infinity."""
    return (lens.focus_distance_m - lens.focal_length_m) / (lens.aperture_m * fx)


def coc_at_infinity_px(lens: Lens, fx):
    """CoC diameter (px) of a point at infinite depth: ``A * fx / (d_f - f)``.

    A CoC larger than this can only come from a point in front of the focus plane.
    """
    return lens.aperture_m * fx / (lens.focus_distance_m - lens.focal_length_m)


def signed_defocus_px(depth_m, lens: Lens, fx):
    """Signed defocus ``s`` in px (positive behind the focus plane) for depth in metres."""
    d_f = lens.focus_distance_m
    return lens.aperture_m * fx * (depth_m - d_f) / (depth_m * (d_f - lens.focal_length_m))


def coc_px(depth_m, lens: Lens, fx):
    """CoC diameter ``c`` in px for depth in metres, at the resolution where ``fx`` holds."""
    s = signed_defocus_px(depth_m, lens, fx)
    return abs(s)


def depth_from_signed_defocus(s_px, lens: Lens, fx, max_depth_m: float = math.inf):
    """Depth in metres from signed defocus ``s`` (px): ``d = d_f / (1 - k s)``.

    Where ``k * s >= 1`` (beyond the far limit) the depth is ``max_depth_m`` (default infinity).
    """
    k = k_factor(lens, fx)
    denom = 1.0 - k * s_px
    if hasattr(denom, "clamp"):  # torch
        import torch

        far = denom <= 0
        d = lens.focus_distance_m / denom.clamp_min(1e-12)
        return torch.where(far, torch.full_like(d, max_depth_m), d.clamp_max(max_depth_m))
    import numpy as np

    denom = np.asarray(denom, dtype=np.float64)
    with np.errstate(divide="ignore"):
        d = np.where(denom > 0, lens.focus_distance_m / np.maximum(denom, 1e-12), max_depth_m)
    d = np.minimum(d, max_depth_m)
    return d if d.ndim else float(d)


def depth_candidates(c_px, lens: Lens, fx, max_depth_m: float = math.inf):
    """The two thin-lens solutions (near, far) in metres for an unsigned CoC ``c`` (px)."""
    near = depth_from_signed_defocus(-c_px, lens, fx, max_depth_m)
    far = depth_from_signed_defocus(c_px, lens, fx, max_depth_m)
    return near, far


def resize_fx(fx, scale):
    """``fx`` after resizing the image by ``scale`` (new size / old size)."""
    return fx * scale


def resize_coc(c_px, scale):
    """CoC (px) after resizing the image by ``scale``: CoC scales like ``fx``."""
    return c_px * scale


# ------------------------------------------------------------------------------ batched tensor forms
def _per_image(t):
    """(B,) -> (B, 1, 1, 1): broadcast a per-image value over (B, 1, H, W) maps."""
    return t.view(-1, 1, 1, 1)


def coc_at_infinity_batch(lens, fx):
    """(B,) CoC at infinity (px) ``A * fx / (d_f - f)`` for lens (B, 3) and fx (B,) in px."""
    f, n, d_f = lens[:, 0], lens[:, 1], lens[:, 2]
    return (f / n) * fx / (d_f - f)


def signed_defocus_batch(depth_m, lens, fx):
    """(B, 1, H, W) signed defocus (px) of depth maps (B, 1, H, W) in metres."""
    f, n, d_f = (_per_image(lens[:, i]) for i in range(3))
    return (f / n) * _per_image(fx) * (depth_m - d_f) / (depth_m * (d_f - f))


def depth_on_side(coc, behind, lens, fx, max_depth_m: float = math.inf):
    """Depth (m) as the thin-lens solution of the CoC on one side of the focus plane.

    ``d = d_f / (1 - side * c / c_inf)`` with side = +1 where ``behind`` is true, -1 elsewhere.
    Beyond the far limit (``c >= c_inf`` behind) the depth is ``max_depth_m`` (default: inf).

    Args:
        coc: (B, 1, H, W) CoC diameter (px) at the resolution where ``fx`` holds.
        behind: (B, 1, H, W) bool.
        lens: (B, 3); fx: (B,) px.
    """
    import torch

    c_inf = _per_image(coc_at_infinity_batch(lens, fx))
    d_f = _per_image(lens[:, 2])
    u = torch.where(behind, coc, -coc) / c_inf
    denom = 1.0 - u
    d = d_f / denom.clamp_min(1e-12)
    return torch.where(denom > 0, d, torch.full_like(d, math.inf)).clamp(max=max_depth_m)


def relative_depth_error(coc_sigma, coc, behind, lens, fx):
    """Relative depth error ``sigma_d / d`` that a CoC error ``coc_sigma`` (px) gives through the
    thin-lens inverse on the given side.

    In front of the focus plane (well conditioned) to first order: ``sigma_c / (c_inf + c)``.
    Behind it the depth ``d_f / (1 - c / c_inf)`` diverges as ``c`` nears ``c_inf`` and the first
    order understates the error, so the error is the depth change a CoC one sigma larger gives:
    ``sigma_c / (c_inf - c - sigma_c)``, inf where ``c + sigma_c >= c_inf`` (the far end of the
    interval is at infinity)."""
    import torch

    c_inf = _per_image(coc_at_infinity_batch(lens, fx))
    room = torch.where(behind, c_inf - coc - coc_sigma, c_inf + coc)
    return torch.where(room > 0, coc_sigma / room.clamp_min(1e-12), torch.full_like(coc, math.inf))
