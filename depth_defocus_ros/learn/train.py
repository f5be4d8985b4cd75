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

Real data: ``--data DIR --split train`` trains on a converted dataset (``depth-defocus
bag2dataset``, DATASET.md), alone or mixed with ``--data synthetic``; ``--init CKPT`` fine-tunes
(the architecture and processing resolution follow the checkpoint unless given);
``--val-data DIR --val-split val`` validates (and picks ``best.pt``) on a dataset split instead of
synthetic scenes. ``--domain-data DIR`` adds domain adaptation with unlabelled frames
(:mod:`.domain`): a gradient-reversal domain classifier on the encoder's features, weighted by
``--domain-weight``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
import torch.distributed as dist

from ..model.checkpoint import build_model, build_reader, load_checkpoint, save_checkpoint
from ..model.network import DepthDefocusNet, ModelConfig
from ..optics import depth_on_side
from ..synth.scenes import SceneConfig, SceneGenerator, scene_config_from_args
from .datasets import SceneStream, ShardDataset
from .distributed import amp_enabled, dump_rank_weights, init_run, wrap_ddp
from .losses import LossWeights, multitask_loss
from .metrics import MetricAccumulator
from .train_args import args_dict, ints, resolve_architecture

__all__ = ["run_training", "Trainer"]


