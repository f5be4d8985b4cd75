"""Training patches for the blur reader: dead-leaves tiles at known CoC, rendered by our optics.

The blur reader (:mod:`~depth_defocus_ros.reading.reader`) reads the CoC locally, so it learns from
small patches, cheaply.
A tile is a dead-leaves image (occluding shapes of every size: the scale-invariant statistics of
natural images) whose leaves are cut from scikit-image's photographs (never the benchmark's
motorcycle: :mod:`.textures`) and procedural textures, or are flat. The leaves sit on 1-4 depth
layers, each with its own signed CoC (a later-painted leaf is nearer: the smaller signed CoC, so
occlusion order and blur agree), and the background is a plane whose CoC may slope across the
tile. The tile is blurred by the occlusion-aware renderer (:func:`.render.render_defocus`) with
some variety of the blur spot (brighter or softer rim, slight ellipticity: :class:`.render.PSFShape`)
and a mild lateral chromatic shift, then degraded like a camera (Poisson-Gaussian noise, 8-bit,
Bayer demosaicing, JPEG). Half of the tiles are then averaged 2x2 (the reader's next pyramid
level sees exactly that: less noise, softened JPEG blocks), with the CoC halved.

Each patch holds (all at the reader's level):

* ``y``     (N, P, P) float16 linear-light luminance
* ``coc``   (N, P, P) float16 CoC diameter (px) of every pixel
* ``noise`` (N,) float32 noise standard deviation of the whole tile's luminance at that level
  (:func:`.reblur.noise_sigma`, as the reader measures it on a whole image)
* ``level`` (N,) int8: 0 as rendered, 1 averaged 2x2

Shards ``patches_NNNNN.npz`` are written atomically, each from its own seed, with a manifest;
an interrupted run resumes at the first missing shard and several processes share the work.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..reading.reblur import luminance, noise_sigma
from ..synth.camera import Rand
from ..synth.render import PSFShape, render_defocus, sensor_degrade, srgb_to_linear
from ..synth.shards import write_json_atomic, write_shard
from ..synth.textures import TEXTURE_RECIPE, load_photo_textures, mirror_to, procedural_texture

__all__ = ["PatchConfig", "TileMaker", "render_patch_shards", "patch_shard_paths", "load_patches"]


@dataclass
class PatchConfig:
    """What the tiles draw. Defaults are the ones the shipped reader was trained with."""

    tile: int = 128  # px at the reader's level (rendered at twice the size before a 2x2 average)
    patch: int = 64  # px at the reader's level
    crops: int = 4  # patches cut from a tile
    level1_share: float = 0.5  # share of tiles averaged 2x2
    max_coc_px: float = 24.0  # largest CoC at the reader's level
    small_share: float = 0.55  # share of tiles whose typical CoC is uniform in [0, small_max_px]
    small_max_px: float = 6.0
    layers: tuple = (1, 4)  # depth layers of leaves per tile (inclusive)
    leaves: tuple = (3, 40)
    flat_leaf_share: float = 0.2  # leaves of one colour (no texture: the blur cannot be read there)
    # tiles with a textureless surface in front, wider than the reader's view (radius 0.5-1 tile):
    # without them no patch shows nothing at all but a strongly blurred texture, and the reader
    # reads any flat region as very blurred. 0 draws what the shipped reader was trained on.
    flat_region_share: float = 0.0
    ramp_share: float = 0.3  # tiles whose background CoC slopes across the tile
    photo_share: float = 0.65  # textured leaves cut from photographs (else procedural)
    # photographs are reduced (sharper than the originals, never magnified) by a factor drawn
    # uniformly from this range; a pyramid level l sees them reduced 2^l times more
    photo_downscale: tuple = (1.5, 4.0)
    psf_share: float = 0.5  # tiles whose blur spot is not the ideal disc
    chroma_share: float = 0.3  # tiles with a lateral chromatic shift (up to 0.6 px)
    noise_share: float = 0.75
    noise_shot_range: tuple = (1e-5, 1e-2)
    noise_read_range: tuple = (1e-7, 1e-4)
    demosaic_share: float = 0.5
    jpeg_share: float = 0.4
    jpeg_quality: tuple = (60, 95)

    def __post_init__(self):
        if not 1.0 <= self.photo_downscale[0] <= self.photo_downscale[1]:
            raise ValueError(
                f"photo_downscale must be LO,HI with 1 <= LO <= HI (never magnified), got {self.photo_downscale}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


def _leaf_alpha(size: int, r: Rand, radius: float) -> torch.Tensor:
    """(size, size) anti-aliased coverage of one random ellipse or rotated rectangle."""
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    cx, cy, ang = r.u(-0.1, 1.1) * size, r.u(-0.1, 1.1) * size, r.u(0, math.pi)
    a, b = radius, radius * r.u(0.3, 1.0)
    x = (xx - cx) * math.cos(ang) + (yy - cy) * math.sin(ang)
    y = -(xx - cx) * math.sin(ang) + (yy - cy) * math.cos(ang)
    if r.u() < 0.55:  # ellipse: signed distance approximated through the normalised radius
        dist = (torch.sqrt((x / a) ** 2 + (y / b) ** 2) - 1.0) * min(a, b)
    else:  # rectangle
        dist = torch.maximum(x.abs() - a, y.abs() - b)
    return (0.5 - dist).clamp(0.0, 1.0)


class TileMaker:
    """Draws dead-leaves tiles with their CoC (see module doc)."""

    def __init__(self, config: PatchConfig | None = None, photos: list | None = None):
        self.cfg = config or PatchConfig()
        self.photos = load_photo_textures() if photos is None else photos

    def _texture(self, size: int, r: Rand) -> torch.Tensor:
        """(3, size, size) sRGB: a photo reduced by 1.5-4x (area: sharper than the photo, never
        magnified) or a procedural texture drawn at twice the size and reduced, cut to ``size``
        (mirror-tiled where the reduced photo is smaller)."""
        if self.photos and r.u() < self.cfg.photo_share:
            img = self.photos[r.inclusive(0, len(self.photos) - 1)]
            scale = r.u(*self.cfg.photo_downscale)
            h, w = (max(8, int(v / scale)) for v in img.shape[1:])
            tex = mirror_to(F.interpolate(img[None], size=(h, w), mode="area")[0], size)
            y0, x0 = r.inclusive(0, tex.shape[1] - size), r.inclusive(0, tex.shape[2] - size)
            tex = tex[:, y0 : y0 + size, x0 : x0 + size]
        else:
            tex = F.avg_pool2d(procedural_texture(2 * size, r.gen)[None], 2)[0]
        contrast = r.u(0.3, 1.0)
        return (tex.mean() + contrast * (tex - tex.mean())).clamp(0, 1)

    def _coc_levels(self, r: Rand, n: int) -> list:
        """Signed CoC (px, at the reader's level) of n layers, back to front (descending)."""
        c = self.cfg
        base = r.u(0, c.small_max_px) if r.u() < c.small_share else r.logu(c.small_max_px, c.max_coc_px)
        mags = [min(c.max_coc_px, base * math.exp(0.5 * float(torch.randn((), generator=r.gen)))) for _ in range(n)]
        mode = r.u()
        if mode < 0.4:  # all in front of the focus plane
            signed = [-m for m in mags]
        elif mode < 0.8:  # all behind
            signed = mags
        else:
            signed = [m * (1 if r.u() < 0.5 else -1) for m in mags]
        return sorted(signed, reverse=True)

    def _psf(self, r: Rand) -> PSFShape | None:
        if r.u() >= self.cfg.psf_share:
            return None
        return PSFShape(rim=r.u(-0.4, 0.8), soft=r.u(0.0, 1.5) if r.u() < 0.5 else 0.0, aspect=r.u(0.92, 1.08))

    def scene(self, r: Rand, size: int, scale: float):
        """All-in-focus linear image (3, size, size) and signed CoC (1, size, size) in px at level
        0 (``scale`` = 2 ** level times the CoC at the reader's level)."""
        c = self.cfg
        n_layers = r.inclusive(*c.layers)
        s_layers = [s * scale for s in self._coc_levels(r, n_layers)]
        s_bg = max(s_layers) + abs(r.u(0, 2.0) * scale)
        img = srgb_to_linear(self._texture(size, r))
        s_map = torch.full((1, size, size), s_bg)
        if r.u() < c.ramp_share:  # a slanted background: its CoC grows across the tile
            g = torch.linspace(0, 1, size)
            ang = r.u(0, 2 * math.pi)
            ramp = (math.cos(ang) * g[None, :] + math.sin(ang) * g[:, None]).clamp_min(0)
            s_map = s_map + r.u(0, 6.0) * scale * ramp[None]
        textures = [srgb_to_linear(self._texture(size, r)) for _ in range(n_layers)]
        n_leaves = r.inclusive(*c.leaves)
        for k in range(n_leaves):
            layer = min(n_layers - 1, k * n_layers // n_leaves)  # back to front
            alpha = _leaf_alpha(size, r, r.logu(2.0, 0.35 * size))[None]
            if r.u() < c.flat_leaf_share:
                colour = srgb_to_linear(torch.rand(3, 1, 1, generator=r.gen)).expand(3, size, size)
            else:
                colour = (textures[layer] * (0.6 + 0.8 * torch.rand(3, 1, 1, generator=r.gen))).clamp(0, 1)
            img = img * (1 - alpha) + colour * alpha
            s_map = torch.where(alpha > 0.5, torch.full_like(s_map, s_layers[layer]), s_map)
        if c.flat_region_share > 0 and r.u() < c.flat_region_share:  # on the front layer
            alpha = _leaf_alpha(size, r, r.u(0.5, 1.0) * size)[None]
            colour = srgb_to_linear(torch.rand(3, 1, 1, generator=r.gen)).expand(3, size, size)
            img = img * (1 - alpha) + colour * alpha
            s_map = torch.where(alpha > 0.5, torch.full_like(s_map, s_layers[-1]), s_map)
        return img, s_map

    def tile(self, gen: torch.Generator):
        """One tile at the reader's level: luminance (h, w), CoC (h, w) px, noise std, level."""
        c = self.cfg
        r = Rand(gen)
        level = 1 if r.u() < c.level1_share else 0
        scale = 2.0**level
        size = c.tile * (1 + level)
        margin = int(math.ceil(c.max_coc_px * scale / 2)) + 2
        img, s_map = self.scene(r, size + 2 * margin, scale)
        blurred = render_defocus(img[None], s_map[None], psf=self._psf(r))[0]
        if r.u() < c.chroma_share:
            blurred = _chromatic_shift(blurred, r.u(0.1, 0.6), r.u(0, 2 * math.pi))
        crop = (slice(None), slice(margin, margin + size), slice(margin, margin + size))
        blurred, coc = blurred[crop].clamp(0, 1), s_map[crop].abs()
        srgb = self._sensor(blurred, r)
        y = luminance(srgb[None])  # (1, 1, size, size) linear light
        if level:
            y, coc = F.avg_pool2d(y, 2), F.avg_pool2d(coc[None], 2)[0] / scale
        return y[0, 0], coc[0], float(noise_sigma(y)[0]), level

    def _sensor(self, lin: torch.Tensor, r: Rand) -> torch.Tensor:
        c = self.cfg
        shot = read = 0.0
        if r.u() < c.noise_share:
            shot, read = r.logu(*c.noise_shot_range), r.logu(*c.noise_read_range)
        quality = r.inclusive(*c.jpeg_quality) if r.u() < c.jpeg_share else None
        gain = r.logu(0.5, 1.5)  # exposure
        return sensor_degrade((lin * gain).clamp(0, 1), r.gen, shot, read, quality, demosaic=r.u() < c.demosaic_share)

    def patches(self, gen: torch.Generator) -> dict:
        """Random crops of one tile: ``y``, ``coc`` (n, P, P), ``noise``, ``level`` (n,)."""
        y, coc, noise, level = self.tile(gen)
        p, h = self.cfg.patch, y.shape[-1]
        n = self.cfg.crops
        ys, cs = [], []
        for _ in range(n):
            y0, x0 = (int(torch.randint(0, h - p + 1, (1,), generator=gen)) for _ in range(2))
            ys.append(y[y0 : y0 + p, x0 : x0 + p])
            cs.append(coc[y0 : y0 + p, x0 : x0 + p])
        return {
            "y": torch.stack(ys).half().numpy(),
            "coc": torch.stack(cs).half().numpy(),
            "noise": np.full(n, noise, np.float32),
            "level": np.full(n, level, np.int8),
        }


def _chromatic_shift(lin: torch.Tensor, shift_px: float, angle: float) -> torch.Tensor:
    """Red and blue moved by +-``shift_px`` (px) along ``angle``: lateral chromatic aberration."""
    _, h, w = lin.shape
    dx, dy = shift_px * math.cos(angle), shift_px * math.sin(angle)
    out = lin.clone()
    for ch, sgn in ((0, 1.0), (2, -1.0)):
        theta = torch.tensor([[[1.0, 0.0, sgn * 2 * dx / w], [0.0, 1.0, sgn * 2 * dy / h]]])
        grid = F.affine_grid(theta, (1, 1, h, w), align_corners=False)
        out[ch] = F.grid_sample(lin[None, ch : ch + 1], grid, padding_mode="border", align_corners=False)[0, 0]
    return out


def patch_shard_paths(root) -> list[Path]:
    return sorted(Path(root).glob("patches_*.npz"))


def _write_one(args) -> int:
    """Render shard ``index`` (its own seed) into ``root``; skip it when it exists."""
    root, index, seed, tiles, config = args
    path = Path(root) / f"patches_{index:05d}.npz"
    if path.is_file():
        return 0
    torch.set_num_threads(1)
    maker = TileMaker(PatchConfig(**config))
    gen = torch.Generator().manual_seed(seed * 1_000_003 + index)
    parts = [maker.patches(gen) for _ in range(tiles)]
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    write_shard(path, **arrays)
    return len(arrays["y"])


def render_patch_shards(
    out, shards: int, tiles_per_shard: int = 200, seed: int = 0, config: PatchConfig | None = None, workers: int = 1
) -> Path:
    """Render ``shards`` shards of patches into ``out`` (resumable; ``workers`` processes)."""
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = json.loads(json.dumps((config or PatchConfig()).to_dict()))  # as the manifest holds it (lists)
    man = out / "manifest.json"
    if man.is_file():
        old = json.loads(man.read_text())
        drawn = (old.get("config"), old.get("seed"), old.get("tiles_per_shard"), old.get("texture_recipe", 1))
        if drawn != (cfg, seed, tiles_per_shard, TEXTURE_RECIPE):
            raise ValueError(f"{out} holds patches of another configuration, seed or texture recipe: use another --out")
    record = {"config": cfg, "seed": seed, "tiles_per_shard": tiles_per_shard, "texture_recipe": TEXTURE_RECIPE}
    write_json_atomic(man, {**record, "shards": shards})
    jobs = [(str(out), i, seed, tiles_per_shard, cfg) for i in range(shards)]
    bar = tqdm(total=shards, desc="patch shards", unit="shard")
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(_write_one, jobs):
                bar.update()
    else:
        for job in jobs:
            _write_one(job)
            bar.update()
    bar.close()
    write_json_atomic(man, {**record, "shards": shards, "complete": True})
    return out


def load_patches(root, shards: list | None = None) -> dict:
    """The patches of the shards with the given indices (default: all) as numpy arrays."""
    every = patch_shard_paths(root)
    paths = every if shards is None else [every[i] for i in shards]
    if not paths:
        raise FileNotFoundError(f"no patch shards (patches_*.npz) in {root}")
    parts = []
    for p in paths:
        with np.load(p) as z:
            parts.append({k: z[k] for k in ("y", "coc", "noise", "level")})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def default_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 1)))
