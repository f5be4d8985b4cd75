"""Training the reader's stage 3 (:mod:`~depth_defocus_ros.reading.side`): the side of the focus
plane, on whole synthetic scenes, the level CNN and the refiner frozen.

``depth-defocus train-reader --init READER.pt --side-data SCENES... --out RUN`` computes the side
head's inputs (:func:`~depth_defocus_ros.reading.side.side_inputs`) of every scene once, then fits
the head with a cross-entropy on the reader's grid. Each grid cell's target is the share of its
pixels behind the focus plane, weighted by what a wrong side costs there
(:func:`~depth_defocus_ros.reading.side.side_cost`): near the focus plane both sides give the same
depth and the side does not matter. The last tenth of the scenes validates; the best head (lowest
validation loss) is kept, and its temperature is fitted (:func:`fit_temperature`) on fresh scenes
of the default scene mix (``--side-calibration-scenes``, :func:`calibration_batches`), on the
probability an estimator states (the head's, combined with the lens rule), so that it is a
calibrated one. ``RUN/best.pt`` is one
reader checkpoint: the init's level CNN and refiner with this head (an init that has a head of the
same width is continued from, not replaced). Whether the estimator uses the
head is decided on the held-out sets (``scripts/side_check.py``), not here.

The sigma calibration of the init is kept (the head was fitted on those sigmas).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..estimate.depthmap import side_probability
from ..model.checkpoint import save_checkpoint
from ..reading.reader import ReaderConfig, grid_features, refine, to_input
from ..reading.side import MIN_COST, SideHead, side_cost, side_inputs
from ..synth.scenes import SceneConfig, SceneGenerator
from .datasets import ShardDataset
from .readercal import CALIBRATION_SEED
from .train_refiner import frozen_reader_stage, set_cosine_lr

__all__ = [
    "side_scene_data",
    "calibration_batches",
    "fit_temperature",
    "best_temperature",
    "side_reliability",
    "train_side",
]

CONFIDENCE_BINS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)  # stated P(the chosen side), for reliability


def cell_targets(batch: dict, grid: int, size: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """(behind share, weight) per grid cell (B, 1, h, w): the cost-weighted share of the cell's
    valid pixels behind the focus plane, and the cell's mean cost of a wrong side (0 without
    ground truth)."""
    h, w = size
    cost = side_cost(batch["depth"], batch["valid"], batch["lens"], batch["fx"])
    behind = ((batch["signed_defocus"] > 0) & batch["valid"]).float()
    pad = (0, w * grid - cost.shape[-1], 0, h * grid - cost.shape[-2])
    weight = F.avg_pool2d(F.pad(cost, pad), grid)
    share = F.avg_pool2d(F.pad(cost * behind, pad), grid) / weight.clamp_min(1e-9)
    return share.clamp(0, 1), weight


@torch.no_grad()
def _side_sample(reader, b: dict, device) -> tuple:
    """(inputs (B, SIDE_FEATURES, h, w) float16, behind share, weight) of one scene batch on the
    reader's grid (CPU tensors)."""
    b = {k: v.to(device) for k, v in b.items()}
    evidence = grid_features(reader, b["image"])
    coc, sigma, _ = refine(reader, evidence)
    guide = F.interpolate(b["image"], size=coc.shape[-2:], mode="area")
    x = side_inputs(evidence[0], coc, sigma, guide, b["lens"], b["fx"])
    target, weight = cell_targets(b, reader.config.grid, coc.shape[-2:])
    return x.half().cpu(), target.cpu(), weight.cpu()


def side_scene_data(reader, roots, device, batch: int = 8) -> list:
    """:func:`_side_sample` of every scene in the shard folders ``roots``."""
    from tqdm import tqdm

    out = []
    for root in roots:
        for b in tqdm(ShardDataset(root, batch, loop=False, augment=False), desc=f"side inputs {Path(root).name}"):
            out.append(_side_sample(reader, b, device))
    return out


