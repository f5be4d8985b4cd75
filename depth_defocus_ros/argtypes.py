"""argparse value types shared by the CLI tools (no ROS, no torch)."""

from __future__ import annotations

import argparse
import math

__all__ = ["positive", "positive_range"]


def positive(name: str, typ=float):
    """An argparse ``type=`` that accepts a finite number > 0 of type ``typ`` (float or int) and
    otherwise fails with ``NAME must be ...`` (argparse prints it as a one-line usage error)."""
    what = "an integer" if typ is int else "a number"

    def conv(v):
        try:
            x = typ(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be {what}, got {v!r}") from None
        if not (x > 0 and math.isfinite(x)):
            raise argparse.ArgumentTypeError(f"{name} must be a positive finite number, got {v!r}")
        return x

    return conv


def positive_range(text: str) -> tuple:
    """An argparse ``type=`` for ``LO,HI``: two numbers with ``0 < LO <= HI``."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI (two numbers), got {text!r}") from None
    if not 0 < lo <= hi:
        raise argparse.ArgumentTypeError(f"expected 0 < LO <= HI, got {text!r}")
    return (lo, hi)
