"""Test helper (tests only): a tiny, randomly initialised checkpoint in the real format."""

from __future__ import annotations

import torch

from depth_defocus_ros.model.checkpoint import save_checkpoint
from depth_defocus_ros.model.network import DepthDefocusNet, ModelConfig

__all__ = ["make_tiny_checkpoint"]


def make_tiny_checkpoint(path, long_side: int = 128, seed: int = 0, random_correction: bool = False):
    """Write a small random-weight checkpoint (fast on any CPU) and return its path. Its defocus
    correction starts at zero (the network's own initialisation) unless ``random_correction``."""
    torch.manual_seed(seed)
    cfg = ModelConfig(channels=[8, 8, 16, 16, 16], decoder_channels=[16, 8, 8, 8])
    model = DepthDefocusNet(cfg)
    if random_correction:
        torch.nn.init.normal_(model.defocus_dec.out.weight, std=0.05)
    save_checkpoint(
        path,
        {
            "model_config": cfg.to_dict(),
            "state_dict": model.state_dict(),
            "process_long_side": long_side,
            "process_multiple": 32,
            "max_depth_m": 100.0,
            "lens_ranges": {"focal_length_mm": [4.0, 85.0], "f_number": [1.4, 8.0], "focus_distance_m": [0.3, 10.0]},
            "step": 0,
        },
    )
    return path
