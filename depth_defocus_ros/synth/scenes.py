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

The geometry of a scene is :mod:`.layout`'s, its sensor and lens settings :mod:`~depth_defocus_ros.synth.camera`'s; this
module holds the configuration (:class:`SceneConfig`, its command-line options), composes them
into samples (:class:`SceneGenerator`, all draws from one seeded generator in a fixed order, so a
seed always renders the same scenes) and writes datasets of them as shards (:func:`render_shards`).

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
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..argtypes import positive_range
from ..optics import signed_defocus_px
from .camera import CameraSampler, Rand
from .layout import SceneLayout
from .render import render_defocus, render_defocus_gather, sensor_degrade, srgb_to_linear
from .textures import TextureBank

__all__ = ["SceneConfig", "SceneGenerator", "LAYOUTS", "add_scene_args", "scene_config_from_args", "render_shards"]

LAYOUTS = ("layers", "structured")


@dataclass
class SceneConfig:
    """What the synthetic stream draws. Defaults are the ones the shipped weights used."""

    height: int = 192
    width: int = 256
    structured_fraction: float = 0.6  # share of structured layouts (rest: random layers)
    occlusion_aware: bool = True  # False: per-pixel gather blur (ablation only)
    photo_fraction: float = 0.5
    flat_fraction: float = 0.0  # share of textureless surfaces (synth.textures.flat_texture), drawn first
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
        "--flat-fraction",
        type=float,
        default=d.flat_fraction,
        help="share of textureless surfaces (one colour under gentle shading, or flat colours with sharp "
        "boundaries), drawn before the photo/procedural choice",
    )
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
        type=positive_range,
        default=d.noise_shot_range,
        metavar="LO,HI",
        help="Poisson noise gain range (linear intensity), drawn log-uniform",
    )
    p.add_argument(
        "--noise-read-range",
        type=positive_range,
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
        flat_fraction=args.flat_fraction,
        max_coc_fraction=args.max_coc_fraction,
        visible_blur_fraction=args.visible_blur_fraction,
        visible_blur_min_px=args.visible_blur_min_px,
        noise_shot_range=tuple(args.noise_shot_range),
        noise_read_range=tuple(args.noise_read_range),
    )


class SceneGenerator:
    """Draws scenes from one seed. ``batch(n)`` returns the dict described in the module doc."""

    def __init__(self, config: SceneConfig | None = None, seed: int = 0, device: str = "cpu"):
        self.cfg = config or SceneConfig()
        self.gen = torch.Generator().manual_seed(int(seed))
        self.r = Rand(self.gen)
        self.device = torch.device(device)
        self.textures = TextureBank(
            self.cfg.texture_size,
            self.cfg.photo_fraction,
            self.cfg.photo_folder,
            use_photos=self.cfg.photo_fraction > 0,
            flat_fraction=self.cfg.flat_fraction,
        )
        self.layout = SceneLayout(self.r, self.cfg, self.textures)
        self.camera = CameraSampler(self.r, self.cfg)
        self._count = 0

    # ----------------------------------------------------------------- one scene
    def _scene(self):
        """One scene: z-depth (m), all-in-focus sRGB, lens, fx (px) and layout (0 layers, 1 structured)."""
        cfg, r = self.cfg, self.r
        if self._count % cfg.texture_refresh == 0:
            self.textures.refresh(self.gen)
        self._count += 1
        sensor, f_m, fx = self.camera.camera()
        if cfg.fixed_fx:
            fx = float(cfg.fixed_fx)
        structured = r.u() < cfg.structured_fraction
        if structured:
            depth, color, subjects = self.layout.structured(fx)
        else:
            depth, color, subjects = self.layout.layers(fx)
        depth = depth.clamp(cfg.min_depth_m, cfg.max_depth_m)
        lens = self.camera.lens(depth, subjects, f_m, sensor, fx)
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
    from .textures import TEXTURE_RECIPE

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config or SceneConfig()
    _check_resumable(out, seed, cfg, TEXTURE_RECIPE)
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
            "texture_recipe": TEXTURE_RECIPE,
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


def _check_resumable(out: Path, seed: int, cfg: SceneConfig, recipe: int) -> None:
    """Refuse to add shards to a folder whose shards were drawn differently (another seed, scene
    config or texture recipe): the result would look like one dataset and be two."""
    import json

    man = out / "manifest.json"
    if not man.is_file() or not any(out.glob("shard_*.npz")):
        return
    old = json.loads(man.read_text())
    asked = json.loads(json.dumps(cfg.to_dict()))  # as the manifest stores it (tuples are lists)
    # an option added later (e.g. flat_fraction) is absent from older manifests: its default
    # draws what they drew
    drawn = old.get("scene_config")
    if isinstance(drawn, dict):
        drawn = {**json.loads(json.dumps(SceneConfig().to_dict())), **drawn}
    if (old.get("seed"), drawn, old.get("texture_recipe", 1)) != (seed, asked, recipe):
        raise ValueError(
            f"{out} holds shards rendered with another seed, scene config or texture recipe "
            f"(manifest: seed {old.get('seed')}, texture recipe {old.get('texture_recipe', 1)}; "
            f"asked: seed {seed}, recipe {recipe}): give an empty --out"
        )
