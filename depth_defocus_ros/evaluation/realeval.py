"""``depth-defocus eval --real motorcycle``: estimators and reference answers on the real-photo
benchmark (:mod:`.realbench`), per case group, with uncertainty ranking and a sparsification plot.

For every case it measures, on the estimator's published pixels (``focus_side=auto``,
``max_relative_error`` as given): depth AbsRel and delta < 1.25, side accuracy (true CoC >= 1 px),
coverage (the share of valid pixels with a finite depth), and the CoC MAE (px) on every valid pixel.
Means are over cases. Reference answers: "no blur" (CoC 0, depth at the focus distance), "constant
depth" (the true median depth everywhere) and the training-free estimator.

The blur reading itself is judged per true-CoC bin (:mod:`.cocreading`: signed bias in px and %,
MAE, slope of read against true), on every valid pixel and on the edge pixels, pooled over the
cases. Whether the validity keeps its promise: for E in :data:`KEPT_E`, the kept rate is the
share of the pixels published at ``max_relative_error = E`` whose relative depth error is at most E
(``focus_side=auto`` on all cases, ``front`` on the cases focused beyond the scene).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..learn.cocreading import CocReading, format_reading, plot_read_vs_true
from ..optics import Lens, coc_px
from .realbench import CASES, case_group, load_cases

__all__ = ["case_metrics", "evaluate_real", "format_real_report", "run_real_eval", "spearman", "KEPT_E"]

KEPT_E = (0.1, 0.25, 0.5)  # max_relative_error values whose promise is checked (kept rate)

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


class KeptRate:
    """For each E in :data:`KEPT_E`: pixels published at ``max_relative_error = E`` (relative error
    estimate <= E, finite depth) and how many of them have a true relative depth error <= E."""

    def __init__(self) -> None:
        self.published = np.zeros(len(KEPT_E))
        self.kept = np.zeros(len(KEPT_E))
        self.valid = 0.0

    def update(self, depth_all, relative_error, gt_depth) -> None:
        valid = np.isfinite(gt_depth)
        self.valid += float(valid.sum())
        ok = valid & np.isfinite(depth_all) & np.isfinite(relative_error)
        err = np.abs(depth_all[ok] - gt_depth[ok]) / gt_depth[ok]
        rel = relative_error[ok]
        for i, e in enumerate(KEPT_E):
            pub = rel <= e
            self.published[i] += float(pub.sum())
            self.kept[i] += float((err[pub] <= e).sum())

    def result(self) -> dict:
        return {
            f"{e:g}": {
                "kept": float(self.kept[i] / self.published[i]) if self.published[i] else math.nan,
                "coverage": float(self.published[i] / max(self.valid, 1.0)),
            }
            for i, e in enumerate(KEPT_E)
        }


def _edge_mask(image: np.ndarray) -> np.ndarray:
    """The edge pixels of an HxWx3 uint8 image (:func:`.reblur.measured_edges`)."""
    import torch

    from ..reading.reblur import measured_edges

    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    return measured_edges(x)[0, 0].numpy()


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (ties broken by order; fine for continuous values)."""
    ra = np.argsort(np.argsort(a)).astype(np.float64)
    rb = np.argsort(np.argsort(b)).astype(np.float64)
    return float(np.corrcoef(ra, rb)[0, 1])


def _mean(rows: list, key: str):
    vals = [r[key] for r in rows if key in r]
    return (float(np.mean(vals)), len(vals)) if vals else (math.nan, 0)


