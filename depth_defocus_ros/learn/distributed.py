"""What both training loops need of torchrun: the process's place in the run, and the per-rank
weight dump the DDP tests compare."""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["dist_info", "dump_rank_weights"]


def dist_info() -> tuple[int, int, int]:
    """(world size, global rank, local rank) from torchrun's environment; (1, 0, 0) without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def dump_rank_weights(module: torch.nn.Module, rank: int, tag: str) -> None:
    """For tests of DDP: every rank writes its weights to $DEPTH_DEFOCUS_DUMP_RANK_WEIGHTS."""
    folder = os.environ.get("DEPTH_DEFOCUS_DUMP_RANK_WEIGHTS")
    if folder:
        torch.save(module.state_dict(), Path(folder) / f"rank{rank}{tag}.pt")
