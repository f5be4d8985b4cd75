"""``depth-defocus eval --real motorcycle``: estimators and reference answers on the real-photo
benchmark (:mod:`.realbench`), per case group, with uncertainty ranking and a sparsification plot.

For every case it measures, on the estimator's published pixels (``focus_side=auto``,
``max_relative_error`` as given): depth AbsRel and delta < 1.25, side accuracy (true CoC >= 1 px),
coverage (the share of valid pixels with a finite depth), and the CoC MAE (px) on every valid pixel.
Means are over cases. Reference answers: "no blur" (CoC 0, depth at the focus distance), "constant
depth" (the true median depth everywhere) and the training-free estimator.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .optics import Lens, coc_px
from .realbench import CASES, case_group, load_cases

__all__ = ["case_metrics", "evaluate_real", "format_real_report", "run_real_eval", "spearman"]

GROUP_ORDER = ("all", "focus front", "focus inside", "focus beyond", "width 741", "width 370", "clean", "noisy+jpeg")
NO_BLUR, CONSTANT = "no blur (depth = focus distance)", "constant depth (true median)"


def case_metrics(depth, coc, gt_depth, gt_coc, focus_m: float) -> dict:
    """Metrics of one answer on one case. ``depth`` (m) is NaN where not published."""
    valid = np.isfinite(gt_depth) & np.isfinite(gt_coc)
    pub = valid & np.isfinite(depth)
    out = {"coc_mae": float(np.abs(coc[valid] - gt_coc[valid]).mean()), "coverage": float(pub.sum() / valid.sum())}
    if pub.any():
        p, g = depth[pub].astype(np.float64), gt_depth[pub].astype(np.float64)
        out["abs_rel"] = float((np.abs(p - g) / g).mean())
        out["delta1"] = float((np.maximum(p / g, g / p) < 1.25).mean())
    side = pub & (gt_coc >= 1.0)
    if side.any():
        behind = gt_depth[side] > focus_m
        d = depth[side]
        out["side"] = float(np.where(behind, d > 1.01 * focus_m, d < 0.99 * focus_m).mean())
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (ties broken by order; fine for continuous values)."""
    ra = np.argsort(np.argsort(a)).astype(np.float64)
    rb = np.argsort(np.argsort(b)).astype(np.float64)
    return float(np.corrcoef(ra, rb)[0, 1])


def _mean(rows: list, key: str):
    vals = [r[key] for r in rows if key in r]
    return (float(np.mean(vals)), len(vals)) if vals else (math.nan, 0)


def evaluate_real(
    estimators: dict,
    cache_dir=None,
    max_relative_error: float = 0.25,
    cases=CASES,
    progress: bool = True,
    pixels_for_ranking: int = 4000,
) -> dict:
    """Run every estimator (name -> :class:`~.estimator.Estimator`) and the reference answers on
    the cases. Returns per-case metrics, per-group means, the ``focus_side=front`` results on the
    cases focused beyond the scene, and pooled (relative uncertainty, relative error) samples for
    the ranking and sparsification statistics."""
    rng = np.random.default_rng(0)
    per_case = {name: [] for name in (*estimators, NO_BLUR, CONSTANT)}
    front = {name: [] for name in estimators}
    pooled = {name: ([], []) for name in estimators}
    for case, r in load_cases(cache_dir, cases, progress=progress):
        lens = Lens(*map(float, r["lens"]))
        fx, gt_d, gt_c = float(r["fx"]), r["depth"], r["coc"]
        tag = {"case": case.name, "groups": ["all", *case_group(case)]}
        valid = np.isfinite(gt_d)
        per_case[NO_BLUR].append(
            {
                **tag,
                **case_metrics(
                    np.full_like(gt_d, lens.focus_distance_m), np.zeros_like(gt_c), gt_d, gt_c, lens.focus_distance_m
                ),
            }
        )
        med = float(np.median(gt_d[valid]))
        c_med = np.full_like(gt_c, coc_px(med, lens, fx))
        d_med = np.full_like(gt_d, med)
        per_case[CONSTANT].append({**tag, **case_metrics(d_med, c_med, gt_d, gt_c, lens.focus_distance_m)})
        for name, est in estimators.items():
            p = est.predict(r["image"], lens, fx, uncertainty=True, max_relative_error=math.inf)
            published = np.where(p.relative_error <= max_relative_error, p.depth, np.nan)
            per_case[name].append({**tag, **case_metrics(published, p.defocus, gt_d, gt_c, lens.focus_distance_m)})
            ok = valid & np.isfinite(p.depth) & np.isfinite(p.relative_error)
            if ok.any():
                take = rng.choice(np.flatnonzero(ok), size=min(pixels_for_ranking, int(ok.sum())), replace=False)
                err = np.abs(p.depth.flat[take] - gt_d.flat[take]) / gt_d.flat[take]
                pooled[name][0].append(p.relative_error.flat[take])
                pooled[name][1].append(err)
            if case.focus == "beyond":
                pf = est.predict(r["image"], lens, fx, focus_side="front", max_relative_error=max_relative_error)
                front[name].append({**tag, **case_metrics(pf.depth, pf.defocus, gt_d, gt_c, lens.focus_distance_m)})
    groups = {}
    for name, rows in per_case.items():
        groups[name] = {}
        for g in GROUP_ORDER:
            sel = [r for r in rows if g in r["groups"]]
            groups[name][g] = {k: _mean(sel, k)[0] for k in ("coc_mae", "side", "abs_rel", "delta1", "coverage")}
            groups[name][g]["cases"] = len(sel)
            groups[name][g]["cases_with_depth"] = _mean(sel, "abs_rel")[1]
    ranking = {}
    for name, (u, e) in pooled.items():
        if not u:
            continue
        u, e = np.concatenate(u), np.concatenate(e)
        order = np.argsort(u, kind="stable")
        half = len(order) // 2
        ranking[name] = {
            "spearman": spearman(u, e),
            "abs_rel_certain_half": float(e[order[:half]].mean()),
            "abs_rel_uncertain_half": float(e[order[half:]].mean()),
            "pixels": int(len(u)),
            "sparsification": _sparsification(u, e),
        }
    front_means = {
        name: {k: _mean(rows, k)[0] for k in ("abs_rel", "delta1", "coverage", "coc_mae")}
        for name, rows in front.items()
    }
    return {
        "per_case": per_case,
        "groups": groups,
        "front_on_beyond": front_means,
        "ranking": ranking,
        "max_relative_error": max_relative_error,
    }


