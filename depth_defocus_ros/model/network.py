"""Multi-task network: one shared encoder, a defocus decoder and a depth decoder, on top of the
training-free defocus estimate (physics first, DESIGN.md).

* Inputs: the sRGB image and the first stage's reading of the blur: the features of
  :func:`.reblur.estimate_defocus` (the training-free CoC, its confidence, and contrast-free
  multi-scale gradient ratios) or, when ``ModelConfig.reader`` is set, the learned blur reader's
  (:mod:`~depth_defocus_ros.reading.reader`: CoC, confidence, sigma; its weights are trained on
  patches and frozen here).
  The encoder and the defocus decoder never see the lens: the CoC in pixels is a property of the
  image.
* Defocus decoder: a correction to the training-free CoC (px) and its log standard deviation;
  its last layer starts at zero, so an untrained network *is* the training-free estimate and
  training can only move it where the data says so.
* Depth decoder (He et al.; the one lens-conditioned part, FiLM from the lens): the side logit
  (behind the focus plane = 1) and ``r = log(d / d_f)``, the monocular depth relative to the
  focus plane (an auxiliary target that teaches scene structure to the side).
* The lens enters where depth is composed and the side decided (:mod:`.depthmap`, through
  :mod:`.optics`), never in the defocus path.

Both decoders stop at 1/2 resolution; their outputs are upsampled and the correction is added to
the full-resolution physics CoC.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..optics import coc_at_infinity_batch
from ..reading.reader import BlurReader, ReaderConfig, read_defocus
from ..reading.reblur import ReblurConfig, estimate_defocus

__all__ = ["ModelConfig", "DepthDefocusNet", "lens_features", "N_PHYSICS_FEATURES", "N_READER_FEATURES"]

N_PHYSICS_FEATURES = 7  # CoC / coc_scale, confidence, 4 log gradient ratios, log SNR
N_READER_FEATURES = 3  # CoC / coc_scale, confidence, log(1 + sigma)


@dataclass
class ModelConfig:
    """Architecture. Stored inside every checkpoint; the model is rebuilt from it."""

    channels: list = field(default_factory=lambda: [16, 24, 32, 48, 64])  # encoder widths, 1/2 .. 1/32
    decoder_channels: list = field(default_factory=lambda: [48, 32, 24, 16])  # 1/16 .. 1/2
    blocks_per_stage: int = 1
    n_lens_features: int = 5
    ref_width: int = 256  # px: fx relative to this width for the field-of-view feature
    coc_scale: float = 8.0  # px: physics CoC input = c / coc_scale
    mean: list = field(default_factory=lambda: [0.45, 0.45, 0.45])  # sRGB normalisation
    std: list = field(default_factory=lambda: [0.25, 0.25, 0.25])
    reblur: dict = field(default_factory=lambda: asdict(ReblurConfig()))  # the physics the network corrects
    reader: dict | None = None  # ReaderConfig of a learned blur reader as the first stage (else reblur)

    def __post_init__(self) -> None:
        if len(self.channels) != 5 or len(self.decoder_channels) != 4:
            raise ValueError("channels need 5 entries (1/2 .. 1/32), decoder_channels 4 (1/16 .. 1/2)")

    def to_dict(self) -> dict:
        return asdict(self)


def lens_features(lens: torch.Tensor, fx: torch.Tensor, width: int) -> torch.Tensor:
    """(B, 5) lens conditioning of the depth decoder from lens (B, 3) and fx (B,) px: log CoC at
    infinity (px), log focus distance (m), log f-number, ``width / (2 fx)`` (tan of the half field
    of view of a ``width``-px image), log focal length (mm)."""
    f, n, d_f = lens[:, 0], lens[:, 1], lens[:, 2]
    c_inf = coc_at_infinity_batch(lens, fx)
    return torch.stack([torch.log(c_inf), torch.log(d_f), torch.log(n), width / (2 * fx), torch.log(f * 1000)], 1)


def _gn(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(max(1, ch // 8), ch)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), _gn(cout), nn.SiLU())


class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.c1 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.n1 = _gn(ch)
        self.c2 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.n2 = _gn(ch)

    def forward(self, x):
        y = F.silu(self.n1(self.c1(x)))
        return F.silu(x + self.n2(self.c2(y)))


class Decoder(nn.Module):
    """U-Net decoder from the 1/32 features to 1/2 resolution; optional FiLM conditioning."""

    def __init__(self, enc_ch: list, dec_ch: list, out_ch: int, emb: int = 0):
        super().__init__()
        skips = [enc_ch[3], enc_ch[2], enc_ch[1], enc_ch[0]]  # 1/16, 1/8, 1/4, 1/2
        cin = enc_ch[4]
        self.ups = nn.ModuleList()
        self.films = nn.ModuleList()
        for c_skip, c_out in zip(skips, dec_ch):
            self.ups.append(nn.Sequential(_conv(cin + c_skip, c_out), _conv(c_out, c_out)))
            if emb:
                film = nn.Linear(emb, 2 * c_out)
                nn.init.zeros_(film.weight)
                nn.init.zeros_(film.bias)
                self.films.append(film)
            cin = c_out
        self.out = nn.Conv2d(cin, out_ch, 3, padding=1)

    def forward(self, feats, e=None):
        x = feats[-1]
        for i, (up, skip) in enumerate(zip(self.ups, reversed(feats[:-1]))):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = up(torch.cat([x, skip], dim=1))
            if self.films:
                g, b = self.films[i](e)[:, :, None, None].chunk(2, dim=1)
                x = x * (1 + g) + b
        return self.out(x)


class DepthDefocusNet(nn.Module):
    """Encoder + defocus decoder + depth decoder on the physics estimate (see module doc).

    ``forward(image, lens, fx)`` with image (B, 3, H, W) sRGB in [0, 1], H and W multiples of 32,
    lens (B, 3) [f (m), N, d_f (m)] and fx (B,) px at this resolution. Returns a dict of
    (B, 1, H, W) maps:

    * ``coc``          CoC diameter (px): the physics estimate plus the learned correction, >= 0
    * ``coc_physics``  the training-free CoC (px); ``confidence`` its confidence in [0, 1]
    * ``coc_sigma``    standard deviation of ``coc`` (px)
    * ``side_logit``   logit of "behind the focus plane"
    * ``log_ratio``    r = log(depth / d_f), the depth decoder's monocular estimate
    """

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = cfg = config or ModelConfig()
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1), persistent=False)
        emb = 64
        self.lens_mlp = nn.Sequential(nn.Linear(cfg.n_lens_features, emb), nn.SiLU(), nn.Linear(emb, emb), nn.SiLU())
        self.reader = BlurReader(ReaderConfig(**cfg.reader)) if cfg.reader else None
        if self.reader is not None:
            self.reader.requires_grad_(False)  # trained on patches (train-reader), frozen here
        self.full = _conv(3 + (N_READER_FEATURES if self.reader is not None else N_PHYSICS_FEATURES), 16)
        chans = [16] + list(cfg.channels)
        blocks = cfg.blocks_per_stage
        self.stages = nn.ModuleList(
            nn.Sequential(_conv(chans[i], chans[i + 1], 2), *[ResBlock(chans[i + 1]) for _ in range(blocks)])
            for i in range(5)
        )
        self.defocus_dec = Decoder(cfg.channels, cfg.decoder_channels, 2)  # correction (px), log sigma
        self.depth_dec = Decoder(cfg.channels, cfg.decoder_channels, 2, emb)  # side logit, log ratio
        nn.init.zeros_(self.defocus_dec.out.weight)
        nn.init.zeros_(self.defocus_dec.out.bias)
        self.reblur = ReblurConfig(**cfg.reblur)

    def physics(self, image: torch.Tensor):
        """(the first stage's estimate, (B, N_PHYSICS_FEATURES or N_READER_FEATURES, H, W) features)."""
        if self.reader is not None:
            est = read_defocus(self.reader, image)
            return est, torch.cat([est.coc / self.config.coc_scale, est.confidence, torch.log1p(est.sigma)], 1)
        est = estimate_defocus(image, self.reblur, features=True)
        f = est.features  # (B, 6, H, W): log g_k / g_1 for k != 1, log SNR at s = 1
        feats = torch.cat([est.coc / self.config.coc_scale, est.confidence, f[:, :4], f[:, 4:5].clamp(-2, 8) / 4], 1)
        return est, feats

    def forward(self, image, lens, fx):
        est, phys = self.physics(image)
        x = (image - self.mean) / self.std
        x = self.full(torch.cat([x, phys.to(x.dtype)], dim=1))
        feats = [x]
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        size = image.shape[-2:]
        d = F.interpolate(self.defocus_dec(feats[1:]), size=size, mode="bilinear", align_corners=False)
        e = self.lens_mlp(lens_features(lens, fx, self.config.ref_width))
        s = F.interpolate(self.depth_dec(feats[1:], e), size=size, mode="bilinear", align_corners=False)
        coc_phys = est.coc.to(d.dtype)
        # sigma: the physics estimate's, scaled by the learned factor (1 at the start)
        sigma = est.sigma.to(d.dtype) * torch.exp(d[:, 1:2].clamp(-5, 5))
        return {
            "coc": (coc_phys + d[:, :1]).clamp_min(0.0),
            "coc_physics": coc_phys,
            "confidence": est.confidence.to(d.dtype),
            "coc_sigma": sigma,
            "side_logit": s[:, :1],
            "log_ratio": s[:, 1:2].clamp(-6, math.log(1000.0)),
        }
