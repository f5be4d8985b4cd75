"""One-call inference: ``Estimator.load(path=None, device="auto").predict(rgb, lens, fx)``.

``predict`` takes an HxWx3 uint8 RGB image of any size and processes it **at the camera's
resolution**: never upsampled, downsampled only when its long side exceeds the cap
(``process_long_side``), so that blur is read at the scale the camera recorded it (and at the
scale training saw). It returns maps at the input resolution:

* ``depth``: metres (float32), the thin-lens solution of the CoC on the decided side of the focus
  plane, NaN where it is not determined (:mod:`.depthmap`: side unsure, or the expected relative
  error above ``max_relative_error``)
* ``defocus``: CoC diameter in px *at the input resolution* (a resize by ``r`` scales it by ``r``)
* ``uncertainty``: metres (float32), the expected depth error of the chosen side (inf where the
  depth is undetermined), or None when not asked for
* ``relative_error``, ``side_prob`` (probability of "behind the focus plane"), ``confidence``

Three estimators share this class: the training-free one (:mod:`.reblur` plus the side rule; no
learning), the learned blur reader (:mod:`~depth_defocus_ros.reading.reader`: a small CNN over an
image pyramid, with its learned side of the focus plane where the checkpoint records a passed
calibration check, else the side rule) and a checkpoint's multi-task network, which corrects the
training-free CoC and predicts the side. ``Estimator.load()`` loads the shipped default: ``models/depth_defocus.pt``
when a checkpoint is shipped, else the training-free estimator (see models/README.md for which,
and why).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..model.checkpoint import build_model, build_reader, load_checkpoint
from ..optics import Lens, LensError, validate_fx
from ..paths import default_model_path
from ..reading.reader import read_defocus, read_with_side
from ..reading.reblur import estimate_defocus
from .depthmap import FOCUS_SIDES, compose_depth, side_probability

__all__ = [
    "Estimator",
    "learned_side_arg",
    "Prediction",
    "InputError",
    "select_device",
    "TRAINING_FREE",
    "DEFAULT_LONG_SIDE",
]

TRAINING_FREE = "training-free"  # the model path that selects the estimator without a network
DEFAULT_LONG_SIDE = 640  # px: processing cap of the training-free estimator


LEARNED_SIDE_CHOICES = {"checked": None, "on": True, "off": False}  # CLI name -> Estimator(learned_side=)


def learned_side_arg(args) -> bool | None:
    """``Estimator.load``'s ``learned_side`` from a CLI's ``--learned-side`` (default ``checked``)."""
    return LEARNED_SIDE_CHOICES[getattr(args, "learned_side", None) or "checked"]


class InputError(ValueError):
    """An input image the estimator cannot use."""


@dataclass
class Prediction:
    depth: np.ndarray  # (H, W) float32, m, NaN where not determined
    defocus: np.ndarray  # (H, W) float32, CoC px at input resolution
    uncertainty: np.ndarray | None  # (H, W) float32, m
    relative_error: np.ndarray | None = None  # (H, W) float32, expected sigma_d / d
    side_prob: np.ndarray | None = None  # (H, W) float32, P(behind the focus plane)
    confidence: np.ndarray | None = None  # (H, W) float32, [0, 1] blur evidence
    # seconds spent reading the blur (reader, training-free estimate or network) and composing
    # depth (side, validity, copies back to the host)
    timing: dict | None = None

    def __iter__(self):  # allows depth, defocus, unc = est.predict(...)
        return iter((self.depth, self.defocus, self.uncertainty))


def select_device(device: str | None = "auto") -> torch.device:
    """The one device choice of the package: ``auto`` (CUDA when present), ``cpu``, ``cuda[:N]``."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but no CUDA device is available")
    return torch.device(device)


