"""Occlusion-aware defocus renderer (batched torch, CPU or GPU).

A focused image is rendered from an all-in-focus image and its per-pixel signed defocus by
layered compositing: pixels are split (linearly) between depth layers that sit at exact signed
CoC levels, every layer is blurred with an anti-aliased uniform disc (pillbox) of its CoC
diameter, and layers are composited front to back with their blurred coverage as alpha. A
blurred foreground therefore spreads over a sharp background, while a sharp foreground keeps
its hard edge in front of a blurred background. Accumulated colour is divided by accumulated
coverage, which fills the background hidden behind foreground objects and the image border with
the visible neighbourhood (no dark halos, mean intensity kept).

All blurring happens in linear light; helpers convert sRGB <-> linear.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "srgb_to_linear",
    "linear_to_srgb",
    "disc_kernel",
    "render_defocus",
    "sensor_degrade",
    "PSFShape",
]


@dataclass(frozen=True)
class PSFShape:
    """How a real lens's blur spot departs from the ideal pillbox (all zero: the ideal disc).

    Attributes:
        rim: intensity tilt towards the rim: weight ``1 + rim * (2 (r / c)^2 - 0.5)`` inside the
            disc (> 0: a brighter rim, as over-corrected spherical aberration gives; < 0: a
            brighter centre); keep within [-0.6, 0.9] so the weights stay positive.
        soft: extra width (px) of the disc's edge beyond the 1 px anti-aliasing (a softer rim).
        aspect: horizontal over vertical diameter (1: round; slight non-uniformity of the field).
    """

    rim: float = 0.0
    soft: float = 0.0
    aspect: float = 1.0


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded values in [0, 1] -> linear light in [0, 1]."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """Linear light in [0, 1] -> sRGB-encoded values in [0, 1]."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp_min(1e-12) ** (1 / 2.4) - 0.055)


def _disc_from_radius_map(r: torch.Tensor, diameter: torch.Tensor) -> torch.Tensor:
    """Anti-aliased pillbox weights (unnormalised) for distances ``r`` (px) and diameters (px).

    Weight 1 inside radius c/2 - 0.5, 0 outside c/2 + 0.5, linear in between. Diameters below
    1 px give a delta (the pixel itself): CoC < 1 px is sharp.
    """
    radius = diameter.clamp_min(1.0) / 2.0
    w = (radius + 0.5 - r).clamp(0.0, 1.0)
    return w


