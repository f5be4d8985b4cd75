"""Textures for synthetic scenes: procedural noise and real photographs.

Photographs come from the sample images that scikit-image ships inside its wheel (no download)
and, optionally, from a user folder of images. All textures are sRGB float tensors (3, T, T) in
[0, 1].
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["TEXTURE_RECIPE", "TextureBank", "procedural_texture", "flat_texture", "load_photo_textures", "mirror_to"]

# Bumped whenever the textures a seed draws change; datasets record it (``render``) and cached
# held-out sets rendered with another recipe are rendered again. 2: procedural noise down to the
# pixel, no blurred sample photographs, photographs reduced and never magnified (2026-12).
TEXTURE_RECIPE = 2

_SKIMAGE_PHOTOS = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "chelsea.png",
    "coffee.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "retina.jpg",
    "rocket.jpg",
    "page.png",
    "text.png",
    "coins.png",
    "moon.png",
    "horse.png",
)
# Left out: scikit-image's clock_motion.png (motion-blurred on purpose), color.png (a smooth colour
# chart), cell.png (smooth microscopy) and microaneurysms.png (102 px: it would be magnified). A
# texture's own blur is not in the CoC label: rendered "sharp", they look blurred (the level CNN
# read them as 10-20 px), and teach a reader that visible blur is often no blur.
# Never the Middlebury "Motorcycle" views (motorcycle_left/right.png): they are the real-photo
# benchmark (:mod:`.realbench`), which nothing may train on.
_IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def _read_png(path: Path) -> np.ndarray | None:
    """HxWx3 uint8 RGB of a PNG through Pillow, which ignores colour-profile chunks: libpng (OpenCV's
    decoder) prints a warning for the invalid iCCP chunk of scikit-image's page.png."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode.startswith("I"):  # 16- or 32-bit grey
                img = (np.asarray(im, np.float64) / 257.0).clip(0, 255).astype(np.uint8)
            else:
                img = np.array(im.convert("RGB"))
    except OSError:
        return None
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img)


def _read_rgb(path: Path) -> np.ndarray | None:
    if path.suffix.lower() == ".png":
        return _read_png(path)
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        return None
    if img.dtype == np.uint16:
        img = (img / 257).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    elif img.shape[2] == 4:
        img = img[..., :3]
    return np.ascontiguousarray(img[..., ::-1])  # BGR -> RGB


def load_photo_textures(folder: str | os.PathLike | None = None, max_side: int = 512) -> list:
    """Photographs as (3, h, w) float sRGB tensors: scikit-image's samples plus ``folder``."""
    paths: list[Path] = []
    try:
        import skimage

        data_dir = Path(skimage.__file__).parent / "data"
        paths += [data_dir / n for n in _SKIMAGE_PHOTOS if (data_dir / n).is_file()]
    except ImportError:  # scikit-image is optional at inference time
        pass
    if folder:
        paths += sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in _IMAGE_EXT)
    out = []
    for p in paths:
        img = _read_rgb(p)
        if img is None or min(img.shape[:2]) < 32:
            continue
        t = torch.from_numpy(img).permute(2, 0, 1).float() / 255.0
        scale = max_side / max(t.shape[1:])
        if scale < 1:
            t = F.interpolate(t[None], scale_factor=scale, mode="area")[0]
        out.append(t)
    return out


