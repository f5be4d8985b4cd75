"""Training the reader's stage 2 (:mod:`.refiner`) on whole synthetic scenes, the level CNN frozen.

``depth-defocus train-reader --init READER.pt --refine-data SCENES... --out RUN`` computes the
reader's grid features (:func:`depth_defocus_ros.reading.reader.grid_features`) of every scene once (the level CNN does
not change), then fits the refiner with the Laplace likelihood of the true CoC averaged over each
grid cell. The last tenth of the scenes validates; the best refiner (lowest validation NLL) goes
into ``RUN/best.pt`` together with the frozen level CNN: one reader checkpoint. Scene folders are
shards from ``depth-defocus render`` (or any dataset with depth, lens and fx).

The scenes' mix of blur sizes is a prior, and a likelihood fit learns it: where half the pixels
are sharp, a refiner learns to read any doubtful blur small, which compresses large blur on images
with another mix (a photograph). ``--refine-balance B`` weighs each grid cell by
``frequency(true-CoC bin) ** -B`` (the bins of :data:`.cocreading.READ_BINS_PX`, counted over
the training scenes, weights averaging 1): 0 fits the scenes' own mix, 1 gives every bin the same
weight (a flat prior over the bins).

Minutes of CPU: the features are a few MB per hundred scenes, and the refiner is small. One
process (no DDP: the job is too small to share); CUDA when present.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..estimate.estimator import select_device
from ..model.checkpoint import build_reader, load_checkpoint, save_checkpoint
from ..reading.reader import BlurReader, ReaderConfig, grid_features, laplace_nll
from ..reading.refiner import Refiner
from .cocreading import READ_BINS_PX
from .datasets import ShardDataset

__all__ = ["scene_features", "train_refiner", "frozen_reader_stage", "set_cosine_lr"]


@torch.no_grad()
def scene_features(reader: BlurReader, roots, device, batch: int = 8) -> list:
    """[(features (B, F, h, w) float16, candidate readings (B, K, h, w) px, target CoC (B, 1, h, w)
    px, valid share (B, 1, h, w))] of every scene in the shard folders ``roots``, on the reader's
    grid (CPU tensors)."""
    from tqdm import tqdm

    g = reader.config.grid
    out = []
    for root in roots:
        for b in tqdm(ShardDataset(root, batch, loop=False, augment=False), desc=f"features {Path(root).name}"):
            image, coc, valid = (b[k].to(device) for k in ("image", "defocus", "valid"))
            feats, cands, _ = grid_features(reader, image)
            h, w = feats.shape[-2:]
            pad = (0, w * g - coc.shape[-1], 0, h * g - coc.shape[-2])
            v = F.pad(valid.float(), pad)
            share = F.avg_pool2d(v, g)
            target = F.avg_pool2d(F.pad(coc * valid, pad), g) / share.clamp_min(1e-6)
            out.append((feats.half().cpu(), cands.cpu(), target.cpu(), share.cpu()))
    return out


def bin_weights(data: list, balance: float) -> torch.Tensor:
    """Weight per true-CoC bin (:data:`READ_BINS_PX`): ``frequency ** -balance`` over the cells of
    ``data`` (:func:`scene_features`' tuples) that count, scaled so that the cells' mean weight is 1.
    Bins no cell falls in get weight 0."""
    edges = torch.tensor(READ_BINS_PX[1:-1])
    counts = torch.zeros(len(READ_BINS_PX) - 1, dtype=torch.float64)
    for _, _, target, share in data:
        counts += torch.bincount(torch.bucketize(target[share > 0.5], edges, right=True), minlength=len(counts))
    freq = counts / counts.sum().clamp_min(1.0)
    w = torch.where(counts > 0, freq.clamp_min(1e-12) ** -balance, torch.zeros_like(freq))
    return (w / (w * freq).sum()).float()


def _cell_nll(refiner, feats, cands, target, share, weights=None):
    """Laplace NLL of every cell with ground truth, each cell's weight (its true-CoC bin's, or 1),
    the readings and the mask."""
    coc, sigma = refiner(feats.float(), cands)
    m = share > 0.5
    nll = laplace_nll(coc[m], sigma[m], target[m])
    if weights is None:
        return nll, torch.ones_like(nll), coc, sigma, m
    edges = torch.tensor(READ_BINS_PX[1:-1], device=nll.device)
    return nll, weights.to(nll.device)[torch.bucketize(target[m], edges, right=True)], coc, sigma, m


def _loss(refiner, batch, weights=None) -> torch.Tensor:
    nll, w = _cell_nll(refiner, *batch, weights=weights)[:2]
    return (w * nll).sum() / w.sum().clamp_min(1e-6)


def set_cosine_lr(opt, base_lr: float, step: int, steps: int) -> None:
    """Cosine decay from ``base_lr`` at step 0 to 0 at ``steps`` (the stages on a frozen reader)."""
    for group in opt.param_groups:
        group["lr"] = base_lr * 0.5 * (1 + math.cos(math.pi * step / steps))


def frozen_reader_stage(args, flag: str, stage: str) -> tuple:
    """(device, run folder, init checkpoint dict, its reader in eval mode) for a stage trained on a
    frozen reader (``--init``, required: ``flag`` names the option that asked for ``stage``)."""
    if not args.init:
        raise ValueError(f"{flag} trains {stage} on a trained reader: give it with --init")
    device = select_device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    init = load_checkpoint(args.init)
    return device, out, init, build_reader(init, args.init).to(device).eval()


def train_refiner(args) -> int:
    """The ``--refine-data`` path of ``train-reader`` (see module doc)."""
    device, out, init, reader = frozen_reader_stage(args, "--refine-data", "stage 2")
    cfg = ReaderConfig(
        **{
            **reader.config.to_dict(),
            "refine_channels": args.refine_channels,
            "refine_candidates": args.refine_candidates,
            "sigma_scale": 1.0,
            **({"spread_domain": args.spread_domain} if args.spread_domain else {}),
        }
    )
    reader.config = cfg
    reader.refiner = None
    data = scene_features(reader, args.refine_data, device)
    n_val = max(1, len(data) // 10)
    train, val = data[:-n_val], data[-n_val:]
    weights = bin_weights(train, args.refine_balance) if args.refine_balance else None
    if weights is not None:
        print("true-CoC bin weights: " + " ".join(f"{w:.2f}" for w in weights.tolist()))
    torch.manual_seed(args.seed)
    refiner = Refiner(args.refine_channels, candidates=args.refine_candidates).to(device)
    opt = torch.optim.AdamW(refiner.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    gen = torch.Generator().manual_seed(args.seed)
    best, t0, log = math.inf, time.time(), (out / "metrics.jsonl").open("a")
    for step in range(1, args.steps + 1):
        set_cosine_lr(opt, args.lr, step, args.steps)
        batch = [t.to(device) for t in train[int(torch.randint(len(train), (1,), generator=gen))]]
        if int(torch.randint(2, (1,), generator=gen)):
            batch = [t.flip(-1) for t in batch]
        loss = _loss(refiner, batch, weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % args.val_every == 0 or step == args.steps:
            res = _validate(refiner, val, device, weights)
            log.write(json.dumps({"kind": "val", "step": step, "time_s": round(time.time() - t0, 1), **res}) + "\n")
            log.flush()
            print(
                f"refiner step {step}: val NLL {res['nll']:.3f} (weighted {res['nll_weighted']:.3f}) "
                f"MAE {res['mae']:.3f} px, within sigma {res['within']:.2f}"
            )
            if res["nll_weighted"] < best:
                best = res["nll_weighted"]
                _save_best(out / "best.pt", init, reader, refiner, cfg, step, res, args)
    log.close()
    return 0


def _save_best(path, init: dict, reader, refiner, cfg: ReaderConfig, step: int, res: dict, args) -> None:
    """One reader checkpoint: the init's frozen level CNN with this refiner, its config and record."""
    reader.refiner = refiner
    ck = {k: v for k, v in init.items() if k not in ("format", "format_version")}
    ck.update(reader_config=cfg.to_dict(), reader_state=reader.state_dict(), step=step, metrics=res)
    ck["refine_data"] = [str(p) for p in args.refine_data]
    ck["refine_args"] = {
        "steps": args.steps,
        "lr": args.lr,
        "channels": args.refine_channels,
        "candidates": args.refine_candidates,
        "balance": args.refine_balance,
        "seed": args.seed,
    }
    save_checkpoint(path, ck)
    reader.refiner = None


@torch.no_grad()
def _validate(refiner, val, device, weights=None) -> dict:
    """NLL (plain, and weighted by true-CoC bin: the training objective), MAE (px) and the share
    of errors within sigma over the validation scenes."""
    nll = nll_w = w_sum = mae = within = n = 0.0
    for batch in val:
        batch = [t.to(device) for t in batch]
        cell, w, coc, sigma, m = _cell_nll(refiner, *batch, weights=weights)
        err = (coc[m] - batch[2][m]).abs()
        nll, nll_w, w_sum = nll + float(cell.sum()), nll_w + float((w * cell).sum()), w_sum + float(w.sum())
        mae, within, n = mae + float(err.sum()), within + float((err <= sigma[m]).sum()), n + cell.numel()
    return {"nll": nll / n, "nll_weighted": nll_w / w_sum, "mae": mae / n, "within": within / n}
