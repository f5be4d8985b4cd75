"""Figures people look at: colour-mapped depth/defocus, prediction grids, training curves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = [
    "colorize",
    "depth_preview",
    "defocus_preview",
    "save_prediction_grid",
    "plot_training_curves",
    "save_overview",
]


def colorize(values: np.ndarray, lo: float, hi: float, cmap: str = "turbo", log: bool = False) -> np.ndarray:
    """Map a float image to an HxWx3 uint8 *BGR* colour image over the fixed range [lo, hi].

    NaN / inf map to black. A fixed range (not per-frame min-max) keeps colours comparable.
    """
    import cv2

    v = np.asarray(values, dtype=np.float32)
    bad = ~np.isfinite(v)
    if log:
        v = np.log(np.clip(v, lo, hi))
        lo, hi = np.log(lo), np.log(hi)
    t = np.clip((np.nan_to_num(v, nan=lo) - lo) / max(hi - lo, 1e-9), 0, 1)
    maps = {"turbo": cv2.COLORMAP_TURBO, "magma": cv2.COLORMAP_MAGMA, "viridis": cv2.COLORMAP_VIRIDIS}
    out = cv2.applyColorMap((t * 255).astype(np.uint8), maps[cmap])
    out[bad] = 0
    return out


def depth_preview(depth_m: np.ndarray, min_m: float = 0.2, max_m: float = 20.0) -> np.ndarray:
    """BGR preview of metric depth, log-scaled between min_m and max_m (near = red)."""
    return colorize(depth_m, min_m, max_m, "turbo", log=True)


def defocus_preview(coc_px: np.ndarray, max_px: float = 16.0) -> np.ndarray:
    """BGR preview of the CoC (px), 0 (sharp, black) to max_px (bright)."""
    return colorize(coc_px, 0.0, max_px, "magma")


def save_prediction_grid(path, batch: dict, pred: dict, n: int = 4) -> None:
    """Rows: image | true depth | predicted depth | true CoC | predicted CoC (PNG)."""
    import cv2

    rows = []
    for i in range(min(n, batch["image"].shape[0])):
        img = (batch["image"][i].permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)[:, :, ::-1]
        cmax = max(float(batch["defocus"][i].max()), 1.0)
        tiles = [
            img,
            depth_preview(batch["depth"][i, 0].cpu().numpy()),
            depth_preview(pred["depth"][i, 0].detach().float().cpu().numpy()),
            defocus_preview(batch["defocus"][i, 0].cpu().numpy(), cmax),
            defocus_preview(pred["coc"][i, 0].detach().float().cpu().numpy(), cmax),
        ]
        rows.append(np.concatenate(tiles, axis=1))
    cv2.imwrite(str(path), np.concatenate(rows, axis=0))


def plot_training_curves(metrics_jsonl, out_png) -> None:
    """Loss terms (train) and validation metrics against step, from metrics.jsonl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [json.loads(line) for line in Path(metrics_jsonl).read_text().splitlines() if line.strip()]
    train = [r for r in recs if r.get("kind") == "train"]
    val = [r for r in recs if r.get("kind") == "val"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("loss", "coc", "depth", "side", "consistency", "final"):
        pts = [(r["step"], r[key]) for r in train if key in r]
        if pts:
            axes[0].plot(*zip(*pts), label=key)
    if all(v > 0 for line in axes[0].get_lines() for v in line.get_ydata()):
        axes[0].set_yscale("log")
    axes[0].set_xlabel("step")
    axes[0].set_title("training loss terms")
    for key in ("val_abs_rel", "val_coc_mae", "val_side_acc", "val_delta1", "val_mae", "val_within_sigma"):
        pts = [(r["step"], r[key]) for r in val if key in r]
        if pts:
            axes[1].plot(*zip(*pts), marker="o", label=key.replace("val_", ""))
    axes[1].set_xlabel("step")
    axes[1].set_title("validation")
    for ax in axes:  # a legend only where something is drawn (no matplotlib warning at the first steps)
        if ax.get_lines():
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)


def save_overview(path, frames, max_depth_m: float = 20.0, title: str | None = None) -> None:
    """One row per frame: input | published depth | measured depth | relative depth error |
    defocus, titled with the frame's lens and numbers, under ``title`` (e.g. which estimator).
    Black in the depth columns: not published (or no measurement). ``frames``: (n, (name, rgb,
    gt_depth, lens), depth, defocus, metrics)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(frames)
    fig, axes = plt.subplots(rows, 5, figsize=(20, 3.2 * rows), squeeze=False)
    for ax_row, (_n, (name, rgb, gt, lens), depth, defocus, m) in zip(axes, frames):
        lo = max(0.1, float(np.nanpercentile(gt, 1)) * 0.8) if np.isfinite(gt).any() else 0.2
        hi = min(max_depth_m, float(np.nanpercentile(gt, 99)) * 1.25) if np.isfinite(gt).any() else max_depth_m
        rel = np.abs(depth - gt) / gt
        cmap = matplotlib.colormaps["turbo"].copy()
        cmap.set_bad("black")
        panels = [
            (
                rgb,
                None,
                f"{name}: {lens.focal_length_m * 1000:g} mm f/{lens.f_number:g}, focus {lens.focus_distance_m:g} m",
            ),
            (
                depth,
                (lo, hi),
                f"depth (m): AbsRel {m.get('abs_rel', float('nan')):.3f}, "
                f"d<1.25 {m.get('delta1', float('nan')):.2f} on {m['coverage']:.0%}",
            ),
            (gt, (lo, hi), "measured depth (m)"),
            (rel, (0.0, 0.5), "relative depth error |d - d_gt| / d_gt"),
            (
                defocus,
                (0.0, max(4.0, float(np.nanpercentile(defocus, 99)))),
                f"defocus (CoC px): MAE {m['coc_mae']:.2f} px",
            ),
        ]
        for ax, (img, rng, label) in zip(ax_row, panels):
            if rng is None:
                ax.imshow(img)
            else:
                im = ax.imshow(
                    np.ma.masked_invalid(img), cmap=cmap if img is not defocus else "magma", vmin=rng[0], vmax=rng[1]
                )
                fig.colorbar(im, ax=ax, fraction=0.035, pad=0.01)
            ax.set_title(label, fontsize=9)
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