def _value_noise(size: int, gen: torch.Generator, persistence: float) -> torch.Tensor:
    """Multi-octave value noise in [0, 1], (1, size, size), with detail down to the pixel.

    Octaves double the cell count from 2-5 cells per side until a cell is a pixel, each
    ``persistence`` times the amplitude of the one before (1: equal energy per octave, the 1/f
    amplitude spectrum of natural images; 0.5: a quarter of the energy per octave, much smoother,
    1/f^2). Stopping the octaves early gives a texture that is smooth over many pixels:
    rendered sharp, it looks exactly like a blurred one, and a reader trained on it learns that
    visible blur is often no blur (the shipped level CNN read such textures as 3-25 px)."""
    acc = torch.zeros(1, 1, size, size)
    amp, total = 1.0, 0.0
    cells = int(torch.randint(2, 6, (1,), generator=gen))
    while cells <= 2 * size:
        grid = torch.rand(1, 1, cells, cells, generator=gen)
        mode = "bicubic" if cells < size else "area" if cells > size else "nearest"
        corners = False if mode == "bicubic" else None
        acc += amp * F.interpolate(grid, size=(size, size), mode=mode, align_corners=corners)
        total += amp
        amp *= persistence
        cells *= 2
    acc = acc / total
    lo, hi = acc.amin(), acc.amax()
    return ((acc - lo) / (hi - lo + 1e-6))[0]


def procedural_texture(size: int, gen: torch.Generator) -> torch.Tensor:
    """A random procedural texture (3, size, size), sRGB in [0, 1].

    Mixes multi-octave noise, stripes, checkers and blobs, colourised with a random palette, so
    that the network sees edges and texture at every scale and orientation.
    """
    r = lambda: float(torch.rand((), generator=gen))  # noqa: E731
    base = _value_noise(size, gen, 0.65 + 0.25 * r())
    kind = int(torch.randint(0, 5, (1,), generator=gen))
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    if kind == 1:  # stripes at a random angle and frequency
        ang, freq = r() * np.pi, 2 + 30 * r() ** 2
        wave = torch.sin(2 * np.pi * freq * (xx * np.cos(ang) + yy * np.sin(ang)))
        pattern = (wave > 0).float() if r() < 0.5 else 0.5 + 0.5 * wave
        base = 0.6 * pattern[None] + 0.4 * base
    elif kind == 2:  # checkerboard
        n = 2 + int(14 * r())
        pattern = ((xx * n).floor() + (yy * n).floor()) % 2
        base = 0.7 * pattern[None] + 0.3 * base
    elif kind == 3:  # thresholded blobs: hard-edged patches
        base = (base > 0.3 + 0.4 * r()).float() * 0.7 + 0.3 * _value_noise(size, gen, 0.75)
    # else: plain noise
    palette = torch.rand(3, 3, generator=gen)  # three colours, (colour, rgb)
    t = base[0]
    w0 = (1 - t).clamp(0, 1) ** 2
    w2 = t.clamp(0, 1) ** 2
    w1 = 1 - w0 - w2
    tex = palette[0, :, None, None] * w0 + palette[1, :, None, None] * w1
    tex = tex + palette[2, :, None, None] * w2
    return tex.clamp(0, 1)


