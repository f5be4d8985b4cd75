"""Calibration of the reader's final sigma on whole synthetic scenes.

The reader's per-level sigma is fitted on patches (a Laplace likelihood); after the levels are
fused and spread over the image (:func:`depth_defocus_ros.reading.reader.read_defocus`) the stated
sigma is a model of the
error, not a fit. One factor ``sigma_scale`` makes it one: over the valid pixels of synthetic
scenes (:class:`.scenes.SceneGenerator`, seeded apart from the held-out sets), the Laplace
likelihood of the true CoC is highest at ``sigma_scale = mean(sqrt(2) |error| / sigma)``.
"""

from __future__ import annotations

import math

import torch

from ..reading.reader import BlurReader, read_defocus
from ..synth.scenes import SceneConfig, SceneGenerator

__all__ = ["CALIBRATION_SEED", "fit_sigma_scale", "calibrate_checkpoint"]

CALIBRATION_SEED = 31337  # the held-out sets use 20240501 / 20240502


@torch.no_grad()
def fit_sigma_scale(reader: BlurReader, scenes: int = 64, seed: int = CALIBRATION_SEED, batch: int = 8) -> dict:
    """The factor on the reader's final sigma that maximises the Laplace likelihood of the truth
    on ``scenes`` synthetic scenes, and the share of pixels within one sigma before and after."""
    gen = SceneGenerator(SceneConfig(), seed=seed)
    old = reader.config.sigma_scale
    reader.config.sigma_scale = 1.0
    ratio_sum, n, within = 0.0, 0, 0.0
    errs, sigmas = [], []
    try:
        for start in range(0, scenes, batch):
            b = gen.batch(min(batch, scenes - start))
            est = read_defocus(reader, b["image"])
            valid = b["valid"]
            e = (est.coc - b["defocus"]).abs()[valid]
            s = est.sigma[valid]
            ratio_sum += float((math.sqrt(2.0) * e / s).sum())
            within += float((e <= s).sum())
            n += e.numel()
            errs.append(e)
            sigmas.append(s)
    finally:
        reader.config.sigma_scale = old
    scale = ratio_sum / max(n, 1)
    e, s = torch.cat(errs), torch.cat(sigmas)
    return {
        "sigma_scale": scale,
        "scenes": scenes,
        "seed": seed,
        "pixels": n,
        "within_sigma_before": within / max(n, 1),
        "within_sigma_after": float((e <= scale * s).float().mean()),
        "coc_mae": float(e.mean()),
    }


def calibrate_checkpoint(path, scenes: int = 64, seed: int = CALIBRATION_SEED) -> dict:
    """Fit ``sigma_scale`` for the reader checkpoint at ``path`` and write it back (atomically)."""
    from ..model.checkpoint import build_reader, load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(path)
    reader = build_reader(ckpt, path).eval()
    res = fit_sigma_scale(reader, scenes, seed)
    ckpt["reader_config"] = {**ckpt["reader_config"], "sigma_scale": res["sigma_scale"]}
    ckpt["calibration"] = res
    for key in ("format", "format_version"):
        ckpt.pop(key, None)
    save_checkpoint(path, ckpt)
    return res