def disc_kernel(diameter_px: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised anti-aliased disc kernel of the given CoC diameter (px), odd square size."""
    half = int(math.ceil(max(diameter_px, 1.0) / 2.0 + 0.5))
    ax = torch.arange(-half, half + 1, dtype=dtype, device=device)
    r = torch.sqrt(ax[None, :] ** 2 + ax[:, None] ** 2)
    w = _disc_from_radius_map(r, torch.tensor(float(diameter_px), dtype=dtype, device=device))
    return w / w.sum()


def _shaped_disc(r: torch.Tensor, diameter: torch.Tensor, psf: PSFShape) -> torch.Tensor:
    """Pillbox weights with a rim tilt and a softer edge (:class:`PSFShape`) at distances ``r``."""
    radius = diameter.clamp_min(1.0) / 2.0
    width = 1.0 + psf.soft
    w = ((radius + 0.5 * width - r) / width).clamp(0.0, 1.0)
    if psf.rim:
        u = (r / radius).clamp(max=1.0)
        w = w * (1.0 + psf.rim * (2.0 * u * u - 0.5)).clamp_min(0.0)
    return w


def _kernel_spectra(coc: torch.Tensor, hp: int, wp: int, psf: PSFShape | None = None) -> torch.Tensor:
    """rFFT of normalised discs centred at the origin of an (hp, wp) periodic grid.

    Args:
        coc: (B, L) CoC diameters in px.
        psf: the spot's departure from the ideal disc (None: the ideal anti-aliased pillbox).
    Returns:
        (B, L, hp, wp // 2 + 1) complex spectra.
    """
    dev, dt = coc.device, coc.dtype
    yy = torch.arange(hp, device=dev, dtype=dt)
    xx = torch.arange(wp, device=dev, dtype=dt)
    yy = torch.minimum(yy, hp - yy)  # wrap-around distance to the origin
    xx = torch.minimum(xx, wp - xx)
    if psf is None:
        r = torch.sqrt(yy[:, None] ** 2 + xx[None, :] ** 2)  # (hp, wp)
        w = _disc_from_radius_map(r[None, None], coc[..., None, None])  # (B, L, hp, wp)
    else:
        r = torch.sqrt(yy[:, None] ** 2 + (xx[None, :] / psf.aspect) ** 2)
        w = _shaped_disc(r[None, None], coc[..., None, None], psf)
    w = w / w.sum(dim=(-2, -1), keepdim=True)
    return torch.fft.rfft2(w)


@torch.no_grad()
def render_defocus(
    image_linear: torch.Tensor,
    signed_defocus: torch.Tensor,
    max_layer_spacing_px: float = 1.0,
    max_layers: int = 48,
    psf: PSFShape | None = None,
) -> torch.Tensor:
    """Render defocus blur, occlusion-aware, in linear light.

    Args:
        image_linear: (B, C, H, W) all-in-focus image in linear light.
        signed_defocus: (B, 1, H, W) or (B, H, W) signed CoC in px at this resolution
            (negative in front of the focus plane, positive behind).
        max_layer_spacing_px: largest CoC step (px) between adjacent layers.
        max_layers: cap on the number of layers (spacing grows beyond it).
        psf: the blur spot's shape (None: the ideal anti-aliased disc of DESIGN.md).
    Returns:
        (B, C, H, W) focused image in linear light.
    """
    if signed_defocus.dim() == 3:
        signed_defocus = signed_defocus[:, None]
    b, ch, h, w = image_linear.shape
    s = signed_defocus.to(image_linear.dtype)
    smin = s.amin(dim=(1, 2, 3))  # (B,)
    smax = s.amax(dim=(1, 2, 3))
    span = smax - smin
    n_layers = int(torch.clamp(torch.ceil(span.max() / max_layer_spacing_px) + 1, 1, max_layers))
    t = torch.linspace(0.0, 1.0, n_layers, device=s.device, dtype=s.dtype)
    levels = smin[:, None] + span[:, None] * t[None, :]  # (B, L), ascending: front to back
    coc = levels.abs()

    pad = int(math.ceil(float(coc.max()) / 2.0)) + 2
    hp, wp = h + 2 * pad, w + 2 * pad
    spectra = _kernel_spectra(coc, hp, wp, psf)  # (B, L, hp, wf)

    # fractional layer position of every pixel; ends of the range map exactly onto a level
    pos = (s - smin[:, None, None, None]) / span.clamp_min(1e-12)[:, None, None, None]
    pos = pos * (n_layers - 1)  # (B, 1, H, W)

    rgba = torch.cat([image_linear, torch.ones_like(s)], dim=1)  # (B, C+1, H, W)
    rgba = F.pad(rgba, (pad, pad, pad, pad))
    pos = F.pad(pos, (pad, pad, pad, pad), value=-10.0)  # padding belongs to no layer

    acc = torch.zeros(b, ch + 1, hp, wp, device=s.device, dtype=s.dtype)
    trans = torch.ones(b, 1, hp, wp, device=s.device, dtype=s.dtype)
    for i in range(n_layers):
        weight = (1.0 - (pos - i).abs()).clamp_min(0.0)  # (B, 1, hp, wp)
        if not bool((weight > 0).any()):
            continue
        layer = torch.fft.irfft2(torch.fft.rfft2(rgba * weight) * spectra[:, i, None], s=(hp, wp))
        layer = layer.clamp_min(0.0)
        acc = acc + trans * layer
        trans = trans * (1.0 - layer[:, ch:].clamp(0.0, 1.0))
    acc = acc[:, :, pad : pad + h, pad : pad + w]
    return acc[:, :ch] / acc[:, ch:].clamp_min(1e-6)


@torch.no_grad()
def render_defocus_gather(
    image_linear: torch.Tensor,
    signed_defocus: torch.Tensor,
    max_layer_spacing_px: float = 1.0,
    max_layers: int = 48,
) -> torch.Tensor:
    """Occlusion-unaware reference: every pixel gathers a disc of its *own* CoC.

    This is the naive model the design rules out for training (a sharp background bleeds into a
    blurred foreground); it exists for the ablation that measures what occlusion cues are worth.
    """
    if signed_defocus.dim() == 3:
        signed_defocus = signed_defocus[:, None]
    b, ch, h, w = image_linear.shape
    c = signed_defocus.abs().to(image_linear.dtype)
    cmax = c.amax(dim=(1, 2, 3))
    n_layers = int(torch.clamp(torch.ceil(cmax.max() / max_layer_spacing_px) + 1, 1, max_layers))
    t = torch.linspace(0.0, 1.0, n_layers, device=c.device, dtype=c.dtype)
    levels = cmax[:, None] * t[None, :]
    pad = int(math.ceil(float(levels.max()) / 2.0)) + 2
    hp, wp = h + 2 * pad, w + 2 * pad
    spectra = _kernel_spectra(levels, hp, wp)
    pos = c / cmax.clamp_min(1e-12)[:, None, None, None] * (n_layers - 1)
    img = F.pad(torch.cat([image_linear, torch.ones_like(c)], 1), (pad, pad, pad, pad))
    img_f = torch.fft.rfft2(img)
    out = torch.zeros(b, ch + 1, h, w, device=c.device, dtype=c.dtype)
    for i in range(n_layers):
        weight = (1.0 - (pos - i).abs()).clamp_min(0.0)
        blurred = torch.fft.irfft2(img_f * spectra[:, i, None], s=(hp, wp))
        out = out + weight * blurred[:, :, pad : pad + h, pad : pad + w]
    return out[:, :ch] / out[:, ch:].clamp_min(1e-6)


def _demosaic(srgb: torch.Tensor) -> torch.Tensor:
    """(3, H, W) 8-bit-valued sRGB -> the same after an RGGB Bayer mosaic and OpenCV's bilinear
    demosaicing (what a camera's colour filter array does to fine detail)."""
    import cv2
    import numpy as np

    rgb = srgb.permute(1, 2, 0).numpy().astype(np.uint8)
    h, w = rgb.shape[:2]
    raw = np.empty((h, w), np.uint8)
    raw[0::2, 0::2] = rgb[0::2, 0::2, 0]  # R
    raw[0::2, 1::2] = rgb[0::2, 1::2, 1]  # G
    raw[1::2, 0::2] = rgb[1::2, 0::2, 1]  # G
    raw[1::2, 1::2] = rgb[1::2, 1::2, 2]  # B
    out = cv2.cvtColor(raw, cv2.COLOR_BayerBG2RGB)  # OpenCV names the pattern from the second row
    return torch.from_numpy(out).permute(2, 0, 1).float()


def sensor_degrade(
    lin: torch.Tensor,
    gen: torch.Generator,
    shot: float,
    read: float,
    jpeg_quality: int | None = None,
    demosaic: bool = False,
) -> torch.Tensor:
    """What a camera adds after the optics: Poisson-Gaussian noise in linear light (variance
    ``shot * I + read``, intensities in [0, 1]), 8-bit sRGB quantisation, optional Bayer
    demosaicing and optional JPEG.

    Args:
        lin: (3, H, W) linear-light image in [0, 1] (CPU).
        gen: the random generator (noise is reproducible from its seed).
        shot: Poisson gain; read: Gaussian read-noise variance (both 0 for no noise).
        jpeg_quality: JPEG quality 1-100, or None for none.
        demosaic: pass the 8-bit image through an RGGB mosaic and bilinear demosaicing.
    Returns:
        (3, H, W) float32 sRGB in [0, 1], on the 8-bit grid.
    """
    if shot > 0 or read > 0:
        noise = torch.randn(lin.shape, generator=gen)
        lin = lin + torch.sqrt(lin.clamp_min(0) * shot + read) * noise
    srgb = (linear_to_srgb(lin) * 255.0).round().clamp(0, 255)
    if demosaic:
        srgb = _demosaic(srgb)
    if jpeg_quality is not None:
        import cv2
        import numpy as np

        arr = srgb.permute(1, 2, 0).numpy().astype(np.uint8)[..., ::-1]
        ok, buf = cv2.imencode(".jpg", arr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        if ok:
            arr = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()
            srgb = torch.from_numpy(arr).permute(2, 0, 1).float()
    return (srgb / 255.0).float()
