"""Self-describing checkpoints, saved atomically and loaded safely.

A checkpoint is a ``torch.save`` dict of tensors and plain Python values only, loaded with
``torch.load(weights_only=True)``: a checkpoint file cannot execute code. Keys:

* ``format`` ("depth_defocus_ros.checkpoint"), ``format_version`` (int)
* ``kind``: ``"network"`` (the multi-task network) or ``"reader"`` (the blur reader alone,
  :mod:`~depth_defocus_ros.reading.reader`); version 2 files are networks
* network: ``model_config``: :class:`~.network.ModelConfig` as a dict (the model is rebuilt from
  it); ``state_dict``: the network weights (it holds the sRGB input normalisation too)
* reader: ``reader_config``: :class:`~.reader.ReaderConfig` as a dict; ``reader_state``: its
  weights; ``patch_config``: how its training patches were drawn
* ``process_long_side`` (px): the processing cap (inputs with a longer side are downsampled to it;
  smaller ones are processed as they are); ``process_multiple`` (px): padding multiple
* ``lens_ranges``: the focal length (mm), f-number and focus distance (m) ranges trained on
* ``scene_config``, ``train_args``: how it was trained; ``step``; ``metrics`` (optional)
* ``optimizer``, ``scaler``, ``rng`` (training checkpoints only, for resuming)
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..reading.reader import BlurReader, ReaderConfig
from .network import DepthDefocusNet, ModelConfig

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "build_model", "build_reader", "FORMAT", "VERSION"]

FORMAT = "depth_defocus_ros.checkpoint"  # a file format name, not the module path: kept when the module moved
# 3: a kind ("network" or "reader": the learned blur reader); 2: network on the training-free estimate
# (lens-free defocus path); 1: lens-conditioned CoC head (no longer read)
VERSION = 3
READABLE = (2, 3)
KINDS = {"network": ("model_config", "state_dict"), "reader": ("reader_config", "reader_state")}
EXPECTED = (
    f"a depth_defocus_ros checkpoint (.pt written by 'depth-defocus train' or 'train-reader', format {FORMAT!r} "
    f"version {VERSION})"
)


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, truncated or not ours."""


def save_checkpoint(path: str | os.PathLike, ckpt: dict) -> None:
    """Write atomically: a crash mid-write leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    torch.save({"format": FORMAT, "format_version": VERSION, **ckpt}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load and check a checkpoint; raise :class:`CheckpointError` naming path and problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} (expected {EXPECTED})")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, pickle with code, random bytes...
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {msg[:200]} (expected {EXPECTED})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a depth_defocus_ros checkpoint (expected {EXPECTED})")
    if ckpt.get("format_version") not in READABLE:
        raise CheckpointError(
            f"{path} has checkpoint format version {ckpt.get('format_version')!r}; "
            f"this version of depth_defocus_ros reads versions {', '.join(map(str, READABLE))} (retrain, or "
            f"fine-tune from the shipped models/depth_defocus.pt with 'depth-defocus train-reader --init')"
        )
    kind = ckpt.setdefault("kind", "network")
    if kind not in KINDS:
        raise CheckpointError(f"{path} holds an unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
    for key in (*KINDS[kind], "process_long_side"):
        if key not in ckpt:
            raise CheckpointError(f"{path} lacks {key!r} (expected {EXPECTED})")
    return ckpt


def _rebuild(build, config: dict, state: dict, path):
    """``build(config)`` with ``state`` loaded (as float32); a mismatch names the file."""
    try:
        module = build(config)
        module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except (TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise CheckpointError(f"{path}: weights do not fit the stored architecture: {first}") from None
    return module


def build_model(ckpt: dict, path: str | os.PathLike = "<checkpoint>") -> DepthDefocusNet:
    """Rebuild the network from a loaded checkpoint and load its weights."""
    if ckpt.get("kind", "network") != "network":
        raise CheckpointError(f"{path} holds a {ckpt['kind']}, not the multi-task network")
    return _rebuild(lambda c: DepthDefocusNet(ModelConfig(**c)), ckpt["model_config"], ckpt["state_dict"], path)


def build_reader(ckpt: dict, path: str | os.PathLike = "<checkpoint>") -> BlurReader:
    """Rebuild the blur reader from a loaded checkpoint and load its weights."""
    if ckpt.get("kind") != "reader":
        raise CheckpointError(f"{path} holds a {ckpt.get('kind', 'network')}, not a blur reader")
    return _rebuild(lambda c: BlurReader(ReaderConfig(**c)), ckpt["reader_config"], ckpt["reader_state"], path)
