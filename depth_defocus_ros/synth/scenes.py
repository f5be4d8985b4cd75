"""Procedural 3D scenes with exact depth, realistic lens settings, and their focused renders.

Two layouts:

* ``layers``: textured fronto-parallel (or slightly slanted) shapes at random depths before a
  background plane (the classic random-layer scene).
* ``structured``: a ground plane seen in perspective from a camera at a realistic height,
  a backdrop (wall, room corner or far background), boxes and spheres standing on the ground with
  real-world sizes, occluding each other, and a few floating panels.

Every scene is ray-cast (exact z-depth in metres), lit, textured with procedural noise or real
photographs, given lens settings drawn like real use (autofocus on a subject, focus near the
hyperfocal distance, close focus, or random), blurred with the occlusion-aware renderer in
linear light, then degraded with sensor noise, 8-bit quantisation and optional JPEG.

A batch is a dict (all tensors batched on dim 0):

* ``image``   (B, 3, H, W) float32 focused sRGB in [0, 1] (what a camera would give)
* ``aif``     (B, 3, H, W) float32 all-in-focus sRGB in [0, 1]
* ``depth``   (B, 1, H, W) float32 z-depth in metres
* ``defocus`` (B, 1, H, W) float32 CoC diameter in px at this resolution
* ``signed_defocus`` (B, 1, H, W) float32, px, positive behind the focus plane
* ``valid``   (B, 1, H, W) bool, pixels with ground truth
* ``lens``    (B, 3) float32: focal length (m), f-number, focus distance (m)
* ``fx``      (B,) float32 focal length in px at this resolution
* ``layout``  (B,) int64: 0 layers, 1 structured
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..optics import Lens, coc_at_infinity_px, signed_defocus_px
from .render import render_defocus, render_defocus_gather, sensor_degrade, srgb_to_linear
from .textures import TextureBank

__all__ = ["SceneConfig", "SceneGenerator", "LAYOUTS", "add_scene_args", "scene_config_from_args", "render_shards"]

LAYOUTS = ("layers", "structured")
# sensor widths (mm): 1/2.3", 1/1.7", 1", 4/3, APS-C, full frame
_SENSOR_WIDTHS_MM = (6.17, 7.6, 13.2, 17.3, 23.5, 36.0)


@dataclass
class SceneConfig:
    """What the synthetic stream draws. Defaults are the ones the shipped weights used."""

    height: int = 192
    width: int = 256
    structured_fraction: float = 0.6  # share of structured layouts (rest: random layers)
    occlusion_aware: bool = True  # False: per-pixel gather blur (ablation only)
    photo_fraction: float = 0.5
    photo_folder: str | None = None
    noise: bool = True
    jpeg_prob: float = 0.4
    max_coc_fraction: float = 0.12  # largest CoC as a fraction of the image width
    min_depth_m: float = 0.15
    max_depth_m: float = 80.0
    f_mm_range: tuple = (4.0, 85.0)
    n_range: tuple = (1.4, 8.0)
    focus_range_m: tuple = (0.3, 10.0)
    max_crop_factor: float = 3.0  # fx as for a photo up to this many times wider than the render
    wide_aperture_fraction: float = 0.5  # share of f-numbers drawn from [N_min, 2 N_min]
    # share of scenes whose lens is redrawn until the CoC at infinity is at least
    # ``visible_blur_min_px`` (px at the render width): scenes where defocus tells depth
    visible_blur_fraction: float = 0.0
    visible_blur_min_px: float = 2.0
    noise_shot_range: tuple = (1e-4, 1e-2)  # Poisson gain, linear intensity units
    noise_read_range: tuple = (1e-6, 1e-4)  # Gaussian read-noise variance, linear units
    texture_size: int = 256
    texture_refresh: int = 32  # scenes between texture pool refreshes
    fixed_fx: float | None = None  # px: a fixed camera instead of random sensors and lenses
    fixed_lens: tuple | None = None  # (focal length m, f-number, focus distance m)

    def to_dict(self) -> dict:
        return asdict(self)


def _range(text: str) -> tuple:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI (two numbers), got {text!r}") from None
    if not 0 < lo <= hi:
        raise argparse.ArgumentTypeError(f"expected 0 < LO <= HI, got {text!r}")
    return (lo, hi)


def add_scene_args(p: argparse.ArgumentParser) -> None:
    """The synthetic-scene options shared by ``render`` and ``train`` (defaults: SceneConfig's)."""
    d = SceneConfig()
    p.add_argument("--height", type=int, default=d.height, help="synthetic render height (px)")
    p.add_argument("--width", type=int, default=d.width, help="synthetic render width (px)")
    p.add_argument("--structured-fraction", type=float, default=d.structured_fraction)
    p.add_argument("--gather-blur", action="store_true", help="ablation: occlusion-unaware blur")
    p.add_argument("--photo-folder", default=None, help="extra photographs for textures")
    p.add_argument("--photo-fraction", type=float, default=d.photo_fraction, help="share of photographic textures")
    p.add_argument(
        "--max-coc-fraction",
        type=float,
        default=d.max_coc_fraction,
        help="largest CoC of a scene as a fraction of the image width",
    )
    p.add_argument(
        "--visible-blur-fraction",
        type=float,
        default=d.visible_blur_fraction,
        help="share of scenes whose lens gives a CoC at infinity of at least "
        "--visible-blur-min-px (px at the render width)",
    )
    p.add_argument("--visible-blur-min-px", type=float, default=d.visible_blur_min_px)
    p.add_argument(
        "--noise-shot-range",
        type=_range,
        default=d.noise_shot_range,
        metavar="LO,HI",
        help="Poisson noise gain range (linear intensity), drawn log-uniform",
    )
    p.add_argument(
        "--noise-read-range",
        type=_range,
        default=d.noise_read_range,
        metavar="LO,HI",
        help="Gaussian read-noise variance range (linear intensity), drawn log-uniform",
    )


def scene_config_from_args(args) -> SceneConfig:
    return SceneConfig(
        height=args.height,
        width=args.width,
        structured_fraction=args.structured_fraction,
        occlusion_aware=not args.gather_blur,
        photo_folder=args.photo_folder,
        photo_fraction=args.photo_fraction,
        max_coc_fraction=args.max_coc_fraction,
        visible_blur_fraction=args.visible_blur_fraction,
        visible_blur_min_px=args.visible_blur_min_px,
        noise_shot_range=tuple(args.noise_shot_range),
        noise_read_range=tuple(args.noise_read_range),
    )


class _Rand:
    """Scalar draws from one torch.Generator (the only source of randomness: reproducible)."""

    def __init__(self, gen: torch.Generator):
        self.gen = gen

    def u(self, lo: float = 0.0, hi: float = 1.0) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=self.gen))

    def logu(self, lo: float, hi: float) -> float:
        return math.exp(self.u(math.log(lo), math.log(hi)))

    def i(self, lo: int, hi: int) -> int:  # inclusive lo, exclusive hi
        return int(torch.randint(lo, hi, (1,), generator=self.gen))

    def choice(self, weights) -> int:
        w = torch.tensor(weights, dtype=torch.float64)
        return int(torch.multinomial(w, 1, generator=self.gen))


