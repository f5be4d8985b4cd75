"""How well is the blur read? Signed bias per true-CoC bin, MAE, slope, and a read-vs-true histogram.

A reading that compresses every blur towards the median can have a small mean error and be
useless for depth (DESIGN.md, "Reading the blur"), so the CoC is judged per size of the true
blur: for every bin of the true CoC (px), the mean signed error (px, and as a share of the mean
true CoC in the bin), the MAE (px) and the share of pixels; over all pixels, the least-squares
line ``read = slope * true + intercept``; and a 2-D histogram of (true, read) for the plot.

Two pixel sets are judged separately: every valid pixel, and the edge pixels, where the blur can
be measured at all (:func:`.reblur.measured_edges`: the same set for every estimator, found from
the image alone).

Inputs are numpy arrays or torch tensors of any shape; ``mask`` selects the pixels.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["READ_BINS_PX", "CocReading", "format_reading", "plot_read_vs_true"]

READ_BINS_PX = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, math.inf)
HIST_MAX_PX = 32.0  # the 2-D histogram covers 0-32 px on both axes
HIST_BINS = 128


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def _bin_label(lo: float, hi: float) -> str:
    return f"{lo:g}-{hi:g}" if math.isfinite(hi) else f">={lo:g}"


class CocReading:
    """Accumulates (read, true) CoC pairs (px) over images; :meth:`result` gives the summary."""

    def __init__(self) -> None:
        nb = len(READ_BINS_PX) - 1
        self.n = np.zeros(nb)
        self.err = np.zeros(nb)
        self.abs_err = np.zeros(nb)
        self.true = np.zeros(nb)
        self.moments = np.zeros(5)  # n, sum x, sum y, sum x^2, sum x*y (x = true, y = read)
        self.hist = np.zeros((HIST_BINS, HIST_BINS))  # [true bin, read bin]

    def update(self, read, true, mask=None) -> None:
        """``read`` and ``true``: CoC (px) at the same resolution; ``mask``: pixels to count."""
        read, true = _np(read).astype(np.float64), _np(true).astype(np.float64)
        ok = np.isfinite(read) & np.isfinite(true)
        if mask is not None:
            ok &= _np(mask).astype(bool)
        y, x = read[ok], true[ok]
        if not x.size:
            return
        k = np.clip(np.searchsorted(READ_BINS_PX, x, side="right") - 1, 0, len(self.n) - 1)
        nb = len(self.n)
        self.n += np.bincount(k, minlength=nb)
        self.err += np.bincount(k, y - x, minlength=nb)
        self.abs_err += np.bincount(k, np.abs(y - x), minlength=nb)
        self.true += np.bincount(k, x, minlength=nb)
        self.moments += (x.size, x.sum(), y.sum(), (x * x).sum(), (x * y).sum())
        h, _, _ = np.histogram2d(x, y, bins=HIST_BINS, range=[[0, HIST_MAX_PX], [0, HIST_MAX_PX]])
        self.hist += h

    def merge(self, other: CocReading) -> None:
        for name in ("n", "err", "abs_err", "true", "moments", "hist"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def result(self) -> dict:
        """``bins``: per true-CoC bin ``{pixels, share, bias_px, bias_pct, mae}``; ``slope`` and
        ``intercept`` of the least-squares line read = slope * true + intercept; ``mae``; ``pixels``."""
        n, sx, sy, sxx, sxy = self.moments
        total = max(n, 1.0)
        bins = {}
        for i, (lo, hi) in enumerate(zip(READ_BINS_PX[:-1], READ_BINS_PX[1:])):
            c = self.n[i]
            bins[_bin_label(lo, hi)] = {
                "pixels": int(c),
                "share": float(c / total),
                "bias_px": float(self.err[i] / c) if c else math.nan,
                "bias_pct": float(100.0 * self.err[i] / self.true[i]) if c and self.true[i] > 0 else math.nan,
                "mae": float(self.abs_err[i] / c) if c else math.nan,
            }
        var = sxx - sx * sx / total
        slope = float((sxy - sx * sy / total) / var) if n > 1 and var > 0 else math.nan
        return {
            "pixels": int(n),
            "mae": float(self.abs_err.sum() / total) if n else math.nan,
            "bias_px": float(self.err.sum() / total) if n else math.nan,
            "slope": slope,
            "intercept": float((sy - slope * sx) / total) if slope == slope else math.nan,
            "bins": bins,
        }


def format_reading(name: str, results: dict) -> str:
    """Table of one estimator's reading: ``results`` maps a pixel set ('all', 'edges') to
    :meth:`CocReading.result`."""
    lines = []
    for subset, r in results.items():
        if not r["pixels"]:
            lines.append(f"-- {name}, {subset} pixels: none")
            continue
        lines.append(
            f"-- blur reading, {name}, {subset} pixels: slope {r['slope']:.3f} (intercept {r['intercept']:+.2f} px), "
            f"MAE {r['mae']:.3f} px, bias {r['bias_px']:+.3f} px"
        )
        used = {k: v for k, v in r["bins"].items() if v["pixels"]}
        lines.append("  true CoC (px) " + "".join(f"{k:>8s}" for k in used))

        for label, key, fmt in (
            ("share", "share", ".3f"),
            ("bias (px)", "bias_px", "+.2f"),
            ("bias (%)", "bias_pct", "+.0f"),
            ("MAE (px)", "mae", ".2f"),
        ):
            cells = (f"{format(v[key], fmt):>8s}" if v[key] == v[key] else f"{'-':>8s}" for v in used.values())
            lines.append(f"  {label:14s}" + "".join(cells))
    return "\n".join(lines)


def plot_read_vs_true(hists: dict, path, title: str) -> None:
    """2-D histograms (log counts) of read against true CoC: ``hists`` maps a panel title to a
    :class:`CocReading`; one panel each, with the identity line."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(hists)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.3 * rows), squeeze=False)
    for ax, (label, acc) in zip(axes.flat, hists.items()):
        h = acc.hist.T  # rows: read, columns: true
        ax.imshow(np.log10(1 + h), origin="lower", extent=[0, HIST_MAX_PX, 0, HIST_MAX_PX], cmap="magma", aspect="auto")
        ax.plot([0, HIST_MAX_PX], [0, HIST_MAX_PX], color="cyan", lw=0.8)
        r = acc.result()
        ax.set_title(f"{label}\nslope {r['slope']:.2f}, MAE {r['mae']:.2f} px", fontsize=8)
        ax.set_xlabel("true CoC (px)", fontsize=8)
        ax.set_ylabel("read CoC (px)", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
