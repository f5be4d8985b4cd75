"""Evaluation metrics with explicit valid masks, accumulated over a dataset.

Depth: AbsRel, SqRel, RMSE (m), RMSE log, delta < 1.25, 1.25^2, 1.25^3, on the pixels the
estimator publishes (finite predicted depth), and the coverage: the share of valid pixels published.
Defocus: MAE and RMSE of the CoC (px, at the evaluated resolution), on every valid pixel.
Side: fraction of valid pixels with true CoC >= 1 px whose predicted side of the focus plane is
right. The predicted side is read off the predicted depth (``depth > d_f``), so a depth that sits
at the focus distance where the truth is clearly off it counts as wrong (within 1 % of d_f is
"at the focus plane", which is never right where the true CoC is >= 1 px).
Breakdowns: by depth range, by true CoC bin, and depth metrics split by the true side.
Side reliability (when the model's side probability is given): side accuracy and share of pixels
per bin of the model's confidence ``max(p, 1 - p)``; a model whose uncertain pixels are the wrong
ones has low accuracy in the low-confidence bins and high accuracy in the confident ones.
"""

from __future__ import annotations

import math

import torch

__all__ = ["MetricAccumulator", "DEPTH_BINS_M", "COC_BINS_PX", "SIDE_CONFIDENCE_BINS"]

DEPTH_BINS_M = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0, math.inf)
COC_BINS_PX = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, math.inf)
SIDE_CONFIDENCE_BINS = (0.5, 0.6, 0.75, 0.9, 1.0)
_SUMS = ("n", "n_valid", "abs_rel", "sq_rel", "sq", "sq_log", "d1", "d2", "d3", "coc_abs", "coc_sq")


def _bin_name(lo, hi, unit):
    return f"{lo:g}-{hi:g}{unit}" if math.isfinite(hi) else f">={lo:g}{unit}"


class _Sums:
    def __init__(self):
        self.s = dict.fromkeys(_SUMS, 0.0)
        self.side_n = 0.0
        self.side_ok = 0.0

    def add(self, pred_d, gt_d, pred_c, gt_c, mask, published):
        """``mask``: valid ground truth (CoC metrics); ``published``: its pixels with a predicted
        depth (depth metrics)."""
        s = self.s
        if bool(mask.any()):
            pc, gc = pred_c[mask].double(), gt_c[mask].double()
            s["n_valid"] += float(mask.sum())
            s["coc_abs"] += float((pc - gc).abs().sum())
            s["coc_sq"] += float(((pc - gc) ** 2).sum())
        pub = mask & published
        if not bool(pub.any()):
            return
        p, g = pred_d[pub].double().clamp_min(1e-6), gt_d[pub].double()
        ratio = torch.maximum(p / g, g / p)
        s["n"] += float(pub.sum())
        s["abs_rel"] += float(((p - g).abs() / g).sum())
        s["sq_rel"] += float(((p - g) ** 2 / g).sum())
        s["sq"] += float(((p - g) ** 2).sum())
        s["sq_log"] += float(((p.log() - g.log()) ** 2).sum())
        s["d1"] += float((ratio < 1.25).sum())
        s["d2"] += float((ratio < 1.25**2).sum())
        s["d3"] += float((ratio < 1.25**3).sum())

    def add_side(self, ok, mask):
        self.side_n += float(mask.sum())
        self.side_ok += float((ok & mask).sum())

    def result(self) -> dict:
        s, n, nv = self.s, max(self.s["n"], 1.0), max(self.s["n_valid"], 1.0)
        out = {
            "pixels": int(s["n_valid"]),
            "published": int(s["n"]),
            "coverage": s["n"] / nv,
            "abs_rel": s["abs_rel"] / n,
            "sq_rel": s["sq_rel"] / n,
            "rmse": math.sqrt(s["sq"] / n),
            "rmse_log": math.sqrt(s["sq_log"] / n),
            "delta1": s["d1"] / n,
            "delta2": s["d2"] / n,
            "delta3": s["d3"] / n,
            "coc_mae": s["coc_abs"] / nv,
            "coc_rmse": math.sqrt(s["coc_sq"] / nv),
        }
        if self.side_n:
            out["side_acc"] = self.side_ok / self.side_n
            out["side_pixels"] = int(self.side_n)
        return out


