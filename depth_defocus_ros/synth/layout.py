"""The geometry of a random scene: textured surfaces ray-cast into exact depth and colour.

World frame: x right, y down, z forward (metres), camera at the origin; ``fx`` is the focal length
in px at the render width. A ray's camera-frame z is 1, so its parameter ``t`` at a hit is the
z-depth (m).

* :func:`_rot_x`, :func:`_rot_y`: rotations (rad) about the camera's x and y axes.
* :class:`_Canvas`: the z-buffer of one scene (nearest hit, its colour).
* :func:`_sample_tex`: mirror-tiled texture lookup.
* :class:`SceneLayout`: the rays of a camera, textured planes, spheres and boxes with sizes in
  metres, and the two layouts built from them: ``layers`` (fronto-parallel shapes before a
  background) and ``structured`` (ground, backdrop and objects standing on the ground).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from .camera import Rand
    from .scenes import SceneConfig
    from .textures import TextureBank

__all__ = ["SceneLayout"]


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


def _shade(tex_rgb: torch.Tensor, normal: torch.Tensor | None, light: torch.Tensor) -> torch.Tensor:
    """Ambient plus Lambertian light (unit ``light`` direction) on a texture; unlit without normal."""
    if normal is None:
        return tex_rgb
    lam = (normal * light).sum(-1).clamp_min(0.0)
    return tex_rgb * (0.45 + 0.55 * lam)[None]


def _shape_mask(r: Rand, xr: torch.Tensor, yr: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    """A random ellipse, rectangle or blob of half-sizes ``sx``, ``sy`` in rotated coordinates."""
    shape = r.i(0, 3)
    if shape == 0:  # ellipse
        return (xr / sx) ** 2 + (yr / sy) ** 2 < 1
    if shape == 1:  # rectangle
        return (xr.abs() < sx) & (yr.abs() < sy)
    # blob: ellipse with a wobbling rim
    theta = torch.atan2(yr / sy, xr / sx)
    rim = 1 + 0.3 * torch.sin(r.i(2, 7) * theta + r.u(0, 6.28))
    return (xr / sx) ** 2 + (yr / sy) ** 2 < rim**2


class SceneLayout:
    """Draws the geometry and colour of scenes from ``r`` (and textures from ``gen``, its generator).

    :meth:`layers` and :meth:`structured` return z-depth (H, W) in metres, all-in-focus sRGB colour
    (3, H, W) in [0, 1] and the depths (m) of the subjects a camera might focus on.
    """

    def __init__(self, r: Rand, cfg: SceneConfig, textures: TextureBank):
        self.r = r
        self.gen = r.gen
        self.cfg = cfg
        self.textures = textures

    def _texture(self) -> torch.Tensor:
        return self.textures.sample(self.gen)

    # ----------------------------------------------------------------- primitives
    def sharp_tile(self, tile_m: float, z_near: float, fx: float) -> float:
        """Tile size (m of surface per texture) capped so that one texel is at most one pixel at
        depth ``z_near`` (m): textures are never magnified, so the all-in-focus image is sharp at
        the pixel level and every blur in the focused image comes from the optics."""
        return min(tile_m, self.cfg.texture_size * max(z_near, 1e-3) / fx)

    def rays(self, fx: float, pitch: float = 0.0, roll: float = 0.0) -> torch.Tensor:
        """(H, W, 3) world-frame rays of a camera pitched down by ``pitch`` and rolled by ``roll`` (rad)."""
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

    def plane(self, canvas: _Canvas, point, normal, e1, e2, tex, scale, light, fx, shade=True):
        """Infinite textured plane through ``point`` with unit ``normal`` and in-plane axes."""
        rays = canvas.rays
        denom = rays @ normal
        t = ((point @ normal) / denom).where(denom.abs() > 1e-6, torch.full_like(denom, math.inf))
        t = torch.where(t > 0, t, torch.full_like(t, math.inf))
        seen = t[torch.isfinite(t)]
        if seen.numel():
            scale = self.sharp_tile(scale, max(float(seen.min()), self.cfg.min_depth_m), fx)

        def color(mask):
            p = rays * t[..., None]
            uu, vv = (p @ e1) / scale, (p @ e2) / scale
            n = (-normal if float(normal @ light) < 0 else normal).expand_as(p)
            rgb = _sample_tex(tex, uu, vv)
            return _shade(rgb, n if shade else None, light)

        canvas.add(t, color)

    def sphere(self, canvas: _Canvas, center, radius, tex, scale, light):
        """Textured sphere (centre and radius in m, ``scale`` m of arc per texture tile)."""
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
            return _shade(_sample_tex(tex, uu, vv), n, light)

        canvas.add(t, color)

    def box(self, canvas: _Canvas, center, half, yaw, tex, scale, light):
        """Textured box (centre and half-sizes in m) turned by ``yaw`` (rad) about the vertical."""
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
            return _shade(_sample_tex(tex, uu, vv), n, light)

        canvas.add(t, color)

    # ----------------------------------------------------------------- layers layout
    def layers(self, fx: float):
        """Random fronto-parallel textured shapes before a background. Returns depth, colour, subjects."""
        r, cfg = self.r, self.cfg
        h, w = cfg.height, cfg.width
        bg_depth = r.logu(1.0, min(60.0, cfg.max_depth_m))
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        slant = (r.u(-0.3, 0.3) * xx + r.u(-0.3, 0.3) * yy) if r.u() < 0.5 else 0.0
        depth = (
            (bg_depth * (1 + slant)).expand(h, w).clone() if torch.is_tensor(slant) else torch.full((h, w), bg_depth)
        )
        scale = self.sharp_tile(r.logu(0.5, 4.0), bg_depth, fx / 2)  # coordinates span 2 per width
        tex = self._texture()
        color = _sample_tex(tex, xx * w / fx * bg_depth / scale, yy * w / fx * bg_depth / scale)
        subject_depths = []
        for _ in range(r.i(1, 7)):
            z = r.logu(max(cfg.min_depth_m, 0.2), bg_depth * 0.9)
            cx, cy = r.u(-1, 1), r.u(-1, 1)
            sx, sy = r.logu(0.08, 0.8), r.logu(0.08, 0.8)
            ang = r.u(0, math.pi)
            xr = (xx - cx) * math.cos(ang) + (yy - cy) * math.sin(ang)
            yr = -(xx - cx) * math.sin(ang) + (yy - cy) * math.cos(ang)
            mask = _shape_mask(r, xr, yr, sx, sy) & (z < depth)
            if not bool(mask.any()):
                continue
            t2 = self._texture()
            sc = self.sharp_tile(r.logu(0.1, 2.0), z, fx / 2)
            c2 = _sample_tex(t2, (xr * w / fx * z) / sc, (yr * w / fx * z) / sc)
            c2 = c2 * r.u(0.6, 1.2)
            depth = torch.where(mask, torch.full_like(depth, z), depth)
            color = torch.where(mask[None], c2, color)
            subject_depths.append(z)
        return depth, color.clamp(0, 1), subject_depths

    # ----------------------------------------------------------------- structured layout
    def structured(self, fx: float):
        """Ground plane, backdrop and objects standing on the ground, ray-cast. Returns depth,
        colour, subjects."""
        r = self.r
        cam_h = r.logu(0.15, 2.0)  # camera height above the ground (m)
        pitch = r.u(-0.05, 0.45)  # looking down (rad)
        roll = r.u(-0.06, 0.06)
        canvas = _Canvas(self.rays(fx, pitch, roll))
        light = torch.tensor([r.u(-1, 1), r.u(-1.0, -0.2), r.u(-1, 0.3)])
        light = light / light.norm()
        wall_z = self._ground_and_backdrop(canvas, cam_h, light, fx)
        z_far = min(wall_z * 0.9, 20.0)
        subject_depths = [self._object(canvas, cam_h, z_far, light, fx) for _ in range(r.i(2, 9))]
        return self._finish(canvas, fx) + (subject_depths,)

    def _ground_and_backdrop(self, canvas: _Canvas, cam_h: float, light: torch.Tensor, fx: float) -> float:
        """Ground ``cam_h`` m below the camera, then a wall, room corner or far background.
        Returns the backdrop's distance (m)."""
        r, cfg = self.r, self.cfg
        ez, ey, ex = torch.tensor([0.0, 0, 1]), torch.tensor([0.0, 1, 0]), torch.tensor([1.0, 0, 0])
        ground = torch.tensor([0.0, cam_h, 0])
        self.plane(canvas, ground, -ey, ex, ez, self._texture(), r.logu(0.3, 3.0), light, fx, shade=False)
        kind = r.choice([0.45, 0.25, 0.3])
        wall_z = r.logu(1.5, 25.0) if kind < 2 else r.logu(30.0, cfg.max_depth_m)
        yaw = r.u(-0.5, 0.5)
        n = _rot_y(yaw) @ ez
        tex = self._texture()
        scale = r.logu(0.5, 6.0) * (1 if kind < 2 else 8)
        self.plane(canvas, n * wall_z, -n, _rot_y(yaw) @ ex, ey, tex, scale, light, fx, shade=False)
        if kind == 1:  # side wall
            side = 1 if r.u() < 0.5 else -1
            x_w = side * r.logu(0.8, 6.0)
            point, normal = torch.tensor([x_w, 0, 0]), torch.tensor([-side * 1.0, 0, 0])
            tex = self._texture()
            self.plane(canvas, point, normal, ez, ey, tex, r.logu(0.5, 4.0), light, fx)
        return wall_z

    def _object(self, canvas: _Canvas, cam_h: float, z_far: float, light: torch.Tensor, fx: float) -> float:
        """A box, sphere or thin panel (poster, sign, door) standing on the ground (or floating)
        with a real-world size (m), its nearest extent at a depth up to ``z_far`` (m). Returns
        that depth (m): the camera never sits inside or against it."""
        r, cfg = self.r, self.cfg
        z = r.logu(max(0.3, cam_h * 0.6), max(z_far, 0.6))
        half_fov = cfg.width / (2 * fx)
        x = r.u(-1.2, 1.2) * half_fov * z
        size = r.logu(0.05, 1.2) * (1 + z / 10)
        tex = self._texture()
        kind = r.choice([0.45, 0.35, 0.2])
        floating = r.u() < 0.15
        y_base = cam_h - (r.u(0.2, 1.5) * size if floating else 0.0)
        if kind == 0:  # box
            half = torch.tensor([size * r.u(0.3, 1), size * r.u(0.3, 1.5), size * r.u(0.3, 1)])
            center = torch.tensor([x, y_base - float(half[1]), z + float(half[[0, 2]].norm())])
            tile = self.sharp_tile(r.logu(0.1, 1.0), z, fx)
            self.box(canvas, center, half, r.u(0, math.pi), tex, tile, light)
        elif kind == 1:  # sphere
            rad = size * r.u(0.3, 0.7)
            tile = self.sharp_tile(r.logu(0.1, 1.0), z, fx)
            self.sphere(canvas, torch.tensor([x, y_base - rad, z + rad]), rad, tex, tile, light)
        else:  # thin panel
            half = torch.tensor([size * r.u(0.4, 1.2), size * r.u(0.5, 1.5), 0.01 + 0.02 * r.u()])
            center = torch.tensor([x, y_base - float(half[1]), z + float(half[0])])
            tile = self.sharp_tile(r.logu(0.2, 2.0), z, fx)
            self.box(canvas, center, half, r.u(-0.6, 0.6), tex, tile, light)
        return z

    def _finish(self, canvas: _Canvas, fx: float) -> tuple:
        """Sky where rays hit nothing; depth (m, clamped to the configured range) and colour."""
        r, cfg = self.r, self.cfg
        rays = canvas.rays
        miss = ~torch.isfinite(canvas.t)
        if bool(miss.any()):
            k = fx / cfg.texture_size * r.u(1.0, 3.0)  # 1-3 texels per pixel: sharp
            sky = _sample_tex(self._texture(), rays[..., 0] * k, rays[..., 1] * k)
            canvas.color = torch.where(miss[None], sky, canvas.color)
        # t is the parameter along a ray whose camera-frame z is 1 -> t equals z-depth
        depth = canvas.t.clamp(cfg.min_depth_m, cfg.max_depth_m)
        depth = torch.where(miss, torch.full_like(depth, cfg.max_depth_m), depth)
        return depth, canvas.color.clamp(0, 1)
