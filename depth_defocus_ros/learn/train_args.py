"""The command line of ``depth-defocus train``: its options, their parsing, and the architecture
defaults (one source of truth: :class:`~depth_defocus_ros.model.network.ModelConfig`), filled from an
``--init`` checkpoint where the run fine-tunes one."""

from __future__ import annotations

import argparse

from ..estimate.estimator import DEFAULT_LONG_SIDE
from ..model.network import ModelConfig
from ..synth.scenes import add_scene_args
from .losses import LossWeights

__all__ = ["add_train_args", "args_dict", "resolve_architecture", "ARCH_DEFAULTS", "ints"]


def _add_data_args(p: argparse.ArgumentParser) -> None:
    """Options of ``depth-defocus train``: which data: synthetic stream and/or dataset folders, and their mix."""
    p.add_argument(
        "--data",
        action="append",
        default=None,
        help="'synthetic' (the on-the-fly stream) or a dataset folder of shards; "
        "repeat to mix sources (default: synthetic)",
    )
    p.add_argument("--mix", type=float, default=0.5, help="share of synthetic batches when mixing")
    p.add_argument("--split", default=None, help="split of on-disk datasets to train on")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    """Options of ``train``: the run folder, steps, batch, optimiser, device."""
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch-size", type=int, default=8, help="per process")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument(
        "--amp",
        choices=["auto", "on", "off"],
        default="auto",
        help="mixed precision (fp16 autocast); auto = on for CUDA",
    )
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers for the stream")


def _add_architecture_args(p: argparse.ArgumentParser) -> None:
    """Options of ``train``: network widths and depth, loss weights, scenes, processing cap."""
    p.add_argument(
        "--channels",
        default=None,
        help=f"encoder widths, 1/2..1/32 (default {ARCH_DEFAULTS['channels']}, or the --init checkpoint's)",
    )
    p.add_argument(
        "--decoder-channels",
        default=None,
        help=f"default {ARCH_DEFAULTS['decoder_channels']}, or the --init checkpoint's",
    )
    p.add_argument(
        "--blocks",
        type=int,
        default=None,
        help="residual blocks per encoder stage (default 1, or the --init checkpoint's)",
    )
    p.add_argument(
        "--loss-weights",
        type=_loss_weights,
        default=None,
        metavar="TERM=W,...",
        help="override loss-term weights, e.g. side=1,depth=0.2 (terms: coc, sigma, side, "
        "depth; defaults in losses.LossWeights)",
    )
    add_scene_args(p)
    p.add_argument(
        "--process-long-side",
        type=int,
        default=None,
        help="processing cap stored in the checkpoint: predict downsamples inputs whose long "
        "side exceeds it (px) and never upsamples (default 640, or the --init checkpoint's)",
    )


def _add_start_args(p: argparse.ArgumentParser) -> None:
    """Options of ``train``: where the weights start (--init, --reader, --resume), validation, logging."""
    p.add_argument("--init", default=None, help="start from this checkpoint's weights (fine-tune)")
    p.add_argument(
        "--reader",
        default=None,
        help="a blur reader checkpoint (train-reader) as the network's first stage, frozen (default: the "
        "training-free estimate, or --init's first stage)",
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--val-scenes", type=int, default=32)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--crop", default=None, help="train on random HxW crops, e.g. 128x128 (px)")
    p.add_argument("--reuse", type=int, default=1, help="steps per rendered synthetic batch")
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop (and save) after this long")
    p.add_argument(
        "--val-data",
        default=None,
        help="validate on this dataset folder (e.g. converted bags) instead of synthetic scenes",
    )
    p.add_argument("--val-split", default=None, help="split of --val-data (e.g. val)")


def _add_domain_args(p: argparse.ArgumentParser) -> None:
    """Options of ``depth-defocus train``: domain adaptation with unlabelled real frames."""
    g = p.add_argument_group("domain adaptation (unlabelled real frames, gradient-reversal domain classifier)")
    g.add_argument(
        "--domain-data",
        action="append",
        default=None,
        help="dataset folder of unlabelled target-domain frames (bag2dataset --mode unlabeled, or "
        "any dataset: its depth is not used); repeat to pool folders",
    )
    g.add_argument("--domain-split", default=None, help="split of --domain-data to use (e.g. train)")
    g.add_argument("--domain-weight", type=float, default=0.1, help="weight of the domain loss")
    g.add_argument("--domain-hidden", type=int, default=64, help="width of the domain classifier")


def add_train_args(p: argparse.ArgumentParser) -> None:
    """The options of ``depth-defocus train`` (their order is the order of ``--help``)."""
    _add_data_args(p)
    _add_run_args(p)
    _add_architecture_args(p)
    _add_start_args(p)
    _add_domain_args(p)


def args_dict(args) -> dict:
    """The run's options as plain JSON-able values (drops the CLI's handler function)."""
    return {k: v for k, v in vars(args).items() if not callable(v) and v is not None}


def _loss_weights(s: str) -> dict:
    """``coc=1,final=0.5`` -> {"coc": 1.0, "final": 0.5}; unknown terms are refused."""
    import argparse
    from dataclasses import fields

    known = {f.name for f in fields(LossWeights)}
    out = {}
    for item in filter(None, s.split(",")):
        k, _, v = item.partition("=")
        if k.strip() not in known:
            raise argparse.ArgumentTypeError(f"unknown loss term {k.strip()!r} (known: {', '.join(sorted(known))})")
        try:
            out[k.strip()] = float(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"loss weight {item!r} is not TERM=NUMBER") from None
    return out


def ints(s: str) -> list:
    return [int(v) for v in s.split(",")]


def _arch_defaults() -> dict:
    """Architecture options' defaults, from :class:`~.network.ModelConfig` (one source of truth)."""
    cfg = ModelConfig()
    return {
        "channels": ",".join(map(str, cfg.channels)),
        "decoder_channels": ",".join(map(str, cfg.decoder_channels)),
        "blocks": cfg.blocks_per_stage,
        "process_long_side": DEFAULT_LONG_SIDE,
    }


ARCH_DEFAULTS = _arch_defaults()


def resolve_architecture(args, init: dict | None) -> None:
    """Fill architecture options left unset: from the --init checkpoint (fine-tuning keeps its
    network and processing resolution), else the defaults."""
    from_init = {}
    if init is not None:
        cfg = init["model_config"]
        from_init = {
            "channels": ",".join(str(c) for c in cfg["channels"]),
            "decoder_channels": ",".join(str(c) for c in cfg["decoder_channels"]),
            "blocks": cfg.get("blocks_per_stage", 1),
            "process_long_side": init.get("process_long_side"),
        }
    for k, default in ARCH_DEFAULTS.items():
        if getattr(args, k, None) is None:
            v = from_init.get(k)
            setattr(args, k, default if v is None else v)