class MetricAccumulator:
    """Accumulate metrics over batches; ``result()`` gives overall numbers and breakdowns."""

    def __init__(self, min_depth_m: float = 1e-3, max_depth_m: float = 100.0):
        self.min_depth, self.max_depth = min_depth_m, max_depth_m
        self.overall = _Sums()
        self.coc_ge2 = _Sums()
        self.by_depth = {b: _Sums() for b in zip(DEPTH_BINS_M[:-1], DEPTH_BINS_M[1:])}
        self.by_coc = {b: _Sums() for b in zip(COC_BINS_PX[:-1], COC_BINS_PX[1:])}
        self.by_side = {"front": _Sums(), "behind": _Sums()}
        n_conf = len(SIDE_CONFIDENCE_BINS) - 1
        self.conf_n, self.conf_ok = [0.0] * n_conf, [0.0] * n_conf

    @torch.no_grad()
    def update(self, pred_depth, pred_coc, gt_depth, gt_coc, focus_m, valid, side_prob=None) -> None:
        """All maps (B, 1, H, W) at the same resolution; focus_m (B,) in metres; side_prob: the
        model's probability that a pixel is behind the focus plane (optional, for reliability)."""
        valid = valid & (gt_depth > self.min_depth) & (gt_depth <= self.max_depth) & torch.isfinite(pred_coc)
        published = torch.isfinite(pred_depth)
        d_f = focus_m.view(-1, 1, 1, 1).to(gt_depth)
        pd = pred_depth.clamp(self.min_depth, self.max_depth)
        args = (pd, gt_depth, pred_coc, gt_coc)
        self.overall.add(*args, valid, published)
        self.coc_ge2.add(*args, valid & (gt_coc >= 2.0), published)
        for (lo, hi), acc in self.by_depth.items():
            acc.add(*args, valid & (gt_depth >= lo) & (gt_depth < hi), published)
        # side: predicted depth must be clearly on the true side of the focus plane
        gt_behind = gt_depth > d_f
        pred_behind = pd > d_f * 1.01
        pred_front = pd < d_f * 0.99
        ok = torch.where(gt_behind, pred_behind, pred_front)
        side_mask = valid & published & (gt_coc >= 1.0)
        self.overall.add_side(ok, side_mask)
        self.coc_ge2.add_side(ok, side_mask & (gt_coc >= 2.0))
        for (lo, hi), acc in self.by_coc.items():
            m = valid & (gt_coc >= lo) & (gt_coc < hi)
            acc.add(*args, m, published)
            acc.add_side(ok, m & side_mask)
        self.by_side["behind"].add(*args, valid & gt_behind, published)
        self.by_side["front"].add(*args, valid & ~gt_behind, published)
        self.by_side["behind"].add_side(ok, side_mask & gt_behind)
        self.by_side["front"].add_side(ok, side_mask & ~gt_behind)
        if side_prob is not None:
            conf = torch.maximum(side_prob, 1 - side_prob)[side_mask]
            inner = torch.tensor(SIDE_CONFIDENCE_BINS[1:-1], device=conf.device, dtype=conf.dtype)
            k = torch.bucketize(conf, inner, right=True)  # bins [lo, hi); the last one holds 1.0
            n_bins = len(self.conf_n)
            n = torch.bincount(k, minlength=n_bins).tolist()
            right = torch.bincount(k[ok[side_mask]], minlength=n_bins).tolist()
            self.conf_n = [a + b for a, b in zip(self.conf_n, n)]
            self.conf_ok = [a + b for a, b in zip(self.conf_ok, right)]

    def result(self) -> dict:
        return {
            "overall": self.overall.result(),
            "coc_ge_2px": self.coc_ge2.result(),
            "by_depth": {_bin_name(lo, hi, "m"): a.result() for (lo, hi), a in self.by_depth.items()},
            "by_coc": {_bin_name(lo, hi, "px"): a.result() for (lo, hi), a in self.by_coc.items()},
            "by_side": {k: a.result() for k, a in self.by_side.items()},
            **({"side_by_confidence": self._reliability()} if sum(self.conf_n) else {}),
        }

    def _reliability(self) -> dict:
        total, e = sum(self.conf_n), SIDE_CONFIDENCE_BINS
        return {
            f"{e[k]:g}-{e[k + 1]:g}": {"share": n / total, "side_acc": (ok / n) if n else None}
            for k, (n, ok) in enumerate(zip(self.conf_n, self.conf_ok))
        }