def flat_texture(size: int, gen: torch.Generator) -> torch.Tensor:
    """A surface with no texture (3, size, size), sRGB in [0, 1]: a painted wall, a panel, a poster.

    Half are one colour under a gentle linear shading (up to +-25 % along the shading's direction,
    +-35 % at the corners: uneven light); half are two or three flat colours with pixel-sharp
    boundaries (thresholded smooth noise: painted panels, tiles, print). Real scenes are full of
    such surfaces, which show their blur only at their boundaries; textures with detail everywhere
    teach a reader that a flat region is a blurred one. A linear ramp stays a linear ramp under any
    disc blur, so the CoC label is right whatever it is."""
    r = lambda: float(torch.rand((), generator=gen))  # noqa: E731
    yy, xx = torch.meshgrid(torch.linspace(-0.5, 0.5, size), torch.linspace(-0.5, 0.5, size), indexing="ij")
    ang = 2 * np.pi * r()
    shade = 1.0 + 0.5 * r() * (xx * np.cos(ang) + yy * np.sin(ang))  # (size, size): 1 +- 0.35
    colours = torch.rand(3, 3, generator=gen)  # (colour, rgb)
    if r() < 0.5:
        tex = colours[0, :, None, None] * shade
    else:
        cells = int(torch.randint(2, 7, (1,), generator=gen))
        smooth = F.interpolate(torch.rand(1, 1, cells, cells, generator=gen), size=(size, size), mode="bicubic")[0, 0]
        lo, mid = torch.quantile(smooth.flatten()[:: max(1, size * size // 4096)], torch.tensor([0.35, 0.7]))
        region = (smooth > lo).long() + (smooth > mid).long() if r() < 0.5 else (smooth > mid).long()
        tex = colours[region].permute(2, 0, 1) * shade
    return tex.clamp(0, 1)


def mirror_to(img: torch.Tensor, size: int) -> torch.Tensor:
    """(3, h, w) -> at least (3, size, size), by mirror tiling (never magnifying)."""
    while img.shape[1] < size:
        img = torch.cat([img, img.flip(-2)], -2)
    while img.shape[2] < size:
        img = torch.cat([img, img.flip(-1)], -1)
    return img


class TextureBank:
    """A pool of textures drawn from procedural noise and photographs, refreshed over time.

    Args:
        size: texture side (px).
        photo_fraction: share of photographic textures (when photos are available).
        flat_fraction: share of textureless surfaces (:func:`flat_texture`), drawn first; 0 draws
            exactly what the recipe drew before the option existed.
        photo_folder: optional extra folder of photographs.
        pool: number of textures held at once.
    """

    def __init__(
        self,
        size: int = 256,
        photo_fraction: float = 0.5,
        photo_folder: str | None = None,
        pool: int = 48,
        use_photos: bool = True,
        flat_fraction: float = 0.0,
    ) -> None:
        self.size = size
        self.flat_fraction = flat_fraction
        self.photo_fraction = photo_fraction if use_photos else 0.0
        self.photos = load_photo_textures(photo_folder) if use_photos else []
        self.pool = pool
        self._bank: torch.Tensor | None = None

    def _photo_crop(self, gen: torch.Generator) -> torch.Tensor:
        img = self.photos[int(torch.randint(len(self.photos), (1,), generator=gen))]
        _, h, w = img.shape
        # a crop of 1.5-2.5 texture sides where the photo allows, reduced to the texture's size:
        # sharper than the photograph (its own defocus and softness shrink), never magnified (a
        # photograph smaller than that is reduced as far as it allows and mirror-tiled)
        short = min(h, w)
        side = min(short, int(self.size * (1.5 + float(torch.rand((), generator=gen)))))
        y0 = int(torch.randint(0, h - side + 1, (1,), generator=gen))
        x0 = int(torch.randint(0, w - side + 1, (1,), generator=gen))
        crop = img[:, y0 : y0 + side, x0 : x0 + side]
        out = min(side, self.size)
        crop = F.interpolate(crop[None], size=(out, out), mode="area")[0]
        if out < self.size:
            crop = mirror_to(crop, self.size)[:, : self.size, : self.size]
        if float(torch.rand((), generator=gen)) < 0.5:
            crop = crop.flip(-1)
        if float(torch.rand((), generator=gen)) < 0.3:
            crop = crop.transpose(-1, -2)
        # colour jitter: gain per channel and gamma
        gain = 0.7 + 0.6 * torch.rand(3, 1, 1, generator=gen)
        gamma = 0.7 + 0.6 * float(torch.rand((), generator=gen))
        return (crop * gain).clamp(0, 1) ** gamma

    def refresh(self, gen: torch.Generator) -> None:
        texs = []
        for _ in range(self.pool):
            if self.flat_fraction > 0 and float(torch.rand((), generator=gen)) < self.flat_fraction:
                texs.append(flat_texture(self.size, gen))
                continue
            use_photo = self.photos and float(torch.rand((), generator=gen)) < self.photo_fraction
            texs.append(self._photo_crop(gen) if use_photo else procedural_texture(self.size, gen))
        self._bank = torch.stack(texs)

    def sample(self, gen: torch.Generator) -> torch.Tensor:
        if self._bank is None:
            self.refresh(gen)
        return self._bank[int(torch.randint(self.pool, (1,), generator=gen))]
