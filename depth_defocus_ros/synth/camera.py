"""Sampling the lens and sensor of a scene, the way real cameras are built and used.

* :class:`Rand`: scalar draws from the one ``torch.Generator`` of a scene stream (shared with
  :mod:`.layout`, so every draw of a scene comes from one reproducible source).
* :class:`CameraSampler`: sensor width (mm) from common formats, focal length (m) within a
  realistic field of view, ``fx`` (px at the render width, as for a crop of a larger photo),
  f-number (weighted to wide apertures) and focus distance (m: autofocus on a subject, near the
  hyperfocal distance, close focus, or random), redrawn until the largest CoC (px) stays within
  what a real photo shows.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from ..optics import Lens, coc_at_infinity_px, signed_defocus_px

if TYPE_CHECKING:
    from .scenes import SceneConfig

__all__ = ["CameraSampler", "Rand"]

# sensor widths (mm): 1/2.3", 1/1.7", 1", 4/3, APS-C, full frame
_SENSOR_WIDTHS_MM = (6.17, 7.6, 13.2, 17.3, 23.5, 36.0)


class Rand:
    """Scalar draws from one torch.Generator (the only source of randomness: reproducible)."""

    def __init__(self, gen: torch.Generator):
        self.gen = gen

    def u(self, lo: float = 0.0, hi: float = 1.0) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=self.gen))

    def logu(self, lo: float, hi: float) -> float:
        return math.exp(self.u(math.log(lo), math.log(hi)))

    def i(self, lo: int, hi: int) -> int:  # inclusive lo, exclusive hi
        return int(torch.randint(lo, hi, (1,), generator=self.gen))

    def inclusive(self, lo: int, hi: int) -> int:
        """An integer in [lo, hi], both ends included (the same draw as ``i(lo, hi + 1)``)."""
        return self.i(lo, hi + 1)

    def choice(self, weights) -> int:
        w = torch.tensor(weights, dtype=torch.float64)
        return int(torch.multinomial(w, 1, generator=self.gen))


class CameraSampler:
    """Draws the camera (sensor, focal length, fx) and the lens settings of one scene after another."""

    def __init__(self, r: Rand, cfg: SceneConfig):
        self.r = r
        self.cfg = cfg

    def camera(self) -> tuple:
        """Sensor width (mm), focal length (m) and fx (px at the render width)."""
        r, cfg = self.r, self.cfg
        for _ in range(20):
            sensor = _SENSOR_WIDTHS_MM[r.i(0, len(_SENSOR_WIDTHS_MM))]
            # horizontal field of view between ~18 and ~100 degrees
            ratio = r.logu(0.42, 3.0)  # f / sensor width
            f_mm = ratio * sensor
            if cfg.f_mm_range[0] <= f_mm <= cfg.f_mm_range[1]:
                break
        f_mm = min(max(f_mm, cfg.f_mm_range[0]), cfg.f_mm_range[1])
        # the render may be a crop of a larger photo: fx is that of an image 1-3x wider
        fx = f_mm / sensor * cfg.width * r.logu(1.0, cfg.max_crop_factor)
        return sensor, f_mm / 1000.0, fx

    def focus(self, depth: torch.Tensor, subject_depths: list, f_m: float, n: float, sensor_mm: float) -> float:
        """Focus distance (m) following how real cameras are focused (``depth`` and
        ``subject_depths`` in m, focal length ``f_m`` in m, sensor width in mm)."""
        r, cfg = self.r, self.cfg
        mode = r.choice([0.45, 0.2, 0.2, 0.15])
        lo, hi = cfg.focus_range_m
        if mode == 0 and subject_depths:  # autofocus on a subject
            d_f = subject_depths[r.i(0, len(subject_depths))] * r.u(0.95, 1.05)
        elif mode == 1:  # near the hyperfocal distance
            c_sensor = 0.03e-3 * sensor_mm / 36.0
            d_f = (f_m * f_m / (n * c_sensor) + f_m) * r.u(0.6, 1.5)
        elif mode == 2:  # close focus: nearest surface
            d_f = float(depth.min()) * r.u(0.85, 1.3)
        else:
            d_f = r.logu(lo, hi)
        return float(min(max(d_f, lo, 1.2 * f_m), hi))

    def f_number(self) -> float:
        """f-number, log-uniform over the range, with more weight on wide apertures (the settings
        where defocus tells depth: fast lenses wide open, as for portraits and low light)."""
        lo, hi = self.cfg.n_range
        if self.r.u() < self.cfg.wide_aperture_fraction:
            return self.r.logu(lo, min(hi, 2 * lo))
        return self.r.logu(lo, hi)

    def lens(self, depth: torch.Tensor, subjects: list, f_m: float, sensor_mm: float, fx: float) -> Lens:
        """The lens settings of a scene of z-depth ``depth`` (m) seen with focal length ``f_m`` (m)
        and ``fx`` (px): f-number and focus redrawn while the largest CoC is beyond a real photo's
        (``max_coc_fraction`` of the width) and, for a visible-blur scene, while the CoC at
        infinity is below ``visible_blur_min_px`` (px). The geometry and fx stay."""
        r, cfg = self.r, self.cfg
        cap = cfg.max_coc_fraction * cfg.width
        if cfg.fixed_lens:
            lens = Lens(*cfg.fixed_lens)
        # (no draw at all when the share is 0: the held-out sets' random stream stays unchanged)
        visible = cfg.visible_blur_fraction > 0 and r.u() < cfg.visible_blur_fraction
        best = None
        for _ in range(0 if cfg.fixed_lens else (30 if visible else 10)):
            n = self.f_number()
            lens = Lens(f_m, n, self.focus(depth, subjects, f_m, n, sensor_mm))
            if float(signed_defocus_px(depth, lens, fx).abs().max()) <= cap:
                if not visible:
                    break
                c_inf = float(coc_at_infinity_px(lens, fx))
                if best is None or c_inf > best[0]:
                    best = (c_inf, lens)
                if c_inf >= cfg.visible_blur_min_px:
                    break
        if best is not None:
            lens = best[1]
        elif not cfg.fixed_lens and float(signed_defocus_px(depth, lens, fx).abs().max()) > cap:
            # stopped down and focused far: the least blur this lens can give
            lens = Lens(f_m, cfg.n_range[1], cfg.focus_range_m[1])
        return lens