@torch.no_grad()
def calibration_batches(reader, head: SideHead, scenes: int, device, seed: int = CALIBRATION_SEED, batch: int = 8):
    """What the temperature is fitted on: ``scenes`` fresh scenes of the default
    :class:`SceneConfig` (the held-out sets' generator, seeded apart from them; the training scenes
    may draw another mix). Per batch: the head's grid logits and, at the input resolution, the
    final CoC and sigma (px), lens, fx, the true side and the pixels where the side matters
    (a wrong side costs more than :data:`~depth_defocus_ros.reading.side.MIN_COST`)."""
    gen = SceneGenerator(SceneConfig(), seed=seed)
    out = []
    for start in range(0, scenes, batch):
        b = {k: v.to(device) for k, v in gen.batch(min(batch, scenes - start)).items()}
        evidence = grid_features(reader, b["image"])
        coc, sigma, _ = refine(reader, evidence)
        guide = F.interpolate(b["image"], size=coc.shape[-2:], mode="area")
        logit = head(side_inputs(evidence[0], coc, sigma, guide, b["lens"], b["fx"])).float()
        h, w = b["image"].shape[-2:]
        maps = to_input(torch.cat([coc, sigma], 1), reader.config.grid, h, w)
        mask = b["valid"] & (side_cost(b["depth"], b["valid"], b["lens"], b["fx"]) > MIN_COST)
        out.append(
            {
                "logit": logit,
                "coc": maps[:, :1],
                "sigma": maps[:, 1:2],
                "lens": b["lens"],
                "fx": b["fx"],
                "behind": b["signed_defocus"] > 0,
                "mask": mask,
            }
        )
    return out


def stated_side(batch: dict, grid: int, temperature: float) -> torch.Tensor:
    """The P(behind) an estimator states for one :func:`calibration_batches` entry at this
    temperature: the head's probability, upsampled, combined with the lens rule."""
    h, w = batch["coc"].shape[-2:]
    prior = to_input(torch.sigmoid(batch["logit"] / temperature), grid, h, w)
    return side_probability(batch["coc"], batch["sigma"], batch["lens"], batch["fx"], "auto", prior)


def best_temperature(loss_at, lo: float = 0.25, hi: float = 8.0, n: int = 61) -> float:
    """The temperature among ``n`` log-spaced values in [lo, hi] with the lowest ``loss_at(T)``."""
    grid = torch.exp(torch.linspace(math.log(lo), math.log(hi), n)).tolist()
    return min(grid, key=loss_at)


@torch.no_grad()
def fit_temperature(batches: list, grid: int) -> float:
    """The temperature whose stated side (:func:`stated_side`) has the lowest cross-entropy over
    the pixels where the side matters: the probability the check judges is the one fitted."""

    def loss_at(t: float) -> float:
        total = 0.0
        for b in batches:
            p = stated_side(b, grid, t)[b["mask"]].clamp(1e-6, 1 - 1e-6)
            total += float(F.binary_cross_entropy(p, b["behind"][b["mask"]].float(), reduction="sum"))
        return total

    return best_temperature(loss_at)


@torch.no_grad()
def calibration_reliability(batches: list, grid: int, temperature: float) -> dict:
    """:func:`side_reliability` of the stated side on :func:`calibration_batches` (pixels where the
    side matters, each counting once)."""
    ps = [stated_side(b, grid, temperature)[b["mask"]] for b in batches]
    truth = [b["behind"][b["mask"]] for b in batches]
    p = torch.cat(ps)
    return side_reliability(p, torch.cat(truth), torch.ones_like(p))


def _weighted_bce(logit, target, weight) -> torch.Tensor:
    bce = F.binary_cross_entropy_with_logits(logit, target, reduction="none")
    return (weight * bce).sum() / weight.sum().clamp_min(1e-9)


def side_reliability(p_behind, behind, weight) -> dict:
    """How well stated side probabilities keep their promise.

    Args:
        p_behind: (N,) stated P(behind); behind: (N,) bool truth; weight: (N,) what each sample
            counts (e.g. the cost of a wrong side; 1 for plain pixels).
    Returns:
        ``accuracy`` (weighted share of samples whose more probable side is right), ``ece``
        (weighted mean |stated - measured| over the bins of the stated probability of the chosen
        side, :data:`CONFIDENCE_BINS`), and per bin ``[lo, hi, weight share, stated, measured]``.
    """
    p, t, w = p_behind.double(), behind.bool(), weight.double()
    conf = torch.maximum(p, 1 - p)
    right = ((p >= 0.5) == t).double()
    total = float(w.sum()) or 1.0
    edges = torch.tensor(CONFIDENCE_BINS, dtype=torch.float64)
    idx = torch.bucketize(conf, edges[1:-1], right=True)
    bins, ece = [], 0.0
    for i in range(len(CONFIDENCE_BINS) - 1):
        m = idx == i
        wb = float(w[m].sum())
        if wb <= 0:
            continue
        stated, measured = float((w[m] * conf[m]).sum()) / wb, float((w[m] * right[m]).sum()) / wb
        ece += wb / total * abs(stated - measured)
        bins.append([CONFIDENCE_BINS[i], CONFIDENCE_BINS[i + 1], wb / total, stated, measured])
    return {"accuracy": float((w * right).sum()) / total, "ece": ece, "bins": bins}


