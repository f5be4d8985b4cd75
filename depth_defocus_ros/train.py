"""Training: synthetic stream and/or on-disk shards; CPU, one GPU, or DDP under torchrun.

Run folder (``--out``) holds:

* ``args.json``      the resolved options of the run
* ``last.pt``        training checkpoint (weights, optimizer, scaler, step, RNG), written atomically
* ``best.pt``        the checkpoint with the best validation score
* ``metrics.jsonl``  one JSON line per log / validation event
* ``loss.png``       training loss curves; ``samples.png``: validation predictions

``--resume`` continues from ``last.pt`` with the same optimizer state, step and RNG state, and
re-seeds the data stream by the step, so a long training can run as a series of short runs
(``--max-minutes``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist

from .checkpoint import DEFAULT_NORMALIZATION, build_model, load_checkpoint, save_checkpoint
from .data import ShardDataset
from .losses import LossWeights, multitask_loss
from .metrics import MetricAccumulator
from .model import DepthDefocusNet, ModelConfig
from .scenes import SceneConfig, SceneGenerator, SceneStream

__all__ = ["add_train_args", "run_training", "Trainer"]


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", action="append", default=None,
                   help="'synthetic' (the on-the-fly stream) or a dataset folder of shards; "
                        "repeat to mix sources (default: synthetic)")  # fmt: skip
    p.add_argument("--mix", type=float, default=0.5, help="share of synthetic batches when mixing")
    p.add_argument("--split", default=None, help="split of on-disk datasets to train on")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch-size", type=int, default=8, help="per process")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--amp", choices=["auto", "on", "off"], default="auto",
                   help="mixed precision (fp16 autocast); auto = on for CUDA")  # fmt: skip
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers for the stream")
    p.add_argument("--heads", choices=["both", "depth", "defocus"], default="both")
    p.add_argument("--channels", default="16,24,40,64,96", help="encoder widths, 1/2..1/32")
    p.add_argument("--decoder-channels", default="64,40,24,16,16")
    p.add_argument("--blocks", type=int, default=1, help="residual blocks per encoder stage")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--height", type=int, default=192, help="synthetic render height (px)")
    p.add_argument("--width", type=int, default=256, help="synthetic render width (px)")
    p.add_argument("--process-long-side", type=int, default=512,
                   help="processing resolution stored in the checkpoint: predict resizes inputs to this "
                        "long side (px); scenes are drawn with fx up to 3x the render's, so 2x works")
    p.add_argument("--structured-fraction", type=float, default=0.6)
    p.add_argument("--gather-blur", action="store_true", help="ablation: occlusion-unaware blur")
    p.add_argument("--photo-folder", default=None, help="extra photographs for textures")
    p.add_argument("--init", default=None, help="start from this checkpoint's weights (fine-tune)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--val-scenes", type=int, default=32)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--crop", default=None, help="train on random HxW crops, e.g. 128x128 (px)")
    p.add_argument("--reuse", type=int, default=1, help="steps per rendered synthetic batch")
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop (and save) after this long")


def _dist_info():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def _args_dict(args) -> dict:
    """The run's options as plain JSON-able values (drops the CLI's handler function)."""
    return {k: v for k, v in vars(args).items() if not callable(v) and v is not None}


def _ints(s: str) -> list:
    return [int(v) for v in s.split(",")]


class Trainer:
    """One training run; methods named after the stages of a step (monodepth2 style)."""

    def __init__(self, args):
        self.args = args
        self.world, self.rank, local = _dist_info()
        if args.device == "auto":
            dev = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
        else:
            dev = args.device if args.device != "cuda" else f"cuda:{local}"
        self.device = torch.device(dev)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.out = Path(args.out)
        self.is_main = self.rank == 0
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(args.seed)
        self.scene_cfg = SceneConfig(
            height=args.height, width=args.width, structured_fraction=args.structured_fraction,
            occlusion_aware=not args.gather_blur, photo_folder=args.photo_folder,
        )  # fmt: skip
        self.model_cfg = ModelConfig(
            channels=_ints(args.channels), decoder_channels=_ints(args.decoder_channels),
            blocks_per_stage=args.blocks, dropout=args.dropout, heads=args.heads,
        )  # fmt: skip
        self.model = DepthDefocusNet(self.model_cfg).to(self.device)
        if args.init:
            init = load_checkpoint(args.init)
            src = build_model(init, args.init)
            missing = self.model.load_state_dict(src.state_dict(), strict=False)
            if self.is_main:
                print(f"initialised from {args.init} ({len(missing.missing_keys)} new tensors)")
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
        use_amp = args.amp == "on" or (args.amp == "auto" and self.device.type == "cuda")
        self.amp = use_amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.weights = LossWeights()
        self.step = 0
        self.best = math.inf
        if args.resume and (self.out / "last.pt").is_file():
            self._load_resume(self.out / "last.pt")
        self.ddp = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.norm_mean = torch.tensor(DEFAULT_NORMALIZATION["mean"], device=self.device).view(1, 3, 1, 1)
        self.norm_std = torch.tensor(DEFAULT_NORMALIZATION["std"], device=self.device).view(1, 3, 1, 1)

    # ------------------------------------------------------------------ data
    def _sources(self):
        srcs = self.args.data or ["synthetic"]
        seed = self.args.seed + 7919 * self.step  # re-seeded by step: resumable
        its = []
        for s in srcs:
            if s == "synthetic":
                ds = SceneStream(self.scene_cfg, self.args.batch_size, seed=seed, rank=self.rank,
                                 reuse=self.args.reuse, crop=self._crop())
                loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=self.args.workers)
                its.append(iter(loader))
            else:
                ds = ShardDataset(s, self.args.batch_size, self.rank, self.world, split=self.args.split,
                                  seed=seed, crop=self._crop())
                its.append(iter(ds))
        return srcs, its

    def _crop(self):
        if not self.args.crop:
            return None
        h, w = (int(v) for v in self.args.crop.lower().split("x"))
        return (h, w)

    def _next_batch(self, srcs, its, gen):
        if len(its) == 1:
            return next(its[0])
        synth = [i for i, s in enumerate(srcs) if s == "synthetic"]
        real = [i for i, s in enumerate(srcs) if s != "synthetic"]
        if synth and real:
            pool = synth if float(torch.rand((), generator=gen)) < self.args.mix else real
        else:
            pool = list(range(len(its)))
        return next(its[pool[int(torch.randint(len(pool), (1,), generator=gen))]])

    def _to_device(self, batch):
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    # ------------------------------------------------------------------ step
    def _lr(self):
        a = self.args
        if self.step < a.warmup:
            return a.lr * (self.step + 1) / a.warmup
        t = (self.step - a.warmup) / max(1, a.steps - a.warmup)
        return a.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))

    def forward(self, batch, model=None):
        x = (batch["image"] - self.norm_mean) / self.norm_std
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            pred = (model or self.ddp)(x, batch["lens"], batch["fx"])
        return {k: v.float() for k, v in pred.items()}

    def train_step(self, batch):
        for g in self.opt.param_groups:
            g["lr"] = self._lr()
        self.ddp.train()
        pred = self.forward(batch)
        loss, terms = multitask_loss(pred, batch, self.weights, self.model_cfg.heads)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.scaler.step(self.opt)
        self.scaler.update()
        terms["loss"] = float(loss.detach())
        return terms

    # ------------------------------------------------------------------ validation
    def _val_batches(self):
        if not hasattr(self, "_val"):
            cfg = SceneConfig(**{**self.scene_cfg.to_dict(), "occlusion_aware": True})
            gen = SceneGenerator(cfg, seed=987654)
            n, bs = self.args.val_scenes, 8
            self._val = [gen.batch(min(bs, n - i)) for i in range(0, n, bs)]
        return self._val

    @torch.no_grad()
    def validate(self) -> dict:
        self.model.eval()
        acc = MetricAccumulator()
        last = None
        for b in self._val_batches():
            b = self._to_device(b)
            pred = self.forward(b, self.model)
            acc.update(pred["depth"], pred["coc"], b["depth"], b["defocus"], b["lens"][:, 2], b["valid"])
            last = (b, pred)
        res = acc.result()
        if self.is_main and last is not None:
            from .viz import save_prediction_grid

            save_prediction_grid(self.out / "samples.png", last[0], last[1])
        return res

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_dict(self, metrics=None, training=True) -> dict:
        cfg = self.scene_cfg
        ck = {
            "model_config": self.model_cfg.to_dict(),
            "state_dict": self.model.state_dict(),
            "normalization": DEFAULT_NORMALIZATION,
            "process_long_side": self.args.process_long_side,
            "process_multiple": 32,
            "max_depth_m": 100.0,
            "lens_ranges": {"focal_length_mm": list(cfg.f_mm_range), "f_number": list(cfg.n_range),
                            "focus_distance_m": list(cfg.focus_range_m)},  # fmt: skip
            "scene_config": {k: v for k, v in cfg.to_dict().items() if v is not None},
            "train_args": _args_dict(self.args),
            "step": self.step,
            "metrics": metrics or {},
        }
        if training:
            ck["optimizer"] = self.opt.state_dict()
            ck["scaler"] = self.scaler.state_dict()
            ck["rng"] = torch.get_rng_state()
            ck["best"] = self.best
        return ck

    def _load_resume(self, path):
        ck = load_checkpoint(path)
        self.model.load_state_dict(ck["state_dict"])
        self.opt.load_state_dict(ck["optimizer"])
        self.scaler.load_state_dict(ck["scaler"])
        torch.set_rng_state(ck["rng"])
        self.step = int(ck["step"])
        self.best = float(ck.get("best", math.inf))
        if self.is_main:
            print(f"resumed from {path} at step {self.step}")

    def _log(self, rec: dict):
        if self.is_main:
            with open(self.out / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(rec) + "\n")

    # ------------------------------------------------------------------ loop
    def fit(self):
        from tqdm import tqdm

        a = self.args
        if self.is_main:
            (self.out / "args.json").write_text(json.dumps(_args_dict(a), indent=2))
        srcs, its = self._sources()
        gen = torch.Generator().manual_seed(a.seed + self.step)
        t0 = time.time()
        bar = tqdm(total=a.steps, initial=self.step, desc="train", disable=not self.is_main, unit="step")
        self._dump_rank_weights("_init")
        running = {}
        while self.step < a.steps:
            batch = self._to_device(self._next_batch(srcs, its, gen))
            terms = self.train_step(batch)
            self.step += 1
            for k, v in terms.items():
                running[k] = running.get(k, 0.0) + v
            bar.update(1)
            if self.step % a.log_every == 0:
                rec = {k: v / a.log_every for k, v in running.items()}
                running = {}
                rec.update(step=self.step, lr=self._lr(), time_s=round(time.time() - t0, 1), kind="train")
                bar.set_postfix(loss=f"{rec['loss']:.3f}")
                self._log(rec)
            done = self.step >= a.steps or (a.max_minutes and time.time() - t0 > 60 * a.max_minutes)
            if self.step % a.val_every == 0 or done:
                self._validate_and_save()
            if done:
                break
        bar.close()
        if self.world > 1:
            dist.barrier()
        self._dump_rank_weights("")
        return self.step

    def _dump_rank_weights(self, tag: str) -> None:
        """For tests of DDP: every rank writes its weights to $DEPTH_DEFOCUS_DUMP_RANK_WEIGHTS."""
        folder = os.environ.get("DEPTH_DEFOCUS_DUMP_RANK_WEIGHTS")
        if folder:
            torch.save(self.model.state_dict(), Path(folder) / f"rank{self.rank}{tag}.pt")

    def _validate_and_save(self):
        if not self.is_main:
            return
        res = self.validate()
        o = res["overall"]
        score = o["abs_rel"] + o["coc_mae"] * 0.1 + (1 - o.get("side_acc", 0.0))
        self._log({"kind": "val", "step": self.step, **{f"val_{k}": v for k, v in o.items()}})
        tqdm_write(f"step {self.step}: val AbsRel {o['abs_rel']:.3f} d1 {o['delta1']:.3f} "
                   f"CoC MAE {o['coc_mae']:.3f}px side {o.get('side_acc', float('nan')):.3f}")  # fmt: skip
        if score < self.best:
            self.best = score
            save_checkpoint(self.out / "best.pt", self.checkpoint_dict(o, training=False))
        save_checkpoint(self.out / "last.pt", self.checkpoint_dict(o, training=True))
        from .viz import plot_training_curves

        plot_training_curves(self.out / "metrics.jsonl", self.out / "loss.png")


def tqdm_write(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(msg)


def run_training(args) -> int:
    trainer = Trainer(args)
    try:
        trainer.fit()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0

