"""A public real-photograph benchmark: Middlebury 2014 "Motorcycle" re-focused by our optics.

scikit-image ships the left view of the Middlebury 2014 "Motorcycle" pair with its measured
disparity (``skimage.data.stereo_motorcycle``, down-sampled 4x to 741x500). With the calibration
in that function's docstring, depth in metres is ``Z = fx * B / (disparity + doffs)`` with
``fx = 994.978 px``, ``B = 0.193001 m`` and ``doffs = 31.086 px`` (the principal points' offset).
The photograph is close to all-in-focus, so focused images follow from it and its depth through
the package's occlusion-aware renderer (:func:`~.render.render_defocus`) at fixed lens settings.

The case set is fixed here, once, before any estimator is measured on it: 16 lens settings
(f/1.4-f/4, 35-135 mm, focus in front of, inside and beyond the scene's 2.1-5.0 m), each at the
shipped width (741 px) and half of it (370 px), each clean and with sensor noise + JPEG: 64 cases.
Both motorcycle images are excluded from the training textures (:mod:`.textures`); nothing here is
ever trained on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..optics import Lens, coc_px, signed_defocus_px
from ..synth.render import render_defocus, sensor_degrade, srgb_to_linear

__all__ = ["MOTORCYCLE", "RealCase", "CASES", "motorcycle_scene", "render_case", "load_cases", "case_group"]

# calibration of the shipped (4x down-sampled) Motorcycle pair: skimage.data.stereo_motorcycle docstring
MOTORCYCLE = {"fx": 994.978, "cx": 311.193, "cy": 254.877, "doffs": 31.086, "baseline_m": 0.193001}

# (focal length mm, f-number, focus distance m), fixed before any model was measured on them.
# Scene depth: 2.1-5.0 m. Focus before 2.1 m: everything behind the focus plane; beyond 5.0 m:
# everything in front; between: both sides. CoC at 741 px: 0 to 17 px.
CASE_LENSES = (
    (50.0, 1.4, 1.5),
    (85.0, 4.0, 1.8),
    (35.0, 1.4, 2.0),
    (50.0, 2.0, 2.4),
    (85.0, 2.8, 2.6),
    (100.0, 4.0, 3.0),
    (50.0, 1.4, 3.2),
    (85.0, 1.4, 3.6),
    (35.0, 2.0, 4.2),
    (70.0, 2.8, 4.6),
    (50.0, 1.8, 5.5),
    (85.0, 2.8, 6.0),
    (100.0, 4.0, 7.0),
    (35.0, 1.4, 8.0),
    (70.0, 1.8, 10.0),
    (135.0, 4.0, 12.0),
)
FULL_WIDTH, HALF_WIDTH = 741, 370
SCENE_NEAR_M, SCENE_FAR_M = 2.1, 5.0
# sensor noise of the degraded cases (linear light, intensities in [0, 1]) and their JPEG quality
NOISE_SHOT, NOISE_READ, JPEG_QUALITY = 3e-3, 3e-5, 80
VERSION = 1  # bump when the case set or its rendering changes (invalidates caches)


@dataclass(frozen=True)
class RealCase:
    """One benchmark case: a lens setting at one image width, clean or degraded."""

    focal_length_mm: float
    f_number: float
    focus_distance_m: float
    width: int
    degraded: bool

    @property
    def lens(self) -> Lens:
        return Lens.from_mm(self.focal_length_mm, self.f_number, self.focus_distance_m)

    @property
    def name(self) -> str:
        q = "noisy" if self.degraded else "clean"
        return f"{self.focal_length_mm:g}mm_f{self.f_number:g}_df{self.focus_distance_m:g}m_w{self.width}_{q}"

    @property
    def focus(self) -> str:
        """Where the focus plane lies relative to the scene: 'front' of it (everything is behind
        the focus plane), 'inside' it, or 'beyond' it (everything is in front of the focus plane)."""
        if self.focus_distance_m < SCENE_NEAR_M:
            return "front"
        return "beyond" if self.focus_distance_m > SCENE_FAR_M else "inside"


CASES = tuple(
    RealCase(f, n, d, w, deg) for (f, n, d) in CASE_LENSES for w in (FULL_WIDTH, HALF_WIDTH) for deg in (False, True)
)


def case_group(case: RealCase) -> list[str]:
    """The groups a case belongs to (for the per-group tables)."""
    return [f"focus {case.focus}", f"width {case.width}", "noisy+jpeg" if case.degraded else "clean"]


def motorcycle_scene() -> tuple[np.ndarray, np.ndarray, float]:
    """The left view (500x741x3 uint8 sRGB), its depth (m, float32, NaN where the disparity is
    unknown) and fx (px) at that size."""
    from skimage.data import stereo_motorcycle

    left, _, disp = stereo_motorcycle()
    m = MOTORCYCLE
    valid = np.isfinite(disp)
    depth = np.full(disp.shape, np.nan, np.float32)
    depth[valid] = m["fx"] * m["baseline_m"] / (disp[valid] + m["doffs"])
    return np.ascontiguousarray(left), depth, m["fx"]


def _fill_holes(depth: np.ndarray) -> np.ndarray:
    """Depth for rendering only: unknown pixels (mostly background seen by one camera) take the
    farthest valid depth around them (repeated 3x3 max filter)."""
    import cv2

    d = np.where(np.isfinite(depth), depth, 0).astype(np.float32)
    kernel = np.ones((3, 3), np.uint8)
    for _ in range(200):
        holes = d <= 0
        if not holes.any():
            break
        d = np.where(holes, cv2.dilate(d, kernel), d)
    return d


def _resize_scene(rgb: np.ndarray, depth: np.ndarray, width: int):
    """(linear image (3,h,w) tensor, depth with NaN (h,w), depth for rendering, scale)."""
    import cv2

    h0, w0 = depth.shape
    scale = width / w0
    h = round(h0 * scale)
    lin = srgb_to_linear(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0)
    filled = _fill_holes(depth)
    if width != w0:
        lin = F.interpolate(lin[None], size=(h, width), mode="area")[0]
        depth = cv2.resize(depth, (width, h), interpolation=cv2.INTER_NEAREST)
        filled = cv2.resize(filled, (width, h), interpolation=cv2.INTER_NEAREST)
    return lin, depth, filled, scale


def render_case(case: RealCase, scene=None) -> dict:
    """Render one case. Returns ``image`` (HxWx3 uint8 sRGB, the camera image), ``depth`` (HxW
    float32 m, NaN = unknown), ``coc`` (HxW float32 true CoC px at this width, NaN = unknown),
    ``fx`` (px at this width) and ``lens`` (f m, N, d_f m)."""
    rgb, depth, fx0 = scene if scene is not None else motorcycle_scene()
    lin, depth, filled, scale = _resize_scene(rgb, depth, case.width)
    fx = fx0 * scale
    lens = case.lens
    s = signed_defocus_px(torch.from_numpy(filled), lens, fx).float()
    focused = render_defocus(lin[None], s[None, None])[0]
    gen = torch.Generator().manual_seed(abs(hash_case(case)) % (2**31))
    if case.degraded:
        srgb = sensor_degrade(focused, gen, NOISE_SHOT, NOISE_READ, JPEG_QUALITY)
    else:
        srgb = sensor_degrade(focused, gen, 0.0, 0.0)
    image = (srgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    coc = np.where(np.isfinite(depth), coc_px(np.nan_to_num(depth, nan=1.0), lens, fx), np.nan).astype(np.float32)
    return {
        "image": image,
        "depth": depth.astype(np.float32),
        "coc": coc,
        "fx": np.float64(fx),
        "lens": np.array([lens.focal_length_m, lens.f_number, lens.focus_distance_m], np.float64),
    }


def hash_case(case: RealCase) -> int:
    return int(hashlib.sha256(json.dumps(asdict(case), sort_keys=True).encode()).hexdigest()[:12], 16)


def load_cases(cache_dir=None, cases=CASES, progress: bool = True):
    """Yield ``(case, rendered dict)`` for every case, rendering once into ``cache_dir`` (one .npz
    per case, written atomically) when it is given."""
    from tqdm import tqdm

    from ..synth.shards import write_shard

    cache = Path(cache_dir) / f"motorcycle_v{VERSION}" if cache_dir else None
    scene = None
    for case in tqdm(cases, desc="motorcycle cases", disable=not progress, unit="case"):
        path = cache / f"{case.name}.npz" if cache else None
        if path is not None and path.is_file():
            with np.load(path) as z:
                yield case, {k: z[k] for k in z.files}
            continue
        scene = scene or motorcycle_scene()
        r = render_case(case, scene)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_shard(path, compression="deflate6", **r)
        yield case, r