def _sparsification(u: np.ndarray, e: np.ndarray, steps: int = 20) -> dict:
    """AbsRel of the most certain share of pixels, for coverage 5 %..100 %, by the estimator's
    uncertainty and by the oracle (the true error)."""
    cov = np.linspace(1.0 / steps, 1.0, steps)
    by_u, by_e = e[np.argsort(u, kind="stable")], np.sort(e)
    n = len(e)
    at = [max(1, int(round(c * n))) for c in cov]
    return {
        "coverage": cov.tolist(),
        "abs_rel": [float(by_u[:k].mean()) for k in at],
        "oracle": [float(by_e[:k].mean()) for k in at],
    }


def format_real_report(res: dict, default: str) -> str:
    lines = []
    hdr = f"  {'group':14s} {'cases':>5s} {'CoC MAE':>8s} {'side':>6s} {'AbsRel':>7s} {'d<1.25':>7s} {'cover':>6s}"

    def num(v, fmt):
        return format(v, fmt) if v == v else f"{'-':>{len(format(0.0, fmt))}s}"

    for name, groups in res["groups"].items():
        lines.append(
            f"== {name}{'  [default]' if name == default else ''}  (focus_side=auto, "
            f"max_relative_error={res['max_relative_error']:g})"
        )
        lines.append(hdr)
        for g, m in groups.items():
            cells = [
                num(m["coc_mae"], "8.3f"),
                num(m["side"], "6.3f"),
                num(m["abs_rel"], "7.4f"),
                num(m["delta1"], "7.4f"),
                num(m["coverage"], "6.3f"),
            ]
            lines.append(f"  {g:14s} {m['cases']:5d} " + " ".join(cells))
    lines.append("== focus_side=front on the cases focused beyond the scene")
    for name, m in res["front_on_beyond"].items():
        lines.append(
            f"  {name:30s} AbsRel {num(m['abs_rel'], '.4f')}  d<1.25 {num(m['delta1'], '.4f')}  "
            f"coverage {num(m['coverage'], '.3f')}"
        )
    lines.append("== does the uncertainty rank the error? (relative uncertainty vs |d - d_gt| / d_gt, valid pixels)")
    for name, m in res["ranking"].items():
        lines.append(
            f"  {name:30s} Spearman {m['spearman']:.3f}  AbsRel certain half {m['abs_rel_certain_half']:.4f}"
            f"  uncertain half {m['abs_rel_uncertain_half']:.4f}"
        )
    d = res["groups"][default]["all"]
    lines.append(
        f"motorcycle: coc_mae={d['coc_mae']:.3f} absrel={d['abs_rel']:.4f} delta1={d['delta1']:.4f} "
        f"coverage={d['coverage']:.3f} side={d['side']:.3f}"
    )
    return "\n".join(lines)


def plot_sparsification(res: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, m in res["ranking"].items():
        s = m["sparsification"]
        line = ax.plot(s["coverage"], s["abs_rel"], label=f"{name} (by its uncertainty)")[0]
        ax.plot(s["coverage"], s["oracle"], "--", color=line.get_color(), alpha=0.6, label=f"{name} (oracle order)")
    ax.set_xlabel("coverage (share of valid pixels kept, most certain first)")
    ax.set_ylabel("AbsRel")
    ax.set_title("Sparsification on the motorcycle benchmark")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_real_eval(args) -> int:
    from .estimator import TRAINING_FREE, Estimator
    from .paths import default_model_path

    if args.real != "motorcycle":
        raise ValueError(f"unknown real benchmark {args.real!r}; available: motorcycle")
    default = str(args.model or default_model_path())
    estimators = {default: Estimator.load(default, device=args.device)}
    if default != TRAINING_FREE:
        estimators[TRAINING_FREE] = Estimator.load(TRAINING_FREE, device=args.device)
    res = evaluate_real(estimators, args.cache, args.max_relative_error)
    report = format_real_report(res, default).splitlines()
    plot_sparsification(res, args.plot)
    print("\n".join(report[:-1] + [f"(sparsification plot: {args.plot})", report[-1]]))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1))
    return 0
