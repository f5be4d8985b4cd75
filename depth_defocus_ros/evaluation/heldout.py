"""Evaluation on the fixed held-out sets or on a dataset folder.

Held-out sets are defined by a layout and a seed and are regenerated bit-exactly on the CPU
(``heldout_config``); ``--cache`` keeps them as shards so that later evaluations skip rendering.
Each set's fingerprint (a SHA-256 over its arrays) is printed so two runs can be compared.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from ..estimate.depthmap import compose_depth, side_probability
from ..learn.cocreading import CocReading, format_reading, plot_read_vs_true
from ..learn.datasets import ShardDataset
from ..learn.metrics import MetricAccumulator
from ..synth.scenes import SceneConfig, render_shards
from ..synth.textures import TEXTURE_RECIPE

__all__ = ["HELDOUT", "heldout_config", "evaluate_estimator", "ensure_heldout", "format_report"]

# name -> (seed, structured fraction, scenes)
HELDOUT = {"layers": (20240501, 0.0, 500), "structured": (20240502, 1.0, 500)}


def heldout_config(name: str) -> SceneConfig:
    seed, frac, _ = HELDOUT[name]
    return SceneConfig(structured_fraction=frac)


def ensure_heldout(name: str, cache_dir, scenes: int | None = None, progress: bool = True) -> Path:
    """Render (or reuse) the held-out set ``name`` as shards under ``cache_dir/name``."""
    if name not in HELDOUT:
        raise ValueError(f"unknown held-out set {name!r}; choose from {sorted(HELDOUT)}")
    seed, _, n = HELDOUT[name]
    n = scenes or n
    out = Path(cache_dir) / (name if n == HELDOUT[name][2] else f"{name}_{n}")
    man = out / "manifest.json"
    if man.is_file():
        old = json.loads(man.read_text())
        recipe = old.get("texture_recipe", 1)  # absent: written before recipes were recorded
        if recipe != TEXTURE_RECIPE:  # an older definition of the set
            print(f"{out}: rendered with texture recipe {recipe}; rendering it again")
            for p in out.glob("shard_*.npz"):
                p.unlink()
            man.unlink()
        elif old.get("complete"):
            return out
    return render_shards(out, n, seed=seed, shard_size=50, config=heldout_config(name), progress=progress)


def fingerprint(root) -> str:
    h = hashlib.sha256()
    for p in sorted(Path(root).glob("shard_*.npz")):
        with np.load(p) as z:
            for k in sorted(z.files):
                h.update(k.encode())
                h.update(np.ascontiguousarray(z[k]).tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def evaluate_estimator(
    est,
    data_root,
    split=None,
    batch_size=8,
    focus_side: str = "auto",
    max_relative_error: float = 0.25,
    progress=True,
    max_batches=None,
    readings: dict | None = None,
) -> dict:
    """Metrics of an :class:`~.estimator.Estimator` over every sample of a shard dataset, at the
    stored resolution, with the same side decision and validity as ``predict``; ``reading`` holds
    the blur reading per true-CoC bin (:mod:`.cocreading`) on all valid pixels and on the edge
    pixels. ``readings``: a dict that receives the reading accumulators (for the plot)."""
    from tqdm import tqdm

    from ..reading.reblur import measured_edges

    acc = MetricAccumulator()
    reading = {"all": CocReading(), "edge": CocReading()}
    ds = ShardDataset(data_root, batch_size, split=split, loop=False, augment=False)
    t0, n = time.time(), 0
    for i, b in enumerate(tqdm(ds, desc=f"eval {Path(data_root).name}", disable=not progress, unit="batch")):
        if max_batches and i >= max_batches:
            break
        b = {k: v.to(est.device) for k, v in b.items()}
        coc, sigma, prior, _ = est.read(b["image"], b["lens"], b["fx"])
        p = side_probability(coc, sigma, b["lens"], b["fx"], focus_side, prior)
        res = compose_depth(coc, sigma, p, b["lens"], b["fx"], max_relative_error)
        acc.update(res.depth, coc, b["depth"], b["defocus"], b["lens"][:, 2], b["valid"], side_prob=prior)
        reading["all"].update(coc, b["defocus"], b["valid"])
        reading["edge"].update(coc, b["defocus"], b["valid"] & measured_edges(b["image"]))
        n += b["image"].shape[0]
    res = acc.result()
    res["reading"] = {k: r.result() for k, r in reading.items()}
    if readings is not None:
        readings.update(reading)
    res["images"] = n
    res["seconds"] = round(time.time() - t0, 1)
    return res


def format_report(name: str, res: dict) -> str:
    o, c2 = res["overall"], res["coc_ge_2px"]
    lines = [
        f"== {name}: {res['images']} images",
        f"{'':12s} {'AbsRel':>7s} {'SqRel':>7s} {'RMSE':>7s} {'RMSElog':>7s} {'d<1.25':>7s} "
        f"{'d<1.25²':>7s} {'d<1.25³':>7s} {'CoC MAE':>8s} {'CoC RMSE':>8s} {'side':>6s} {'cover':>6s}",
    ]

    def row(label, r):
        side = f"{r['side_acc']:6.3f}" if "side_acc" in r else f"{'-':>6s}"
        if not r["pixels"]:
            return f"{label:12s} (no pixels)"
        return (
            f"{label:12s} {r['abs_rel']:7.4f} {r['sq_rel']:7.4f} {r['rmse']:7.3f} {r['rmse_log']:7.4f} "
            f"{r['delta1']:7.4f} {r['delta2']:7.4f} {r['delta3']:7.4f} {r['coc_mae']:8.3f} "
            f"{r['coc_rmse']:8.3f} {side} {r['coverage']:6.3f}"
        )

    lines.append(row("all", o))
    lines.append(row("CoC>=2px", c2))
    lines.append("-- by true side")
    lines += [row(k, v) for k, v in res["by_side"].items()]
    lines.append("-- by true CoC")
    lines += [row(k, v) for k, v in res["by_coc"].items()]
    lines.append("-- by true depth")
    lines += [row(k, v) for k, v in res["by_depth"].items()]
    if "side_by_confidence" in res:
        lines.append("-- side accuracy (CoC>=1px) by the model's side confidence max(p, 1-p)")
        for k, v in res["side_by_confidence"].items():
            acc = f"{v['side_acc']:.3f}" if v["side_acc"] is not None else "-"
            lines.append(f"{k:12s} share {v['share']:5.3f}  side {acc}")
    if "reading" in res:
        lines.append(format_reading(name.split(" ")[0], res["reading"]))
    return "\n".join(lines)


def run_eval(args) -> int:
    from ..estimate.estimator import Estimator, learned_side_arg

    if args.real:
        from .realeval import run_real_eval

        return run_real_eval(args)
    est = Estimator.load(args.model, device=args.device, learned_side=learned_side_arg(args))
    targets = []
    for name in args.heldout or []:
        root = ensure_heldout(name, args.cache, args.scenes)
        targets.append((f"heldout:{name}", root, None))
    for d in args.data or []:
        targets.append((d, Path(d), args.split))
    if not targets:
        targets = [(f"heldout:{n}", ensure_heldout(n, args.cache, args.scenes), None) for n in HELDOUT]
    results = {
        "model": str(est.path),
        "focus_side": args.focus_side,
        "max_relative_error": args.max_relative_error,
        "sets": {},
    }
    for label, root, split in targets:
        readings: dict = {}
        res = evaluate_estimator(
            est,
            root,
            split=split,
            focus_side=args.focus_side,
            max_relative_error=args.max_relative_error,
            max_batches=args.max_batches,
            readings=readings,
        )
        plot = Path(args.plot).with_name(f"{label.replace(':', '_').replace('/', '_')}_read_vs_true.png")
        panels = {f"{est.path} ({k})": r for k, r in readings.items()}
        plot_read_vs_true(panels, plot, f"Read against true CoC: {label}")
        print(f"(read-vs-true plot: {plot})")
        res["fingerprint"] = fingerprint(root) if split is None else None
        results["sets"][label] = res
        print(format_report(f"{label} ({est.path})", res))
        if res.get("fingerprint"):
            print(f"(set fingerprint {res['fingerprint']}, {res['seconds']} s)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))
        print(f"wrote {args.out}")
    return 0
