"""Multi-task network: one shared encoder, a depth decoder and a defocus decoder.

* Encoder: residual conv stages at 1/2 ... 1/32 resolution, FiLM-conditioned on the lens
  (CoC at infinity in px, focus distance, f-number, field of view), so one network serves any
  camera and lens.
* Depth decoder (He et al.): U-Net decoder with skips; predicts ``r = log(d / d_f)`` (the
  monocular depth relative to the focus plane) and a side logit (behind the focus plane = 1).
* Defocus decoder: same shape; predicts the CoC diameter ``c`` in px at the processing resolution.
* Both decoders use spatial dropout, kept active at inference for Monte-Carlo dropout (D3-Net).

The heads are tied by the optics in :mod:`.losses` (consistency) and in :func:`compose_depth`:
the published depth is the thin-lens solution of the predicted CoC on the predicted side, never a
blend of the two solutions.

Ablations: ``heads="depth"`` (no defocus decoder: the CoC follows from ``r``) and
``heads="defocus"`` (no depth decoder: the defocus decoder also predicts the side).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ModelConfig", "DepthDefocusNet", "lens_features", "compose_depth"]

HEADS = ("both", "depth", "defocus")


@dataclass
class ModelConfig:
    """Architecture. Stored inside every checkpoint; the model is rebuilt from it."""

    channels: list = field(default_factory=lambda: [16, 24, 40, 64, 96])  # 1/2 .. 1/32
    blocks_per_stage: int = 1
    decoder_channels: list = field(default_factory=lambda: [64, 40, 24, 16, 16])
    dropout: float = 0.1
    heads: str = "both"
    n_lens_features: int = 5
    ref_width: int = 256  # px: fx is expressed relative to this width for the field-of-view feature
    blur_features: bool = True  # re-blur gradient ratios as extra input channels

    def __post_init__(self) -> None:
        if self.heads not in HEADS:
            raise ValueError(f"heads must be one of {HEADS}, got {self.heads!r}")
        if len(self.channels) != 5 or len(self.decoder_channels) != 5:
            raise ValueError("channels and decoder_channels need 5 entries (1/2 .. 1/32)")

    def to_dict(self) -> dict:
        return asdict(self)


def lens_features(lens: torch.Tensor, fx: torch.Tensor, width: int) -> torch.Tensor:
    """(B, 5) lens conditioning from lens (B, 3) [f (m), N, d_f (m)] and fx (B,) in px.

    Features: log CoC at infinity (px, at the processing resolution), log focus distance (m),
    log f-number, ``width / (2 fx)`` (tan of the half field of view of an image ``width`` px wide:
    the reference width, so that crops keep the feature), log focal length (mm).
    """
    f, n, d_f = lens[:, 0], lens[:, 1], lens[:, 2]
    c_inf = (f / n) * fx / (d_f - f)
    return torch.stack(
        [torch.log(c_inf), torch.log(d_f), torch.log(n), width / (2 * fx), torch.log(f * 1000)], 1
    )


def coc_at_infinity(lens: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
    """(B,) CoC (px) at infinite depth for lens (B, 3) and fx (B,)."""
    f, n, d_f = lens[:, 0], lens[:, 1], lens[:, 2]
    return (f / n) * fx / (d_f - f)


def compose_depth(coc: torch.Tensor, side_logit: torch.Tensor, lens: torch.Tensor,
                  fx: torch.Tensor, max_depth_m: float = 100.0) -> torch.Tensor:  # fmt: skip
    """Depth (m) as the thin-lens solution of CoC ``c`` (px) on the predicted side.

    ``d = d_f / (1 - side * c / c_inf)``; beyond the far limit the depth is ``max_depth_m``.
    Shapes: coc, side_logit (B, 1, H, W); lens (B, 3); fx (B,).
    """
    c_inf = coc_at_infinity(lens, fx)[:, None, None, None]
    d_f = lens[:, 2][:, None, None, None]
    side = torch.where(side_logit >= 0, 1.0, -1.0)
    denom = 1.0 - side * coc / c_inf
    d = d_f / denom.clamp_min(d_f / max_depth_m)
    return d.clamp(max=max_depth_m)


REBLUR_SIGMAS = (1.0, 2.0, 4.0)


def _gauss_1d(sigma: float) -> torch.Tensor:
    r = int(math.ceil(3 * sigma))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def reblur_features(image: torch.Tensor, eps: float = 1e-2) -> torch.Tensor:
    """(B, 4, H, W) classical blur cues: log local gradient magnitude and, for sigma 1, 2, 4 px,
    log of the re-blur gradient ratio |grad I| / |grad (I * G_sigma)|. At an edge blurred by a
    Gaussian of std s the ratio is sqrt(s^2 + sigma^2) / s (Zhuo and Sim), so the ratios measure
    the blur in pixels; they do not depend on the image's contrast or offset."""
    gray = image.mean(dim=1, keepdim=True)

    def grad_mag(x):
        gx = F.pad(x[..., :, 2:] - x[..., :, :-2], (1, 1, 0, 0), mode="replicate") * 0.5
        gy = F.pad(x[..., 2:, :] - x[..., :-2, :], (0, 0, 1, 1), mode="replicate") * 0.5
        return torch.sqrt(gx * gx + gy * gy + 1e-12)

    g0 = grad_mag(gray)
    feats = [torch.log(g0 + eps)]
    for sigma in REBLUR_SIGMAS:
        k = _gauss_1d(sigma).to(image)
        r = k.numel() // 2
        b = F.conv2d(F.pad(gray, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
        b = F.conv2d(F.pad(b, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
        feats.append(torch.log((g0 + eps) / (grad_mag(b) + eps)))
    return torch.cat(feats, dim=1)


def _gn(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(max(1, ch // 8), ch)


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


class Stage(nn.Module):
    """Strided conv (halves H, W) + residual blocks + FiLM from the lens embedding."""

    def __init__(self, cin: int, cout: int, blocks: int, emb: int):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1, bias=False), _gn(cout), nn.SiLU())
        self.blocks = nn.Sequential(*[ResBlock(cout) for _ in range(blocks)])
        self.film = nn.Linear(emb, 2 * cout)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x, e):
        x = self.blocks(self.down(x))
        g, b = self.film(e)[:, :, None, None].chunk(2, dim=1)
        return x * (1 + g) + b


class Decoder(nn.Module):
    """U-Net decoder from the 1/32 features back to full resolution, lens-conditioned."""

    def __init__(self, enc_ch: list, dec_ch: list, out_ch: int, emb: int, dropout: float):
        super().__init__()
        skips = [enc_ch[3], enc_ch[2], enc_ch[1], enc_ch[0], 16]  # 1/16, 1/8, 1/4, 1/2, 1/1
        cin = enc_ch[4]
        self.ups = nn.ModuleList()
        self.films = nn.ModuleList()
        for c_skip, c_out in zip(skips, dec_ch):
            self.ups.append(nn.Sequential(
                nn.Conv2d(cin + c_skip, c_out, 3, padding=1, bias=False), _gn(c_out), nn.SiLU(),
                nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), _gn(c_out), nn.SiLU(),
            ))  # fmt: skip
            film = nn.Linear(emb, 2 * c_out)
            nn.init.zeros_(film.weight)
            nn.init.zeros_(film.bias)
            self.films.append(film)
            cin = c_out
        self.drop = nn.Dropout2d(dropout)
        self.out = nn.Conv2d(cin, out_ch, 3, padding=1)
        self.mc_dropout = False

    def forward(self, feats, e):
        x = feats[-1]
        for up, film, skip in zip(self.ups, self.films, reversed(feats[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = up(torch.cat([x, skip], dim=1))
            g, b = film(e)[:, :, None, None].chunk(2, dim=1)
            x = x * (1 + g) + b
            x = F.dropout2d(x, self.drop.p, training=self.training or self.mc_dropout)
        return self.out(x)


class DepthDefocusNet(nn.Module):
    """Shared encoder + depth decoder + defocus decoder (see module doc).

    forward(image, lens, fx) with image (B, 3, H, W) normalised, H and W multiples of 32,
    lens (B, 3) [f (m), N, d_f (m)], fx (B,) px at this resolution. Returns a dict:

    * ``coc``        (B, 1, H, W) CoC diameter (px), >= 0: the published defocus
    * ``coc_raw``    (B, 1, H, W) the defocus decoder's own CoC before fusion (heads="both")
    * ``side_logit`` (B, 1, H, W) logit of "behind the focus plane"
    * ``log_ratio``  (B, 1, H, W) r = log(depth / d_f) from the depth decoder
                                (derived from coc and side when there is no depth decoder)
    * ``depth``      (B, 1, H, W) metres: thin-lens solution of coc on the predicted side
                                (``exp(r) * d_f`` when there is no defocus decoder)
    """

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = cfg = config or ModelConfig()
        emb = 64
        self.lens_mlp = nn.Sequential(nn.Linear(cfg.n_lens_features, emb), nn.SiLU(), nn.Linear(emb, emb), nn.SiLU())
        n_in = 3 + 1 + (1 + len(REBLUR_SIGMAS) if cfg.blur_features else 0)
        self.full = nn.Sequential(nn.Conv2d(n_in, 16, 3, padding=1, bias=False), _gn(16), nn.SiLU())
        chans = [16] + list(cfg.channels)
        self.stages = nn.ModuleList(
            Stage(chans[i], chans[i + 1], cfg.blocks_per_stage, emb) for i in range(5)
        )
        self.depth_dec = self.defocus_dec = None
        if cfg.heads in ("both", "depth"):
            out = 3 if cfg.heads == "both" else 2  # r, side logit (+ fusion logit)
            self.depth_dec = Decoder(cfg.channels, cfg.decoder_channels, out, emb, cfg.dropout)
        if cfg.heads in ("both", "defocus"):
            out = 1 if cfg.heads == "both" else 2  # defocus-only also predicts the side
            self.defocus_dec = Decoder(cfg.channels, cfg.decoder_channels, out, emb, cfg.dropout)

    def set_mc_dropout(self, on: bool) -> None:
        for dec in (self.depth_dec, self.defocus_dec):
            if dec is not None:
                dec.mc_dropout = on

    def forward(self, image, lens, fx, max_depth_m: float = 100.0):
        b, _, h, w = image.shape
        feats_in = lens_features(lens, fx, self.config.ref_width)
        e = self.lens_mlp(feats_in)
        c_inf = coc_at_infinity(lens, fx)[:, None, None, None]
        # a constant plane with log CoC-at-infinity lets the first layers compare blur to it
        plane = torch.log(c_inf).expand(b, 1, h, w)
        inputs = [image, plane] + ([reblur_features(image)] if self.config.blur_features else [])
        x = self.full(torch.cat(inputs, dim=1))
        feats = [x]
        for stage in self.stages:
            x = stage(x, e)
            feats.append(x)
        d_f = lens[:, 2][:, None, None, None]
        out = {}
        if self.defocus_dec is not None:
            y = self.defocus_dec(feats, e)
            # CoC in px (blur is seen in px); softplus keeps it >= 0
            out["coc"] = F.softplus(y[:, :1]) * 2.0
            if y.shape[1] > 1:
                out["side_logit"] = y[:, 1:2]
        if self.depth_dec is not None:
            y = self.depth_dec(feats, e)
            out["log_ratio"] = y[:, :1]
            out["side_logit"] = y[:, 1:2]
            if y.shape[1] > 2:
                out["fuse_logit"] = y[:, 2:3]
        if "fuse_logit" in out:
            # Fuse the two heads' normalised defocus |u| = c / c_inf = |1 - d_f / d| on the chosen
            # side: where blur is measurable the defocus head dominates, where it is sub-pixel the
            # depth head's monocular estimate does. The result is one CoC, and the depth is its
            # thin-lens solution on the predicted side (never a blend across the focus plane).
            out["coc_raw"] = out["coc"]
            w = torch.sigmoid(out["fuse_logit"])
            u_r = (1 - torch.exp(-out["log_ratio"].clamp(-6, 6))).abs()
            out["coc"] = (w * out["coc_raw"] / c_inf + (1 - w) * u_r) * c_inf
        if "coc" in out:
            out["depth"] = compose_depth(out["coc"], out["side_logit"], lens, fx, max_depth_m)
            if "log_ratio" not in out:
                out["log_ratio"] = torch.log(out["depth"] / d_f)
        else:
            r = out["log_ratio"].clamp(-6, math.log(max_depth_m))
            out["depth"] = (d_f * torch.exp(r)).clamp(max=max_depth_m)
            out["coc"] = c_inf * (1 - torch.exp(-r)).abs()
        return out
