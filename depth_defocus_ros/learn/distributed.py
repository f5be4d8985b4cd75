"""What both training loops need of torchrun: the process's place in the run and its device,
AMP and DDP set up one way, and the per-rank weight dump the DDP tests compare."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist

from ..estimate.estimator import select_device

__all__ = ["dist_info", "init_run", "amp_enabled", "wrap_ddp", "dump_rank_weights"]


def dist_info() -> tuple[int, int, int]:
    """(world size, global rank, local rank) from torchrun's environment; (1, 0, 0) without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def init_run(device: str) -> tuple[int, int, torch.device]:
    """(world size, global rank, device) of this process. Under torchrun on CUDA each process
    takes the GPU of its local rank (and makes it current: NCCL needs that); the process group
    is joined (NCCL on CUDA, gloo on CPU)."""
    world, rank, local = dist_info()
    dev = select_device(device)
    dev = torch.device(f"cuda:{local}") if dev.type == "cuda" and dev.index is None else dev
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return world, rank, dev


def amp_enabled(choice: str, device: torch.device) -> bool:
    """fp16 autocast for ``--amp`` ``auto`` / ``on`` / ``off``: only ever on CUDA."""
    return device.type == "cuda" and choice in ("auto", "on")


def wrap_ddp(module: torch.nn.Module, device: torch.device, world: int) -> torch.nn.Module:
    """``module`` in DistributedDataParallel when the run has more than one process."""
    if world <= 1:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)


def dump_rank_weights(module: torch.nn.Module, rank: int, tag: str) -> None:
    """For tests of DDP: every rank writes its weights to $DEPTH_DEFOCUS_DUMP_RANK_WEIGHTS."""
    folder = os.environ.get("DEPTH_DEFOCUS_DUMP_RANK_WEIGHTS")
    if folder:
        torch.save(module.state_dict(), Path(folder) / f"rank{rank}{tag}.pt")