class Trainer:
    """One training run; methods named after the stages of a step (monodepth2 style)."""

    def __init__(self, args):
        self.args = args
        self.world, self.rank, self.device = init_run(args.device)
        self.out = Path(args.out)
        self.is_main = self.rank == 0
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(args.seed)
        init = load_checkpoint(args.init) if args.init else None
        resolve_architecture(args, init)
        self.scene_cfg = scene_config_from_args(args)
        reader = build_reader(load_checkpoint(args.reader), args.reader) if args.reader else None
        reader_cfg = reader.config.to_dict() if reader is not None else None
        if reader_cfg is None and init is not None:
            reader_cfg = init["model_config"].get("reader")
        self.model_cfg = ModelConfig(
            channels=ints(args.channels),
            decoder_channels=ints(args.decoder_channels),
            blocks_per_stage=args.blocks,
            reader=reader_cfg,
        )
        self.model = DepthDefocusNet(self.model_cfg).to(self.device)
        if init is not None:
            src = build_model(init, args.init)
            missing = self.model.load_state_dict(src.state_dict(), strict=False)
            if self.is_main:
                print(f"initialised from {args.init} ({len(missing.missing_keys)} new tensors)")
        if reader is not None:
            self.model.reader.load_state_dict(reader.state_dict())
        self.da = None
        params = list(self.model.parameters())
        if getattr(args, "domain_data", None):
            from .domain import DomainAdaptNet

            self.da = DomainAdaptNet(self.model, hidden=args.domain_hidden).to(self.device)
            params += list(self.da.disc.parameters())
        self.params = params
        params = [q for q in params if q.requires_grad]  # a reader first stage stays frozen
        self.opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
        self.amp = amp_enabled(args.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.weights = LossWeights(**(args.loss_weights or {}))
        self.step = 0
        self.best = math.inf
        if args.resume and (self.out / "last.pt").is_file():
            self._load_resume(self.out / "last.pt")
        self.ddp = wrap_ddp(self.model if self.da is None else self.da, self.device, self.world)

    # ------------------------------------------------------------------ data
    def _sources(self):
        srcs = self.args.data or ["synthetic"]
        seed = self.args.seed + 7919 * self.step  # re-seeded by step: resumable
        its = []
        for s in srcs:
            if s == "synthetic":
                ds = SceneStream(
                    self.scene_cfg,
                    self.args.batch_size,
                    seed=seed,
                    rank=self.rank,
                    reuse=self.args.reuse,
                    crop=self._crop(),
                )
                loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=self.args.workers)
                its.append(iter(loader))
            else:
                ds = ShardDataset(
                    s, self.args.batch_size, self.rank, self.world, split=self.args.split, seed=seed, crop=self._crop()
                )
                its.append(iter(ds))
        return srcs, its

    def _domain_source(self):
        """Unlabelled target-domain batches (only their images, lens and fx are used)."""
        seed = self.args.seed + 7919 * self.step + 17
        a = self.args
        sets = [
            ShardDataset(d, a.batch_size, self.rank, self.world, split=a.domain_split, seed=seed + i, crop=self._crop())
            for i, d in enumerate(a.domain_data)
        ]
        its = [iter(s) for s in sets]
        k = 0
        while True:
            yield next(its[k % len(its)])
            k += 1

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
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            pred = (model or self.ddp)(batch["image"], batch["lens"], batch["fx"])
        if isinstance(pred, tuple):  # the domain-adaptation wrapper: (prediction, domain logits)
            pred = pred[0]
        return {k: v.float() for k, v in pred.items()}

    def forward_domain(self, batch, target):
        """One forward pass over labelled + unlabelled images (one DDP forward): the prediction
        for the labelled part and the domain loss (classifier behind a gradient reversal)."""
        from .domain import domain_loss, grl_lambda, match_batch

        b = batch["image"].shape[0]
        target = match_batch(
            {k: target[k].to(self.device) for k in ("image", "lens", "fx")}, tuple(batch["image"].shape[-2:])
        )
        x = torch.cat([batch["image"], target["image"]])
        lam = grl_lambda(self.step, self.args.steps)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            pred, logits = self.ddp(
                x, torch.cat([batch["lens"], target["lens"]]), torch.cat([batch["fx"], target["fx"]]), lam
            )
        is_target = torch.arange(x.shape[0], device=self.device) >= b
        dloss, acc = domain_loss(logits, is_target)
        pred = {k: v[:b].float() for k, v in pred.items()}
        return pred, dloss, {"domain": float(dloss.detach()), "domain_acc": acc, "grl_lambda": lam}

    def train_step(self, batch, target=None):
        for g in self.opt.param_groups:
            g["lr"] = self._lr()
        self.ddp.train()
        if target is not None:
            pred, dloss, dterms = self.forward_domain(batch, target)
        else:
            pred = self.forward(batch)
        loss, terms = multitask_loss(pred, batch, self.weights)
        if target is not None:
            terms["task"] = float(loss.detach())
            terms.update(dterms)
            loss = loss + self.args.domain_weight * dloss
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.scaler.step(self.opt)
        self.scaler.update()
        terms["loss"] = float(loss.detach())
        return terms

    # ------------------------------------------------------------------ validation
    def _val_batches(self):
        if not hasattr(self, "_val") and self.args.val_data:
            ds = ShardDataset(self.args.val_data, 8, split=self.args.val_split, loop=False, augment=False)
            self._val, n = [], 0
            for b in ds:
                self._val.append(b)
                n += b["image"].shape[0]
                if n >= self.args.val_scenes:
                    break
        if not hasattr(self, "_val"):
            cfg = SceneConfig(**{**self.scene_cfg.to_dict(), "occlusion_aware": True})
            gen = SceneGenerator(cfg, seed=987654)
            n, bs = self.args.val_scenes, 8
            self._val = [gen.batch(min(bs, n - i)) for i in range(0, n, bs)]
        return self._val

    @torch.no_grad()
    def validate(self) -> dict:
        self.model.eval()
        acc, phys = MetricAccumulator(), MetricAccumulator()
        last = None
        for b in self._val_batches():
            b = self._to_device(b)
            pred = self.forward(b, self.model)
            behind = pred["side_logit"] >= 0
            pred["depth"] = depth_on_side(pred["coc"], behind, b["lens"], b["fx"], 100.0)
            acc.update(pred["depth"], pred["coc"], b["depth"], b["defocus"], b["lens"][:, 2], b["valid"])
            phys.update(pred["depth"], pred["coc_physics"], b["depth"], b["defocus"], b["lens"][:, 2], b["valid"])
            last = (b, pred)
        res = acc.result()
        res["overall"]["coc_mae_physics"] = phys.result()["overall"]["coc_mae"]
        if self.is_main and last is not None:
            from ..viz import save_prediction_grid

            save_prediction_grid(self.out / "samples.png", last[0], last[1])
        return res

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_dict(self, metrics=None, training=True) -> dict:
        cfg = self.scene_cfg
        ck = {
            "model_config": self.model_cfg.to_dict(),
            "state_dict": self.model.state_dict(),
            "process_long_side": int(self.args.process_long_side),
            "process_multiple": 32,
            "max_depth_m": 100.0,
            "lens_ranges": {
                "focal_length_mm": list(cfg.f_mm_range),
                "f_number": list(cfg.n_range),
                "focus_distance_m": list(cfg.focus_range_m),
            },
            "scene_config": {k: v for k, v in cfg.to_dict().items() if v is not None},
            "train_args": args_dict(self.args),
            "step": self.step,
            "metrics": metrics or {},
        }
        if training:
            ck["optimizer"] = self.opt.state_dict()
            ck["scaler"] = self.scaler.state_dict()
            ck["rng"] = torch.get_rng_state()
            ck["best"] = self.best
            if self.da is not None:
                ck["domain_classifier"] = self.da.disc.state_dict()
        return ck

    def _load_resume(self, path):
        ck = load_checkpoint(path)
        self.model.load_state_dict(ck["state_dict"])
        self.opt.load_state_dict(ck["optimizer"])
        self.scaler.load_state_dict(ck["scaler"])
        torch.set_rng_state(ck["rng"])
        if self.da is not None and "domain_classifier" in ck:
            self.da.disc.load_state_dict(ck["domain_classifier"])
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
            (self.out / "args.json").write_text(json.dumps(args_dict(a), indent=2))
        srcs, its = self._sources()
        domain = self._domain_source() if self.da is not None else None
        gen = torch.Generator().manual_seed(a.seed + self.step)
        t0 = time.time()
        bar = tqdm(total=a.steps, initial=self.step, desc="train", disable=not self.is_main, unit="step")
        dump_rank_weights(self.model, self.rank, "_init")
        running = {}
        while self.step < a.steps:
            batch = self._to_device(self._next_batch(srcs, its, gen))
            terms = self.train_step(batch, next(domain) if domain is not None else None)
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
        dump_rank_weights(self.model, self.rank, "")
        return self.step

    def _validate_and_save(self):
        if not self.is_main:
            return
        res = self.validate()
        o = res["overall"]
        score = o["coc_mae"] / max(o["coc_mae_physics"], 1e-6) + (1 - o.get("side_acc", 0.0))
        self._log({"kind": "val", "step": self.step, **{f"val_{k}": v for k, v in o.items()}})
        tqdm_write(
            f"step {self.step}: val CoC MAE {o['coc_mae']:.3f}px (training-free "
            f"{o['coc_mae_physics']:.3f}px) side {o.get('side_acc', float('nan')):.3f} "
            f"AbsRel {o['abs_rel']:.3f} d1 {o['delta1']:.3f}"
        )
        if score < self.best:
            self.best = score
            save_checkpoint(self.out / "best.pt", self.checkpoint_dict(o, training=False))
        save_checkpoint(self.out / "last.pt", self.checkpoint_dict(o, training=True))
        from ..viz import plot_training_curves

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
