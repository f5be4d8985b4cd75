"""Self-describing checkpoints, saved atomically and loaded safely.

A checkpoint is a ``torch.save`` dict of tensors and plain Python values only, loaded with
``torch.load(weights_only=True)``: a checkpoint file cannot execute code. Keys:

* ``format`` ("depth_defocus_ros.checkpoint"), ``format_version`` (int)
* ``model_config``: :class:`~.model.ModelConfig` as a dict (the model is rebuilt from it)
* ``state_dict``: the network weights
  (it holds the sRGB input normalisation too)
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

from .model import DepthDefocusNet, ModelConfig

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "build_model", "FORMAT", "VERSION"]

FORMAT = "depth_defocus_ros.checkpoint"
VERSION = 2  # 2: network on the training-free estimate (lens-free defocus path); 1: lens-conditioned CoC head
EXPECTED = f"a depth_defocus_ros checkpoint (.pt written by 'depth-defocus train', format {FORMAT!r} version {VERSION})"


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
    if ckpt.get("format_version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {ckpt.get('format_version')!r}; "
            f"this version of depth_defocus_ros reads version {VERSION} (retrain, or fine-tune from "
            f"the shipped models/depth_defocus.pt with 'depth-defocus train --init')"
        )
    for key in ("model_config", "state_dict", "process_long_side"):
        if key not in ckpt:
            raise CheckpointError(f"{path} lacks {key!r} (expected {EXPECTED})")
    return ckpt


def build_model(ckpt: dict, path: str | os.PathLike = "<checkpoint>") -> DepthDefocusNet:
    """Rebuild the network from a loaded checkpoint and load its weights."""
    try:
        model = DepthDefocusNet(ModelConfig(**ckpt["model_config"]))
        state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
        model.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise CheckpointError(f"{path}: weights do not fit the stored architecture: {first}") from None
    return model