class _RealRun:
    """What :func:`evaluate_real` accumulates over the cases."""

    def __init__(self, names, max_relative_error: float, pixels_for_ranking: int):
        answers = (*names, NO_BLUR, CONSTANT)
        self.names, self.e, self.n_rank = tuple(names), max_relative_error, pixels_for_ranking
        self.rng = np.random.default_rng(0)
        self.per_case = {name: [] for name in answers}
        self.front = {name: [] for name in names}
        self.pooled = {name: ([], [], []) for name in names}  # relative uncertainty, error, side right
        self.reading = {name: {"all": CocReading(), "edge": CocReading()} for name in answers}
        self.kept = {name: {"auto": KeptRate(), "front_on_beyond": KeptRate()} for name in names}

    def add_answer(self, name, tag, depth, coc, r, focus_m, edges) -> None:
        gt_d, gt_c = r["depth"], r["coc"]
        self.per_case[name].append({**tag, **case_metrics(depth, coc, gt_d, gt_c, focus_m)})
        valid = np.isfinite(gt_d) & np.isfinite(gt_c)
        self.reading[name]["all"].update(coc, gt_c, valid)
        self.reading[name]["edge"].update(coc, gt_c, valid & edges)

    def add_references(self, tag, r, lens: Lens, fx: float, edges) -> None:
        gt_d, gt_c, d_f = r["depth"], r["coc"], lens.focus_distance_m
        self.add_answer(NO_BLUR, tag, np.full_like(gt_d, d_f), np.zeros_like(gt_c), r, d_f, edges)
        med = float(np.median(gt_d[np.isfinite(gt_d)]))
        c_med = np.full_like(gt_c, coc_px(med, lens, fx))
        self.add_answer(CONSTANT, tag, np.full_like(gt_d, med), c_med, r, d_f, edges)

    def add_estimator(self, name, est, case, tag, r, lens: Lens, fx: float, edges) -> None:
        gt_d, d_f = r["depth"], lens.focus_distance_m
        p = est.predict(r["image"], lens, fx, uncertainty=True, max_relative_error=math.inf)
        published = np.where(p.relative_error <= self.e, p.depth, np.nan)
        self.add_answer(name, tag, published, p.defocus, r, d_f, edges)
        self.kept[name]["auto"].update(p.depth, p.relative_error, gt_d)
        ok = np.isfinite(gt_d) & np.isfinite(p.depth) & np.isfinite(p.relative_error)
        if ok.any():
            take = self.rng.choice(np.flatnonzero(ok), size=min(self.n_rank, int(ok.sum())), replace=False)
            self.pooled[name][0].append(p.relative_error.flat[take])
            self.pooled[name][1].append(np.abs(p.depth.flat[take] - gt_d.flat[take]) / gt_d.flat[take])
            self.pooled[name][2].append((p.depth.flat[take] > d_f) == (gt_d.flat[take] > d_f))
        if case.focus == "beyond":
            pf = est.predict(r["image"], lens, fx, focus_side="front", max_relative_error=math.inf)
            self.kept[name]["front_on_beyond"].update(pf.depth, pf.relative_error, gt_d)
            pub = np.where(pf.relative_error <= self.e, pf.depth, np.nan)
            self.front[name].append({**tag, **case_metrics(pub, pf.defocus, gt_d, r["coc"], d_f)})

    def groups(self) -> dict:
        out = {}
        for name, rows in self.per_case.items():
            out[name] = {}
            for g in GROUP_ORDER:
                sel = [r for r in rows if g in r["groups"]]
                out[name][g] = {k: _mean(sel, k)[0] for k in ("coc_mae", "side", "abs_rel", "delta1", "coverage")}
                out[name][g]["cases"] = len(sel)
                out[name][g]["cases_with_depth"] = _mean(sel, "abs_rel")[1]
        return out

    def ranking(self) -> dict:
        out = {}
        for name, (u, e, right) in self.pooled.items():
            if not u:
                continue
            u, e, right = np.concatenate(u), np.concatenate(e), np.concatenate(right)
            order = np.argsort(u, kind="stable")
            half = len(order) // 2
            out[name] = {
                "spearman": spearman(u, e),
                "abs_rel_certain_half": float(e[order[:half]].mean()),
                "abs_rel_uncertain_half": float(e[order[half:]].mean()),
                "pixels": int(len(u)),
                "sparsification": _sparsification(u, e),
                "side_right_share": float(right.mean()),
                "by_side": {k: _stated_vs_actual(u[m], e[m]) for k, m in (("right", right), ("wrong", ~right))},
            }
        return out

    def result(self) -> dict:
        keys = ("abs_rel", "delta1", "coverage", "coc_mae")
        return {
            "per_case": self.per_case,
            "groups": self.groups(),
            "front_on_beyond": {name: {k: _mean(rows, k)[0] for k in keys} for name, rows in self.front.items()},
            "ranking": self.ranking(),
            "reading": {name: {k: acc.result() for k, acc in sets.items()} for name, sets in self.reading.items()},
            "kept": {name: {k: acc.result() for k, acc in sets.items()} for name, sets in self.kept.items()},
            "max_relative_error": self.e,
        }