def check_rgb(rgb) -> np.ndarray:
    if not isinstance(rgb, np.ndarray):
        raise InputError(f"image must be a numpy array, got {type(rgb).__name__}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"image must be HxWx3 RGB, got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise InputError(f"image must be uint8, got {rgb.dtype}")
    if rgb.shape[0] < 8 or rgb.shape[1] < 8:
        raise InputError(f"image is too small ({rgb.shape[1]}x{rgb.shape[0]} px)")
    return rgb


def processing_size(h: int, w: int, long_side_cap: int) -> tuple[int, int, float]:
    """(h', w', scale): the camera's size, downsampled only when its long side exceeds the cap."""
    scale = min(1.0, long_side_cap / max(h, w))
    if scale >= 1.0:
        return h, w, 1.0
    hp, wp = max(8, round(h * scale)), max(8, round(w * scale))
    return hp, wp, wp / w


def prepare(rgb: np.ndarray, device, long_side_cap: int):
    """HxWx3 uint8 -> ((1, 3, H', W') sRGB float in [0, 1] at the processing size, scale)."""
    h, w = rgb.shape[:2]
    hp, wp, scale = processing_size(h, w, long_side_cap)
    x = torch.from_numpy(rgb).to(device).permute(2, 0, 1)[None].float() / 255.0
    if scale < 1.0:
        x = F.interpolate(x, size=(hp, wp), mode="area")
    return x, scale


def _checked_inputs(rgb, lens, fx, focus_side: str):
    """The image as HxWx3 uint8, the lens as a :class:`~.optics.Lens`, fx (px) as a float; a clear
    error for anything else."""
    rgb = check_rgb(rgb)
    lens = Lens.from_mapping(lens)
    try:
        fx = float(fx)
    except (TypeError, ValueError):
        raise LensError(f"fx must be a number, got {fx!r}") from None
    validate_fx(fx)
    if focus_side not in FOCUS_SIDES:
        raise ValueError(f"focus_side must be one of {', '.join(FOCUS_SIDES)}, got {focus_side!r}")
    return rgb, lens, fx


def _to_input_size(maps, h: int, w: int, scale: float) -> list:
    """The maps read at the processing size back to the input's (h, w); CoC and its sigma (the first
    two) rescaled to input pixels."""
    maps = list(maps)
    if scale < 1.0:
        maps = [
            None if t is None else F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False) for t in maps
        ]
        maps[0], maps[1] = maps[0] / scale, maps[1] / scale
    return maps


def _numpy(t: torch.Tensor) -> np.ndarray:
    """(1, 1, h, w) tensor -> (h, w) float32 numpy."""
    return t[0, 0].float().cpu().numpy().astype(np.float32)


