"""Where is the blur reading lost? The learned reader's readings stage by stage, per true-CoC bin.

The reader (:mod:`depth_defocus_ros.reading.reader`) reads each pyramid level, fuses the levels
by a fixed rule, spreads the fused reading over an edge-bounded neighbourhood at two reaches
(near and far), and the refiner blends those into the final reading. A bias in the final reading
can come from any of them; :func:`stage_readings` returns every stage's CoC at the input
resolution, so each can be judged against the truth with :class:`~depth_defocus_ros.learn.cocreading.CocReading` (bias
per true-CoC bin, MAE, slope). Two oracles bound what a per-pixel choice could gain: the reading
closest to the truth among the levels, and among every stage (they use the truth: diagnosis only).

``python scripts/reader_stages.py CKPT --data SCENES`` prints the table for synthetic scenes
(the place to decide things), ``--real motorcycle`` for the benchmark (to diagnose, never to tune).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..learn.cocreading import CocReading
from ..reading.reader import BlurReader, fuse_levels, grid_features, read_defocus, read_levels
from ..reading.reblur import luminance
from ..reading.refiner import MAX_LEVELS

__all__ = ["STAGES", "stage_readings", "oracle", "StageTable", "format_stage_table"]

STAGES = tuple(f"L{i}" for i in range(MAX_LEVELS)) + ("fused", "near", "far", "final")


@torch.no_grad()
def stage_readings(reader: BlurReader, image_srgb: torch.Tensor) -> dict:
    """CoC (px, (B, 1, H, W) at the input resolution) of every stage in :data:`STAGES` for an
    sRGB batch (B, 3, H, W) in [0, 1]. A level the image is too small to have is left out."""
    cfg = reader.config
    h, w = image_srgb.shape[-2:]

    def up(m):
        return F.interpolate(m.float(), size=(h, w), mode="bilinear", align_corners=False)

    evidence = grid_features(reader, image_srgb)
    feats, cands, _ = evidence
    levels = read_levels(reader, luminance(image_srgb).to(next(reader.parameters()).dtype))
    out = {f"L{i}": up(c) for i, (c, _) in enumerate(levels[:MAX_LEVELS])}
    fused, _ = fuse_levels(
        [(c.float(), s.float()) for c, s in levels], feats.shape[-2:], cfg.level_switch_px, cfg.level_switch_width
    )
    out["fused"] = up(fused)
    out["near"], out["far"] = up(cands[:, :1]), up(cands[:, 1:2])
    out["final"] = read_defocus(reader, image_srgb, evidence).coc.float()
    return out


def oracle(readings: list, truth: torch.Tensor) -> torch.Tensor:
    """Per pixel, the reading (px) closest to ``truth`` (px; NaN where unknown) among ``readings``."""
    stack = torch.cat(readings, 1)
    i = (stack - torch.nan_to_num(truth, nan=0.0)).abs().argmin(1, keepdim=True)
    return stack.gather(1, i)


class StageTable:
    """One :class:`CocReading` per stage (and the two oracles), for every pixel and for edge pixels."""

    def __init__(self) -> None:
        names = [*STAGES, "oracle levels", "oracle all"]
        self.readings = {s: {n: CocReading() for n in names} for s in ("all", "edges")}

    def update(self, stages: dict, truth: torch.Tensor, edges: torch.Tensor | None = None) -> None:
        """``stages``: :func:`stage_readings`; ``truth``: true CoC (px), NaN where unknown;
        ``edges``: bool mask of the edge pixels (same shape), or None."""
        levels = [v for k, v in stages.items() if k.startswith("L")]
        all_maps = {
            **stages,
            "oracle levels": oracle(levels, truth),
            "oracle all": oracle(list(stages.values()), truth),
        }
        for name, coc in all_maps.items():
            self.readings["all"][name].update(coc, truth)
            if edges is not None:
                self.readings["edges"][name].update(coc, truth, edges)

    def result(self) -> dict:
        return {s: {n: r.result() for n, r in d.items() if r.n.sum()} for s, d in self.readings.items()}


def format_stage_table(result: dict) -> str:
    """Bias (% of the true CoC) per true-CoC bin and the MAE (px) of every stage."""
    lines = []
    for subset, stages in result.items():
        if not stages:
            continue
        first = next(iter(stages.values()))
        used = [k for k, v in first["bins"].items() if v["pixels"]]
        lines.append(f"-- {subset} pixels: bias (% of the true CoC) per true-CoC bin (px), MAE (px), slope")
        lines.append(f"  {'stage':14s}" + "".join(f"{k:>8s}" for k in used) + f"{'MAE':>8s}{'slope':>8s}")
        lines.append(f"  {'share':14s}" + "".join(f"{first['bins'][k]['share']:8.3f}" for k in used))
        for name, r in stages.items():
            cells = "".join(f"{r['bins'][k]['bias_pct']:+8.0f}" for k in used)
            lines.append(f"  {name:14s}{cells}{r['mae']:8.3f}{r['slope']:8.2f}")
    return "\n".join(lines)