def evaluate_real(
    estimators: dict,
    cache_dir=None,
    max_relative_error: float = 0.25,
    cases=CASES,
    progress: bool = True,
    pixels_for_ranking: int = 4000,
    readings: dict | None = None,
) -> dict:
    """Run every estimator (name -> :class:`~.estimator.Estimator`) and the reference answers on
    the cases. Returns per-case metrics, per-group means, the ``focus_side=front`` results on the
    cases focused beyond the scene, the ranking and sparsification statistics of the uncertainty,
    the blur reading per true-CoC bin and the kept rates. ``readings``: a dict that receives the
    :class:`~.cocreading.CocReading` accumulators (for the read-vs-true plot)."""
    run = _RealRun(estimators, max_relative_error, pixels_for_ranking)
    for case, r in load_cases(cache_dir, cases, progress=progress):
        lens = Lens(*map(float, r["lens"]))
        fx = float(r["fx"])
        tag = {"case": case.name, "groups": ["all", *case_group(case)]}
        edges = _edge_mask(r["image"])
        run.add_references(tag, r, lens, fx, edges)
        for name, est in estimators.items():
            run.add_estimator(name, est, case, tag, r, lens, fx, edges)
    if readings is not None:
        readings.update(run.reading)
    return run.result()


def _stated_vs_actual(u: np.ndarray, e: np.ndarray) -> dict:
    """Spearman, mean stated relative uncertainty and mean relative error of a pixel subset."""
    if len(u) < 2:
        return {"spearman": math.nan, "stated": math.nan, "actual": math.nan, "pixels": int(len(u))}
    return {"spearman": spearman(u, e), "stated": float(u.mean()), "actual": float(e.mean()), "pixels": int(len(u))}


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
        for side, b in m["by_side"].items():
            share = m["side_right_share"] if side == "right" else 1.0 - m["side_right_share"]
            lines.append(
                f"  {'':30s}   side {side:5s} ({100 * share:4.1f} % of pixels): Spearman {num(b['spearman'], '.3f')}"
                f"  mean stated {num(b['stated'], '.3f')}  mean actual {num(b['actual'], '.3f')}"
            )
    lines.append("== does the validity keep its promise? (kept: share of the pixels published at E whose error <= E)")
    for name, sets in res["kept"].items():
        for subset, per_e in sets.items():
            cells = "  ".join(
                f"E={e}: kept {num(v['kept'], '.3f')} cover {num(v['coverage'], '.3f')}" for e, v in per_e.items()
            )
            lines.append(f"  {name:30s} {subset:16s} {cells}")
    lines.append("== blur reading per true-CoC bin (all cases pooled)")
    for name, sets in res["reading"].items():
        lines.append(format_reading(name, sets))
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
    from ..estimate.estimator import TRAINING_FREE, Estimator, learned_side_arg
    from ..paths import default_model_path

    if args.real != "motorcycle":
        raise ValueError(f"unknown real benchmark {args.real!r}; available: motorcycle")
    default = str(args.model or default_model_path())
    estimators = {default: Estimator.load(default, device=args.device, learned_side=learned_side_arg(args))}
    if default != TRAINING_FREE:
        estimators[TRAINING_FREE] = Estimator.load(TRAINING_FREE, device=args.device)
    readings: dict = {}
    res = evaluate_real(estimators, args.cache, args.max_relative_error, readings=readings)
    report = format_real_report(res, default).splitlines()
    plot_sparsification(res, args.plot)
    hist_path = Path(args.plot).with_name("motorcycle_read_vs_true.png")
    panels = {f"{name} ({k})": acc for name in estimators for k, acc in readings[name].items()}
    plot_read_vs_true(panels, hist_path, "Read against true CoC on the motorcycle benchmark (64 cases)")
    tail = [f"(sparsification plot: {args.plot}; read-vs-true plot: {hist_path})", report[-1]]
    print("\n".join(report[:-1] + tail))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1))
    return 0