class Estimator:
    """Depth, defocus and uncertainty from one focused image (see module doc)."""

    def __init__(
        self,
        model=None,
        ckpt: dict | None = None,
        device: torch.device | str = "cpu",
        half: bool = False,
        path=None,
        reader=None,
        learned_side: bool | None = None,
    ):
        self.device = torch.device(device)
        self.path = path
        self.model = model.to(self.device).eval() if model is not None else None
        self.reader = reader.to(self.device).eval() if reader is not None else None
        self.half = bool(half and self.device.type == "cuda" and (model is not None or reader is not None))
        if self.half:
            (self.model or self.reader).half()
        ckpt = ckpt or {}
        self.long_side = int(ckpt.get("process_long_side", DEFAULT_LONG_SIDE))
        self.multiple = 32 if model is not None else 1
        self.max_depth_m = math.inf
        self.lens_ranges = ckpt.get("lens_ranges", {})
        self.kind = "network" if model is not None else "reader" if reader is not None else TRAINING_FREE
        # the reader's learned side is used only where it passed its calibration check on the
        # held-out sets (scripts/side_check.py writes it into the checkpoint); True/False override
        passed = bool(ckpt.get("side_check", {}).get("passed", False))
        has_head = reader is not None and reader.side is not None
        self.learned_side = has_head and (passed if learned_side is None else bool(learned_side))

    @classmethod
    def load(
        cls, path=None, device: str = "auto", half: bool | None = None, learned_side: bool | None = None
    ) -> Estimator:
        """Load a checkpoint, ``"training-free"``, or None for the shipped default. fp16 on CUDA
        unless ``half=False``. ``learned_side``: None uses a reader's side head only if the
        checkpoint records a passed calibration check (``side_check``); True / False force it."""
        dev = select_device(device)
        path = path or default_model_path()
        if str(path) == TRAINING_FREE:
            return cls(None, None, dev, path=TRAINING_FREE)
        path = Path(path)
        ckpt = load_checkpoint(path)
        half = dev.type == "cuda" if half is None else half
        if ckpt["kind"] == "reader":
            reader = build_reader(ckpt, path)
            return cls(None, ckpt, dev, half=half, path=path, reader=reader, learned_side=learned_side)
        return cls(build_model(ckpt, path), ckpt, dev, half=half, path=path)

    @torch.no_grad()
    def read(self, x: torch.Tensor, lens_t: torch.Tensor, fx_t: torch.Tensor):
        """Blur and side of a batch at the processing resolution (the one place that pads for the
        network and crops back).

        Args:
            x: (B, 3, H, W) sRGB in [0, 1], any H and W.
            lens_t: (B, 3) [f (m), N, d_f (m)]; fx_t: (B,) px at this resolution.
        Returns:
            coc (px), coc_sigma (px), prior P(behind) or None (no learned side), confidence; each
            (B, 1, H, W) float32.
        """
        if self.reader is not None and self.learned_side:
            est, p_behind = read_with_side(self.reader, x, lens_t, fx_t)
            return est.coc, est.sigma, p_behind, est.confidence
        if self.reader is not None:
            est = read_defocus(self.reader, x)
            return est.coc, est.sigma, None, est.confidence
        if self.model is None:
            est = estimate_defocus(x)
            return est.coc, est.sigma, None, est.confidence
        h, w = x.shape[-2:]
        m = self.multiple
        x = F.pad(x, (0, (-w) % m, 0, (-h) % m), mode="replicate")
        out = self.model(x.to(torch.float16 if self.half else torch.float32), lens_t, fx_t)
        maps = (out["coc"], out["coc_sigma"], torch.sigmoid(out["side_logit"].float()), out["confidence"])
        return tuple(t[..., :h, :w].float() for t in maps)

    @torch.no_grad()
    def predict(
        self,
        rgb,
        lens,
        fx: float,
        uncertainty: bool = False,
        focus_side: str = "auto",
        max_relative_error: float = 0.25,
        min_depth_m: float = 0.0,
        max_depth_m: float = math.inf,
    ) -> Prediction:
        """Depth (m), defocus (px) and uncertainty (m) at the input resolution.

        Args:
            rgb: HxWx3 uint8 RGB image.
            lens: a :class:`~.optics.Lens` or mapping with ``focal_length_m``, ``f_number``,
                ``focus_distance_m``.
            fx: focal length in px at the resolution of ``rgb``.
            uncertainty: also return the uncertainty map (m).
            focus_side: ``auto`` (decide per pixel), ``front`` or ``behind`` (everything lies on
                that side of the focus plane, e.g. a camera focused beyond its working range: front).
            max_relative_error: NaN where the expected relative depth error exceeds this.
            min_depth_m, max_depth_m: the working range (m); depth outside it is NaN, and a side
                whose depth falls outside it is not taken.
        """
        rgb, lens, fx = _checked_inputs(rgb, lens, fx, focus_side)
        h, w = rgb.shape[:2]
        t0 = time.perf_counter()
        x, scale = prepare(rgb, self.device, self.long_side)
        lens_t = lens.as_tensor(self.device)
        fx_t = torch.tensor([fx * scale], device=self.device)
        maps = list(self.read(x, lens_t, fx_t))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t1 = time.perf_counter()
        coc, sigma, prior, conf = _to_input_size(maps, h, w, scale)
        # side and depth at the input resolution, with the input's fx: the published depth is exactly
        # the thin-lens solution of the published CoC
        fx_in = torch.tensor([fx], device=self.device)
        p = side_probability(coc, sigma, lens_t, fx_in, focus_side, prior, min_depth_m, max_depth_m)
        res = compose_depth(coc, sigma, p, lens_t, fx_in, max_relative_error, min_depth_m, max_depth_m)
        pred = Prediction(
            depth=_numpy(res.depth),
            defocus=_numpy(coc),
            uncertainty=_numpy(res.uncertainty) if uncertainty else None,
            relative_error=_numpy(res.relative_error),
            side_prob=_numpy(p),
            confidence=_numpy(conf),
        )
        pred.timing = {"read_s": t1 - t0, "depth_s": time.perf_counter() - t1}
        return pred