@torch.no_grad()
def _validate(head: SideHead, val: list, device) -> dict:
    loss = w_sum = 0.0
    ps, ts, ws = [], [], []
    for x, t, w in val:
        x, t, w = x.to(device).float(), t.to(device), w.to(device)
        logit = head(x)
        loss += float(_weighted_bce(logit, t, w) * w.sum())
        w_sum += float(w.sum())
        m = w > 0
        p = torch.sigmoid(logit.float() / head.temperature)
        ps.append(p[m].cpu())
        ts.append((t[m] >= 0.5).cpu())
        ws.append(w[m].cpu())
    rel = side_reliability(torch.cat(ps), torch.cat(ts), torch.cat(ws))
    return {"bce": loss / max(w_sum, 1e-9), "accuracy": rel["accuracy"], "ece": rel["ece"]}


def _fit(head: SideHead, train: list, val: list, args, device, out: Path) -> None:
    """Cosine-scheduled AdamW on the cost-weighted cross-entropy; the head with the lowest
    validation loss goes to ``out/side_best_state.pt``."""
    opt = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    gen = torch.Generator().manual_seed(args.seed)
    best, t0, log = math.inf, time.time(), (out / "metrics.jsonl").open("a")
    for step in range(1, args.steps + 1):
        set_cosine_lr(opt, args.lr, step, args.steps)
        x, t, w = (v.to(device) for v in train[int(torch.randint(len(train), (1,), generator=gen))])
        if int(torch.randint(2, (1,), generator=gen)):  # left-right only: up and down are cues
            x, t, w = x.flip(-1), t.flip(-1), w.flip(-1)
        loss = _weighted_bce(head(x.float()), t, w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % args.val_every == 0 or step == args.steps:
            head.eval()
            res = _validate(head, val, device)
            head.train()
            log.write(json.dumps({"kind": "val", "step": step, "time_s": round(time.time() - t0, 1), **res}) + "\n")
            log.flush()
            print(
                f"side step {step}: val cross-entropy {res['bce']:.4f}, side right {res['accuracy']:.3f} "
                f"(cost-weighted), ECE {res['ece']:.3f}",
                flush=True,
            )
            if res["bce"] < best:
                best = res["bce"]
                torch.save(head.state_dict(), out / "side_best_state.pt")
    log.close()


def train_side(args) -> int:
    """The ``--side-data`` path of ``train-reader`` (see module doc)."""
    device, out, init, reader = frozen_reader_stage(args, "--side-data", "stage 3")
    previous, reader.side = reader.side, None
    data = side_scene_data(reader, args.side_data, device)
    n_val = max(1, len(data) // 10)
    train, val = data[:-n_val], data[-n_val:]
    torch.manual_seed(args.seed)
    head = SideHead(args.side_channels).to(device)
    if previous is not None and reader.config.side_channels == args.side_channels:
        head.load_state_dict(previous.state_dict())  # training continues from the init's head
        head.temperature.fill_(1.0)
        print(f"side head: continuing from {args.init}'s")
    _fit(head, train, val, args, device, out)
    head.load_state_dict(torch.load(out / "side_best_state.pt", weights_only=True))
    head.eval()
    res = _validate(head, val, device)
    cal = calibration_batches(reader, head, args.side_calibration_scenes, device)
    head.temperature.fill_(fit_temperature(cal, reader.config.grid))
    rel = calibration_reliability(cal, reader.config.grid, float(head.temperature))
    res.update(calibration_scenes=args.side_calibration_scenes, calibration_ece=rel["ece"])
    res["calibration_side_right"] = rel["accuracy"]
    print(
        f"side head: temperature {float(head.temperature):.3f} fitted on {args.side_calibration_scenes} fresh "
        f"scenes; there the stated side's ECE is {rel['ece']:.3f}, the more probable side right "
        f"{rel['accuracy']:.3f}"
    )
    reader.side = head
    cfg = ReaderConfig(**{**reader.config.to_dict(), "side_channels": args.side_channels})
    reader.config = cfg
    ck = {k: v for k, v in init.items() if k not in ("format", "format_version", "side_check")}
    ck.update(reader_config=cfg.to_dict(), reader_state=reader.state_dict())
    ck["side_data"] = [str(p) for p in args.side_data]
    ck["side_args"] = {"steps": args.steps, "lr": args.lr, "channels": args.side_channels, "seed": args.seed}
    ck["side_validation"] = {**res, "temperature": float(head.temperature)}
    save_checkpoint(out / "best.pt", ck)
    return 0
