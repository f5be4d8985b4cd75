"""Training the blur reader on patches (:mod:`.patches`): CPU, one GPU, or DDP under torchrun.

``depth-defocus train-reader --data PATCHES --out RUN`` fits
:class:`depth_defocus_ros.reading.reader.BlurReader` with the
Laplace likelihood of the true CoC (px at the patch's level) on the central pixels of each
patch (the border lacks context). The last ``--val-shards`` shards are held out: every
``--val-every`` steps the run reports the validation MAE, the signed bias per true-CoC bin and the
share of pixels whose error is within the stated sigma, and keeps the best (lowest validation
NLL) reader.

Run folder: ``args.json``, ``last.pt`` (resumable: weights, optimizer, step, RNG), ``best.pt``
(a reader checkpoint that :class:`~.estimator.Estimator` loads), ``metrics.jsonl``,
``loss.png``. ``--resume`` continues from ``last.pt``; ``--init CKPT`` starts from another
reader's weights (a run's ``best.pt``, a candidate in ``models/candidates/`` or the shipped one).
DDP: each rank loads its own share of the training shards; gradients are averaged by
DistributedDataParallel (gloo on CPU, NCCL on GPU). AMP (fp16 autocast) on CUDA.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..argtypes import positive
from ..estimate.estimator import DEFAULT_LONG_SIDE
from ..model.checkpoint import build_reader, load_checkpoint, save_checkpoint
from ..reading.reader import BlurReader, ReaderConfig, laplace_nll
from ..reading.refiner import CANDIDATES
from .cocreading import CocReading
from .distributed import amp_enabled, dump_rank_weights, init_run, wrap_ddp
from .patches import load_patches, patch_shard_paths
from .train_args import args_dict

__all__ = ["add_reader_train_args", "run_reader_training", "ReaderTrainer"]

MARGIN = 6  # output pixels (half the patch's resolution) left out of the loss at each border


def add_reader_train_args(p: argparse.ArgumentParser) -> None:
    d = ReaderConfig()
    p.add_argument("--data", default=None, help="folder of patch shards (depth-defocus render-patches)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch-size", type=int, default=48)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--val-shards", type=int, default=8, help="the last N shards are validation data")
    p.add_argument("--val-every", type=int, default=1000)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and save) after this long")
    p.add_argument("--max-shards", type=int, default=None, help="train on at most N shards")
    p.add_argument("--init", default=None, help="start from this reader's weights (.pt)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/last.pt")
    p.add_argument("--channels", type=int, default=None, help=f"CNN width (default {d.channels}, or --init's)")
    p.add_argument("--dilations", default=None, help=f"residual layers' dilations (default {d.dilations})")
    p.add_argument(
        "--refine-data",
        action="append",
        default=None,
        help="train stage 2 (the refiner, depth_defocus_ros/reading/refiner.py) on these scene shard folders "
        "(depth-defocus render), the --init reader's level CNN frozen",
    )
    p.add_argument("--refine-channels", type=int, default=24, help="width of the stage-2 refiner")
    p.add_argument(
        "--refine-candidates",
        type=int,
        choices=CANDIDATES,
        default=CANDIDATES[0],
        help="readings the refiner blends: 2 (near and far spread) or 6 (+ every pyramid level's own reading)",
    )
    p.add_argument(
        "--spread-domain",
        choices=["px", "log"],
        default=None,
        help="stage 2: spread the readings as CoC px (weights: variance in px^2) or as log CoC (weights: "
        "relative variance) (default: --init's)",
    )
    p.add_argument(
        "--refine-balance",
        type=float,
        default=0.0,
        help="stage 2: weigh each true-CoC bin by its frequency in the scenes to the power -B "
        "(0: the scenes' own mix of blur sizes; 1: every bin alike)",
    )
    p.add_argument(
        "--calibration-scenes",
        type=int,
        default=64,
        help="at the end, fit best.pt's sigma scale on this many synthetic scenes (0: do not)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", choices=["auto", "on", "off"], default="auto", help="fp16 autocast (CUDA only)")
    add_side_train_args(p)


def add_side_train_args(p: argparse.ArgumentParser) -> None:
    """Stage 3 (the side of the focus plane, :mod:`.train_side`) options of ``train-reader``."""
    p.add_argument(
        "--side-data",
        action="append",
        default=None,
        help="train stage 3 (the side of the focus plane, depth_defocus_ros/reading/side.py) on these scene shard "
        "folders, the --init reader's level CNN and refiner frozen",
    )
    p.add_argument("--side-channels", type=int, default=24, help="width of the stage-3 side head")
    p.add_argument(
        "--side-calibration-scenes",
        type=positive("calibration scenes", int),
        default=128,
        help="stage 3: fit the side's temperature on this many fresh scenes of the default mix",
    )


def _augment(y: torch.Tensor, coc: torch.Tensor, gen: torch.Generator):
    """The same random flip / transpose of a batch of patches and their CoC maps."""
    k = int(torch.randint(8, (1,), generator=gen))
    if k & 1:
        y, coc = y.flip(-1), coc.flip(-1)
    if k & 2:
        y, coc = y.flip(-2), coc.flip(-2)
    if k & 4:
        y, coc = y.transpose(-1, -2), coc.transpose(-1, -2)
    return y, coc


class ReaderTrainer:
    """One training run of the reader (see module doc)."""

    def __init__(self, args):
        self.args = args
        self.world, self.rank, self.device = init_run(args.device)
        self.is_main = self.rank == 0
        self.out = Path(args.out)
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(args.seed)
        self.reader = self._build(args).to(self.device)
        params = [q for q in self.reader.parameters() if q.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
        self.amp = amp_enabled(args.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.step, self.best = 0, math.inf
        if args.resume and (self.out / "last.pt").is_file():
            self._load_resume(self.out / "last.pt")
        self.model = wrap_ddp(self.reader, self.device, self.world)
        self.train_data, self.val_data = self._data()

    def _build(self, args) -> BlurReader:
        init = load_checkpoint(args.init) if args.init else None
        cfg = ReaderConfig(**init["reader_config"]) if init else ReaderConfig()
        if args.channels is not None:
            cfg.channels = args.channels
        if args.dilations is not None:
            cfg.dilations = [int(v) for v in args.dilations.split(",")]
        reader = BlurReader(cfg)
        if reader.refiner is not None:  # stage 2 is trained on whole scenes (--refine-data), not on patches
            reader.refiner.requires_grad_(False)
        if init is not None:
            src = build_reader(init, args.init)
            if src.config.channels != cfg.channels or src.config.dilations != cfg.dilations:
                raise ValueError(f"--init {args.init} has another reader architecture; drop --channels/--dilations")
            reader.load_state_dict(src.state_dict())
            if self.is_main:
                print(f"initialised from {args.init}")
        return reader

    def _data(self):
        """This rank's training patches and (main rank) the validation patches, as tensors."""
        a = self.args
        paths = patch_shard_paths(a.data)
        if len(paths) <= a.val_shards:
            raise FileNotFoundError(
                f"{a.data} holds {len(paths)} patch shards; training needs more than --val-shards {a.val_shards}"
            )
        n_train = len(paths) - a.val_shards
        train_idx = list(range(n_train))[self.rank :: self.world][: a.max_shards]
        train = load_patches(a.data, shards=train_idx)
        val = load_patches(a.data, shards=list(range(n_train, len(paths)))) if self.is_main else None
        if self.is_main:
            print(f"{len(train['y'])} training patches ({len(train_idx)} shards) per rank, {len(val['y'])} validation")
        return _tensors(train), _tensors(val) if val is not None else None

    # ------------------------------------------------------------------ step
    def _lr(self) -> float:
        a = self.args
        if self.step < a.warmup:
            return a.lr * (self.step + 1) / a.warmup
        t = (self.step - a.warmup) / max(1, a.steps - a.warmup)
        return a.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))

    def _batch(self, gen: torch.Generator):
        y, coc, noise = self.train_data
        idx = torch.randint(len(y), (self.args.batch_size,), generator=gen)
        yb, cb = _augment(y[idx].float(), coc[idx].float(), gen)
        return yb.to(self.device), cb.to(self.device), noise[idx].to(self.device)

    def loss(self, y, coc, noise, model=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean Laplace NLL on the central output pixels; also (pred, sigma, target)."""
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            pred, sigma = (model or self.model)(y, noise)
        pred, sigma = pred.float(), sigma.float()
        target = F.avg_pool2d(coc, 2)  # the CoC of each output pixel (2x2 input pixels)
        m = MARGIN
        sl = (..., slice(m, -m), slice(m, -m))
        return laplace_nll(pred[sl], sigma[sl], target[sl]).mean(), pred[sl], sigma[sl], target[sl]

    def train_step(self, gen: torch.Generator) -> float:
        for group in self.opt.param_groups:
            group["lr"] = self._lr()
        y, coc, noise = self._batch(gen)
        loss = self.loss(y, coc, noise)[0]
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        torch.nn.utils.clip_grad_norm_(self.reader.parameters(), 5.0)
        self.scaler.step(self.opt)
        self.scaler.update()
        return float(loss)

    @torch.no_grad()
    def validate(self) -> dict:
        """NLL, MAE, signed bias per true-CoC bin, and the share of errors within sigma."""
        y, coc, noise = self.val_data
        reading, nll, within, n = CocReading(), 0.0, 0.0, 0
        self.reader.eval()
        for i in range(0, len(y), 256):
            b = (t[i : i + 256].float().to(self.device) for t in (y, coc, noise))
            loss, pred, sigma, target = self.loss(*b, model=self.reader)
            reading.update(pred, target)
            k = target.numel()
            nll += float(loss) * k
            within += float(((pred - target).abs() <= sigma).sum())
            n += k
        self.reader.train()
        r = reading.result()
        bins = {name: b["bias_pct"] for name, b in r["bins"].items() if b["pixels"]}
        return {"nll": nll / n, "mae": r["mae"], "slope": r["slope"], "within_sigma": within / n, "bias_pct": bins}

    # ------------------------------------------------------------------ checkpoints and loop
    def checkpoint_dict(self, metrics=None, training=True) -> dict:
        ck = {
            "kind": "reader",
            "reader_config": self.reader.config.to_dict(),
            "reader_state": self.reader.state_dict(),
            "process_long_side": DEFAULT_LONG_SIDE,
            "patch_config": _patch_config(self.args.data),
            "train_args": args_dict(self.args),
            "step": self.step,
            "metrics": metrics or {},
        }
        if training:
            ck.update(optimizer=self.opt.state_dict(), scaler=self.scaler.state_dict())
            ck.update(rng=torch.get_rng_state(), best=self.best)
        return ck

    def _load_resume(self, path) -> None:
        ck = load_checkpoint(path)
        self.reader.load_state_dict(ck["reader_state"])
        self.opt.load_state_dict(ck["optimizer"])
        self.scaler.load_state_dict(ck["scaler"])
        torch.set_rng_state(ck["rng"])
        self.step, self.best = int(ck["step"]), float(ck.get("best", math.inf))
        if self.is_main:
            print(f"resumed from {path} at step {self.step}")

    def _log(self, rec: dict) -> None:
        if self.is_main:
            with open(self.out / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(rec) + "\n")

    def _validate_and_save(self) -> None:
        if not self.is_main:
            return
        res = self.validate()
        self._log({"kind": "val", "step": self.step, **{f"val_{k}": v for k, v in res.items()}})
        from tqdm import tqdm

        bias = " ".join(f"{k}:{v:+.0f}%" for k, v in res["bias_pct"].items())
        tqdm.write(
            f"step {self.step}: val NLL {res['nll']:.3f} MAE {res['mae']:.3f}px slope {res['slope']:.3f} "
            f"within sigma {res['within_sigma']:.2f} | bias {bias}"
        )
        if res["nll"] < self.best:
            self.best = res["nll"]
            save_checkpoint(self.out / "best.pt", self.checkpoint_dict(res, training=False))
        save_checkpoint(self.out / "last.pt", self.checkpoint_dict(res, training=True))
        from ..viz import plot_training_curves

        plot_training_curves(self.out / "metrics.jsonl", self.out / "loss.png")

    def fit(self) -> int:
        from tqdm import tqdm

        a = self.args
        if self.is_main:
            (self.out / "args.json").write_text(json.dumps(args_dict(a), indent=2))
        gen = torch.Generator().manual_seed(a.seed * 7919 + self.step * 31 + self.rank)  # resumable
        t0, running = time.time(), 0.0
        bar = tqdm(total=a.steps, initial=self.step, desc="train-reader", disable=not self.is_main, unit="step")
        dump_rank_weights(self.reader, self.rank, "_init")
        while self.step < a.steps:
            running += self.train_step(gen)
            self.step += 1
            bar.update(1)
            if self.step % a.log_every == 0:
                rec = {"kind": "train", "step": self.step, "loss": running / a.log_every, "lr": self._lr()}
                rec["time_s"] = round(time.time() - t0, 1)
                bar.set_postfix(loss=f"{rec['loss']:.3f}")
                self._log(rec)
                running = 0.0
            done = self.step >= a.steps or bool(a.max_minutes and time.time() - t0 > 60 * a.max_minutes)
            if self.step % a.val_every == 0 or done:
                self._validate_and_save()
            if done:
                break
        bar.close()
        if self.world > 1:
            dist.barrier()
        dump_rank_weights(self.reader, self.rank, "")
        return self.step


def _tensors(p: dict) -> tuple:
    """(y (N, 1, P, P) float16, CoC (N, 1, P, P) float16 px, noise (N,) float32)."""
    return torch.from_numpy(p["y"])[:, None], torch.from_numpy(p["coc"])[:, None], torch.from_numpy(p["noise"])


def _patch_config(root) -> dict:
    man = Path(root) / "manifest.json"
    return json.loads(man.read_text()).get("config", {}) if man.is_file() else {}


def run_reader_training(args) -> int:
    if not args.data and not args.refine_data and not args.side_data:
        raise ValueError(
            "train-reader needs --data (patches: the level CNN), --refine-data (scenes: stage 2) "
            "or --side-data (scenes: stage 3, the side)"
        )
    if args.side_data:
        from .train_side import train_side

        return train_side(args)  # keeps the init's sigma calibration: the head was fitted on it
    if args.refine_data:
        from .train_refiner import train_refiner

        train_refiner(args)
        is_main = True
    else:
        trainer = ReaderTrainer(args)
        try:
            trainer.fit()
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()
        is_main = trainer.is_main
    best = Path(args.out) / "best.pt"
    if is_main and args.calibration_scenes > 0 and best.is_file():
        from .readercal import calibrate_checkpoint

        res = calibrate_checkpoint(best, args.calibration_scenes)
        print(
            f"calibrated {best}: sigma x {res['sigma_scale']:.3f} on {res['scenes']} synthetic scenes "
            f"(within one sigma: {res['within_sigma_before']:.2f} -> {res['within_sigma_after']:.2f}; "
            f"CoC MAE {res['coc_mae']:.3f} px)"
        )
    return 0