def _rot_y(a: float) -> torch.Tensor:
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float32)


def _rot_x(a: float) -> torch.Tensor:
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=torch.float32)


class _Canvas:
    """Z-buffer for one scene: nearest hit per pixel, its colour and whether it was hit."""

    def __init__(self, rays_world: torch.Tensor):
        self.rays = rays_world  # (H, W, 3), z-component of the *camera* ray is 1, so t = depth
        h, w, _ = rays_world.shape
        self.t = torch.full((h, w), math.inf)
        self.color = torch.zeros(3, h, w)

    def add(self, t: torch.Tensor, color_fn) -> None:
        """Add a surface hit at ray parameter ``t`` (inf = miss); ``color_fn(mask)`` -> (3,H,W)."""
        closer = (t > 0) & (t < self.t)
        if not bool(closer.any()):
            return
        self.t = torch.where(closer, t, self.t)
        self.color = torch.where(closer[None], color_fn(closer), self.color)


def _sample_tex(tex: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Mirror-tiled texture lookup at texture coordinates (u, v) in tiles; (3, H, W)."""

    def tri(x):  # mirror tiling without seams, into [-1, 1]
        x = torch.remainder(x, 2.0)
        return 1.0 - 2.0 * (x - 1.0).abs()

    grid = torch.stack([tri(u), tri(v)], dim=-1)[None].nan_to_num(0.0)
    return F.grid_sample(tex[None], grid, mode="bilinear", align_corners=False)[0]


class SceneGenerator:
    """Draws scenes from one seed. ``batch(n)`` returns the dict described in the module doc."""

    def __init__(self, config: SceneConfig | None = None, seed: int = 0, device: str = "cpu"):
        self.cfg = config or SceneConfig()
        self.gen = torch.Generator().manual_seed(int(seed))
        self.r = _Rand(self.gen)
        self.device = torch.device(device)
        self.textures = TextureBank(
            self.cfg.texture_size,
            self.cfg.photo_fraction,
            self.cfg.photo_folder,
            use_photos=self.cfg.photo_fraction > 0,
        )
        self._count = 0

    # ----------------------------------------------------------------- camera and lens
    def _camera(self):
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

    def _focus(self, depth: torch.Tensor, subject_depths: list, f_m: float, n: float, sensor_mm: float) -> float:
        """Focus distance (m) following how real cameras are focused."""
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

    def _f_number(self) -> float:
        """f-number, log-uniform over the range, with more weight on wide apertures (the settings
        where defocus tells depth: fast lenses wide open, as for portraits and low light)."""
        lo, hi = self.cfg.n_range
        if self.r.u() < self.cfg.wide_aperture_fraction:
            return self.r.logu(lo, min(hi, 2 * lo))
        return self.r.logu(lo, hi)

    # ----------------------------------------------------------------- geometry
    def _sharp_tile(self, tile_m: float, z_near: float, fx: float) -> float:
        """Tile size (m of surface per texture) capped so that one texel is at most one pixel at
        depth ``z_near``: textures are never magnified, so the all-in-focus image is sharp at the
        pixel level and every blur in the focused image comes from the optics."""
        return min(tile_m, self.cfg.texture_size * max(z_near, 1e-3) / fx)

    def _rays(self, fx: float, pitch: float = 0.0, roll: float = 0.0) -> torch.Tensor:
        h, w = self.cfg.height, self.cfg.width
        ys = (torch.arange(h, dtype=torch.float32) + 0.5 - h / 2) / fx
        xs = (torch.arange(w, dtype=torch.float32) + 0.5 - w / 2) / fx
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        rays = torch.stack([xx, yy, torch.ones_like(xx)], dim=-1)  # camera frame, z = 1
        rot = _rot_x(pitch)
        if roll:
            c, s = math.cos(roll), math.sin(roll)
            rot = rot @ torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=torch.float32)
        return rays @ rot.T  # world frame (x right, y down, z forward, ground at y = +height)

    def _shade(self, tex_rgb: torch.Tensor, normal: torch.Tensor | None, light: torch.Tensor):
        if normal is None:
            return tex_rgb
        lam = (normal * light).sum(-1).clamp_min(0.0)
        return tex_rgb * (0.45 + 0.55 * lam)[None]

    def _plane(self, canvas: _Canvas, point, normal, e1, e2, tex, scale, light, fx, shade=True):
        """Infinite textured plane through ``point`` with unit ``normal`` and in-plane axes."""
        rays = canvas.rays
        denom = rays @ normal
        t = ((point @ normal) / denom).where(denom.abs() > 1e-6, torch.full_like(denom, math.inf))
        t = torch.where(t > 0, t, torch.full_like(t, math.inf))
        seen = t[torch.isfinite(t)]
        if seen.numel():
            scale = self._sharp_tile(scale, max(float(seen.min()), self.cfg.min_depth_m), fx)

        def color(mask):
            p = rays * t[..., None]
            uu, vv = (p @ e1) / scale, (p @ e2) / scale
            n = (-normal if float(normal @ light) < 0 else normal).expand_as(p)
            rgb = _sample_tex(tex, uu, vv)
            return self._shade(rgb, n if shade else None, light)

        canvas.add(t, color)

    def _sphere(self, canvas: _Canvas, center, radius, tex, scale, light):
        rays = canvas.rays
        a = (rays * rays).sum(-1)
        b = -2 * (rays @ center)
        c = float(center @ center) - radius * radius
        disc = b * b - 4 * a * c
        t = (-b - torch.sqrt(disc.clamp_min(0))) / (2 * a)
        t = torch.where(disc > 0, t, torch.full_like(t, math.inf))

        def color(mask):
            p = rays * t[..., None]
            n = (p - center) / radius
            uu = torch.atan2(n[..., 0], n[..., 2]) * radius / scale  # arc length (m) / tile size
            vv = torch.asin(n[..., 1].clamp(-1, 1)) * radius / scale
            return self._shade(_sample_tex(tex, uu, vv), n, light)

        canvas.add(t, color)

    def _box(self, canvas: _Canvas, center, half, yaw, tex, scale, light):
        rot = _rot_y(yaw)
        o = -(center @ rot)  # ray origin in box frame (rays start at the camera centre)
        d = canvas.rays @ rot
        inv = 1.0 / torch.where(d.abs() < 1e-9, torch.full_like(d, 1e-9), d)
        t1 = (-half - o) * inv
        t2 = (half - o) * inv
        tmin = torch.minimum(t1, t2).amax(-1)
        tmax = torch.maximum(t1, t2).amin(-1)
        hit = (tmax >= tmin) & (tmin > 0)
        t = torch.where(hit, tmin, torch.full_like(tmin, math.inf))

        def color(mask):
            p = o + d * t[..., None]  # box frame
            axis = (p.abs() / half).argmax(-1)  # face hit: largest normalised coordinate
            n_local = F.one_hot(axis, 3).float() * torch.sign(p)
            n = n_local @ rot.T
            uu = torch.where(axis == 0, p[..., 2], p[..., 0]) / scale
            vv = torch.where(axis == 1, p[..., 2], p[..., 1]) / scale
            return self._shade(_sample_tex(tex, uu, vv), n, light)

        canvas.add(t, color)

    def _layers_scene(self, fx: float):
        """Random fronto-parallel textured shapes before a background. Returns depth, colour."""
        r, cfg = self.r, self.cfg
        h, w = cfg.height, cfg.width
        bg_depth = r.logu(1.0, min(60.0, cfg.max_depth_m))
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        slant = (r.u(-0.3, 0.3) * xx + r.u(-0.3, 0.3) * yy) if r.u() < 0.5 else 0.0
        depth = (
            (bg_depth * (1 + slant)).expand(h, w).clone() if torch.is_tensor(slant) else torch.full((h, w), bg_depth)
        )
        scale = self._sharp_tile(r.logu(0.5, 4.0), bg_depth, fx / 2)  # coordinates span 2 per width
        tex = self.textures.sample(self.gen)
        color = _sample_tex(tex, xx * w / fx * bg_depth / scale, yy * w / fx * bg_depth / scale)
        subject_depths = []
        for _ in range(r.i(1, 7)):
            z = r.logu(max(cfg.min_depth_m, 0.2), bg_depth * 0.9)
            cx, cy = r.u(-1, 1), r.u(-1, 1)
            sx, sy = r.logu(0.08, 0.8), r.logu(0.08, 0.8)
            ang = r.u(0, math.pi)
            xr = (xx - cx) * math.cos(ang) + (yy - cy) * math.sin(ang)
            yr = -(xx - cx) * math.sin(ang) + (yy - cy) * math.cos(ang)
            shape = r.i(0, 3)
            if shape == 0:  # ellipse
                mask = (xr / sx) ** 2 + (yr / sy) ** 2 < 1
            elif shape == 1:  # rectangle
                mask = (xr.abs() < sx) & (yr.abs() < sy)
            else:  # blob: ellipse with a wobbling rim
                theta = torch.atan2(yr / sy, xr / sx)
                rim = 1 + 0.3 * torch.sin(r.i(2, 7) * theta + r.u(0, 6.28))
                mask = (xr / sx) ** 2 + (yr / sy) ** 2 < rim**2
            mask = mask & (z < depth)
            if not bool(mask.any()):
                continue
            t2 = self.textures.sample(self.gen)
            sc = self._sharp_tile(r.logu(0.1, 2.0), z, fx / 2)
            c2 = _sample_tex(t2, (xr * w / fx * z) / sc, (yr * w / fx * z) / sc)
            c2 = c2 * r.u(0.6, 1.2)
            depth = torch.where(mask, torch.full_like(depth, z), depth)
            color = torch.where(mask[None], c2, color)
            subject_depths.append(z)
        return depth, color.clamp(0, 1), subject_depths

    def _structured_scene(self, fx: float):
        """Ground plane, backdrop and objects standing on the ground, ray-cast."""
        r, cfg = self.r, self.cfg
        cam_h = r.logu(0.15, 2.0)  # camera height above the ground (m)
        pitch = r.u(-0.05, 0.45)  # looking down (rad)
        roll = r.u(-0.06, 0.06)
        rays = self._rays(fx, pitch, roll)
        canvas = _Canvas(rays)
        light = torch.tensor([r.u(-1, 1), r.u(-1.0, -0.2), r.u(-1, 0.3)])
        light = light / light.norm()
        ez, ey, ex = torch.tensor([0.0, 0, 1]), torch.tensor([0.0, 1, 0]), torch.tensor([1.0, 0, 0])
        # ground
        self._plane(
            canvas,
            torch.tensor([0.0, cam_h, 0]),
            -ey,
            ex,
            ez,
            self.textures.sample(self.gen),
            r.logu(0.3, 3.0),
            light,
            fx,
            shade=False,
        )
        # backdrop: wall, room corner, or far background
        kind = r.choice([0.45, 0.25, 0.3])
        wall_z = r.logu(1.5, 25.0) if kind < 2 else r.logu(30.0, cfg.max_depth_m)
        yaw = r.u(-0.5, 0.5)
        n = _rot_y(yaw) @ ez
        self._plane(
            canvas,
            n * wall_z,
            -n,
            _rot_y(yaw) @ ex,
            ey,
            self.textures.sample(self.gen),
            r.logu(0.5, 6.0) * (1 if kind < 2 else 8),
            light,
            fx,
            shade=False,
        )
        if kind == 1:  # side wall
            side = 1 if r.u() < 0.5 else -1
            x_w = side * r.logu(0.8, 6.0)
            self._plane(
                canvas,
                torch.tensor([x_w, 0, 0]),
                torch.tensor([-side * 1.0, 0, 0]),
                ez,
                ey,
                self.textures.sample(self.gen),
                r.logu(0.5, 4.0),
                light,
                fx,
            )
        # objects standing on the ground, sizes in metres
        subject_depths = []
        z_far = min(wall_z * 0.9, 20.0)
        for _ in range(r.i(2, 9)):
            z = r.logu(max(0.3, cam_h * 0.6), max(z_far, 0.6))
            half_fov = cfg.width / (2 * fx)
            x = r.u(-1.2, 1.2) * half_fov * z
            size = r.logu(0.05, 1.2) * (1 + z / 10)
            tex = self.textures.sample(self.gen)
            kind_o = r.choice([0.45, 0.35, 0.2])
            floating = r.u() < 0.15
            y_base = cam_h - (r.u(0.2, 1.5) * size if floating else 0.0)
            # z is the nearest extent of the object: the camera never sits inside or against it
            if kind_o == 0:  # box
                half = torch.tensor([size * r.u(0.3, 1), size * r.u(0.3, 1.5), size * r.u(0.3, 1)])
                center = torch.tensor([x, y_base - float(half[1]), z + float(half[[0, 2]].norm())])
                tile = self._sharp_tile(r.logu(0.1, 1.0), z, fx)
                self._box(canvas, center, half, r.u(0, math.pi), tex, tile, light)
            elif kind_o == 1:  # sphere
                rad = size * r.u(0.3, 0.7)
                tile = self._sharp_tile(r.logu(0.1, 1.0), z, fx)
                self._sphere(canvas, torch.tensor([x, y_base - rad, z + rad]), rad, tex, tile, light)
            else:  # thin panel (poster, sign, door)
                half = torch.tensor([size * r.u(0.4, 1.2), size * r.u(0.5, 1.5), 0.01 + 0.02 * r.u()])
                center = torch.tensor([x, y_base - float(half[1]), z + float(half[0])])
                tile = self._sharp_tile(r.logu(0.2, 2.0), z, fx)
                self._box(canvas, center, half, r.u(-0.6, 0.6), tex, tile, light)
            subject_depths.append(z)
        # rays that hit nothing (sky above a far backdrop): far background colour
        miss = ~torch.isfinite(canvas.t)
        if bool(miss.any()):
            k = fx / cfg.texture_size * r.u(1.0, 3.0)  # 1-3 texels per pixel: sharp
            sky = _sample_tex(self.textures.sample(self.gen), rays[..., 0] * k, rays[..., 1] * k)
            canvas.color = torch.where(miss[None], sky, canvas.color)
        # t is the parameter along a ray whose camera-frame z is 1 -> t equals z-depth
        depth = canvas.t.clamp(cfg.min_depth_m, cfg.max_depth_m)
        depth = torch.where(miss, torch.full_like(depth, cfg.max_depth_m), depth)
        return depth, canvas.color.clamp(0, 1), subject_depths

    # ----------------------------------------------------------------- one scene
    def _scene(self):
        cfg, r = self.cfg, self.r
        if self._count % cfg.texture_refresh == 0:
            self.textures.refresh(self.gen)
        self._count += 1
        sensor, f_m, fx = self._camera()
        if cfg.fixed_fx:
            fx = float(cfg.fixed_fx)
        structured = r.u() < cfg.structured_fraction
        if structured:
            depth, color, subjects = self._structured_scene(fx)
        else:
            depth, color, subjects = self._layers_scene(fx)
        depth = depth.clamp(cfg.min_depth_m, cfg.max_depth_m)
        cap = cfg.max_coc_fraction * cfg.width
        if cfg.fixed_lens:
            lens = Lens(*cfg.fixed_lens)
        # (no draw at all when the share is 0: the held-out sets' random stream stays unchanged)
        visible = cfg.visible_blur_fraction > 0 and r.u() < cfg.visible_blur_fraction
        # geometry (and fx) stay; redraw f-number and focus while the blur is beyond a real photo's
        # (and, for a visible-blur scene, while the CoC at infinity is below the minimum)
        best = None
        for _ in range(0 if cfg.fixed_lens else (30 if visible else 10)):
            n = self._f_number()
            lens = Lens(f_m, n, self._focus(depth, subjects, f_m, n, sensor))
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
        exposure = r.logu(0.6, 1.6)
        return depth, (color * exposure).clamp(0, 1), lens, fx, int(structured)

    # ----------------------------------------------------------------- batches
    def _degrade(self, lin: torch.Tensor) -> torch.Tensor:
        """Sensor noise (Poisson-Gaussian, linear), 8-bit quantisation, optional JPEG. sRGB out."""
        r, cfg = self.r, self.cfg
        if not cfg.noise:
            return sensor_degrade(lin, self.gen, 0.0, 0.0)
        shot, read = r.logu(*cfg.noise_shot_range), r.logu(*cfg.noise_read_range)
        noise = torch.randn(lin.shape, generator=self.gen)  # drawn here: the held-out streams stay bit-exact
        lin = lin + torch.sqrt(lin.clamp_min(0) * shot + read) * noise
        quality = r.i(55, 96) if r.u() < cfg.jpeg_prob else None
        return sensor_degrade(lin, self.gen, 0.0, 0.0, quality)

    def batch(self, n: int) -> dict:
        """Draw ``n`` scenes and render them (rendering on ``device``)."""
        scenes = [self._scene() for _ in range(n)]
        depth = torch.stack([s[0] for s in scenes])[:, None]  # (B, 1, H, W)
        aif = torch.stack([s[1] for s in scenes])  # (B, 3, H, W) sRGB
        lens = torch.tensor(
            [[s[2].focal_length_m, s[2].f_number, s[2].focus_distance_m] for s in scenes], dtype=torch.float32
        )
        fx = torch.tensor([s[3] for s in scenes], dtype=torch.float32)
        layout = torch.tensor([s[4] for s in scenes], dtype=torch.int64)
        sd = torch.stack([signed_defocus_px(s[0], s[2], s[3]) for s in scenes])[:, None]
        dev = self.device
        lin = srgb_to_linear(aif.to(dev))
        blur = render_defocus if self.cfg.occlusion_aware else render_defocus_gather
        focused = blur(lin, sd.to(dev)).cpu()
        image = torch.stack([self._degrade(x) for x in focused])
        return {
            "image": image.float(),
            "aif": aif.float(),
            "depth": depth.float(),
            "defocus": sd.abs().float(),
            "signed_defocus": sd.float(),
            "valid": torch.isfinite(depth) & (depth > 0),
            "lens": lens,
            "fx": fx,
            "layout": layout,
        }


def render_shards(
    out: str | os.PathLike, scenes: int, seed: int, shard_size: int = 100, config=None, progress: bool = True
) -> Path:
    """Render ``scenes`` synthetic scenes into shards (resumable: existing shards are kept).

    Shard ``i`` is drawn from seed ``seed * 100003 + i``, so every shard is reproducible alone and
    a resumed run gives the same dataset as an uninterrupted one.
    """
    from tqdm import tqdm

    from .shards import FORMAT_VERSION, write_json_atomic, write_shard

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config or SceneConfig()
    n_shards = (scenes + shard_size - 1) // shard_size
    names = []
    bar = tqdm(total=scenes, desc=f"render {out.name}", unit="scene", disable=not progress)

    def write_manifest(complete: bool) -> None:
        manifest = {
            "format_version": FORMAT_VERSION,
            "source": "synthetic",
            "seed": seed,
            "scenes": scenes,
            "shard_size": shard_size,
            "shards": names,
            "complete": complete,
            "scene_config": cfg.to_dict(),
        }
        write_json_atomic(out / "manifest.json", manifest)

    for i in range(n_shards):
        name = f"shard_{i:05d}.npz"
        names.append(name)
        count = min(shard_size, scenes - i * shard_size)
        if (out / name).exists():
            bar.update(count)
            continue
        gen = SceneGenerator(cfg, seed=seed * 100003 + i)
        parts = [gen.batch(min(25, count - k)) for k in range(0, count, 25)]
        b = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        write_shard(
            out / name,
            image=(b["image"].permute(0, 2, 3, 1) * 255).round().byte().numpy(),
            depth=b["depth"][:, 0].numpy(),
            lens=b["lens"].numpy(),
            fx=b["fx"].numpy(),
            layout=b["layout"].numpy(),
        )
        write_manifest(complete=False)
        bar.update(count)
    bar.close()
    write_manifest(complete=True)
    return out
