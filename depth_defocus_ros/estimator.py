"""One-call inference: ``Estimator.load(path=None, device="auto").predict(rgb, lens, fx)``.

``predict`` takes an HxWx3 uint8 RGB array of any size, resizes it to the checkpoint's processing
resolution (long side ``process_long_side``, aspect kept, padded to a multiple of 32), runs the
network, and returns maps at the input resolution:

* ``depth``: metres (float32), the thin-lens solution of the CoC on the predicted side
* ``defocus``: CoC diameter in px *at the input resolution* (the network's CoC divided by the
  resize factor, as fx was multiplied by it)
* ``uncertainty``: metres (float32) or None: Monte-Carlo dropout spread plus the spread between
  the two thin-lens solutions weighted by how unsure the side is
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import DEFAULT_NORMALIZATION, build_model, load_checkpoint
from .model import compose_depth
from .optics import Lens, LensError, validate_fx

__all__ = ["Estimator", "Prediction", "default_model_path", "InputError", "select_device"]

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


class InputError(ValueError):
    """An input image the estimator cannot use."""


@dataclass
class Prediction:
    depth: np.ndarray  # (H, W) float32, m
    defocus: np.ndarray  # (H, W) float32, CoC px at input resolution
    uncertainty: np.ndarray | None  # (H, W) float32, m

    def __iter__(self):  # allows depth, defocus, unc = est.predict(...)
        return iter((self.depth, self.defocus, self.uncertainty))


def default_model_path() -> Path:
    """The shipped weights: ``models/depth_defocus.pt`` in the source tree, or the installed
    share folder (``share/depth_defocus_ros/models``) for colcon / pip installs."""
    env = os.environ.get("DEPTH_DEFOCUS_MODEL")
    if env:
        return Path(env)
    candidates = [MODELS_DIR / "depth_defocus.pt"]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("depth_defocus_ros")) / "models" / "depth_defocus.pt")
    except Exception:  # no ROS install: fine
        pass
    import sys

    candidates.append(Path(sys.prefix) / "share" / "depth_defocus_ros" / "models" / "depth_defocus.pt")
    for c in candidates:
        if c.is_file():
            return c
    return candidates[0]


def select_device(device: str = "auto") -> torch.device:
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


class Estimator:
    """Depth, defocus and uncertainty from one focused image (see module doc)."""

    def __init__(self, model, ckpt: dict, device: torch.device, half: bool = False, path=None):
        self.model = model.to(device).eval()
        self.device = device
        self.path = path
        self.half = bool(half and device.type == "cuda")
        if self.half:
            self.model.half()
        norm = ckpt.get("normalization", DEFAULT_NORMALIZATION)
        self.mean = torch.tensor(norm["mean"], device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(norm["std"], device=device).view(1, 3, 1, 1)
        self.long_side = int(ckpt["process_long_side"])
        self.multiple = int(ckpt.get("process_multiple", 32))
        self.max_depth_m = float(ckpt.get("max_depth_m", 100.0))
        self.lens_ranges = ckpt.get("lens_ranges", {})
        self.heads = model.config.heads

    @classmethod
    def load(cls, path=None, device: str = "auto", half: bool | None = None) -> Estimator:
        """Load a checkpoint (None: the shipped default). fp16 on CUDA unless ``half=False``."""
        path = Path(path) if path else default_model_path()
        ckpt = load_checkpoint(path)
        dev = select_device(device)
        model = build_model(ckpt, path)
        return cls(model, ckpt, dev, half=dev.type == "cuda" if half is None else half, path=path)

    def _prepare(self, rgb: np.ndarray):
        h, w = rgb.shape[:2]
        scale = self.long_side / max(h, w)
        hp, wp = max(8, round(h * scale)), max(8, round(w * scale))
        x = torch.from_numpy(rgb).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        x = F.interpolate(x, size=(hp, wp), mode="bilinear", antialias=scale < 1, align_corners=False)
        x = (x - self.mean) / self.std
        m = self.multiple
        ph, pw = (-hp) % m, (-wp) % m
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x, wp / w, (hp, wp)

    @torch.no_grad()
    def predict(self, rgb, lens, fx: float, uncertainty: bool = False, mc_samples: int = 8) -> Prediction:
        """Depth (m), defocus (px) and optional uncertainty (m) at the input resolution.

        Args:
            rgb: HxWx3 uint8 RGB image.
            lens: a :class:`~.optics.Lens` or mapping with ``focal_length_m``, ``f_number``,
                ``focus_distance_m``.
            fx: focal length in px at the resolution of ``rgb``.
            uncertainty: compute the Monte-Carlo dropout uncertainty (``mc_samples`` passes).
        """
        rgb = check_rgb(rgb)
        lens = Lens.from_mapping(lens)
        try:
            fx = float(fx)
        except (TypeError, ValueError):
            raise LensError(f"fx must be a number, got {fx!r}") from None
        validate_fx(fx)
        h, w = rgb.shape[:2]
        x, scale, (hp, wp) = self._prepare(rgb)
        fx_p = fx * scale  # fx at the processing resolution
        n = mc_samples if uncertainty else 1
        lens_t = torch.tensor([[lens.focal_length_m, lens.f_number, lens.focus_distance_m]],
                              device=self.device).repeat(n, 1)  # fmt: skip
        fx_t = torch.full((n,), fx_p, device=self.device)
        dtype = torch.float16 if self.half else torch.float32
        self.model.set_mc_dropout(uncertainty)
        try:
            out = self.model(x.to(dtype).repeat(n, 1, 1, 1), lens_t, fx_t, self.max_depth_m)
        finally:
            self.model.set_mc_dropout(False)

        def full(t):  # crop padding, back to input size, float32
            t = t[:, :, :hp, :wp].float()
            return F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)

        lens_in = lens_t[:1].float()
        fx_in = torch.full((1,), fx, device=self.device)
        coc = full(out["coc"]) / scale  # CoC px at the input resolution
        if self.heads == "depth":
            depth = full(out["depth"])
            side_p = (depth > lens.focus_distance_m).float()
        else:
            logit = full(out["side_logit"])
            depth = compose_depth(coc, logit, lens_in.repeat(n, 1), fx_in.repeat(n), self.max_depth_m)
            side_p = torch.sigmoid(logit)
        unc = None
        if uncertainty:
            c_mean = coc.mean(0, keepdim=True)
            p = side_p.mean(0, keepdim=True)
            near = compose_depth(c_mean, -torch.ones_like(p), lens_in, fx_in, self.max_depth_m)
            far = compose_depth(c_mean, torch.ones_like(p), lens_in, fx_in, self.max_depth_m)
            var = depth.var(0, keepdim=True, unbiased=False) + p * (1 - p) * (far - near) ** 2
            unc = torch.sqrt(var)[0, 0].cpu().numpy().astype(np.float32)
            coc = c_mean
            depth = torch.where(p >= 0.5, far, near) if self.heads != "depth" else depth.mean(0, keepdim=True)
        return Prediction(
            depth=depth[0, 0].cpu().numpy().astype(np.float32),
            defocus=coc[0, 0].cpu().numpy().astype(np.float32),
            uncertainty=unc,
        )

