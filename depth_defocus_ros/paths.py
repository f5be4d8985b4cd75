"""Where the package's files are (shipped weights, sample data, config, launch): the source tree, or
an install's share folder. The one place that looks for them; no ROS needed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["PACKAGE", "package_share_path", "default_model_path", "SHIPPED_MODEL"]

PACKAGE = "depth_defocus_ros"
SOURCE_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_MODEL = ("models", "depth_defocus.pt")


def package_share_path(*parts: str) -> Path:
    """``share/depth_defocus_ros/<parts>``: the source tree's copy first (a checkout or an editable
    install), then the ament index (colcon install), then ``sys.prefix/share`` (pip install)."""
    candidates = [SOURCE_ROOT.joinpath(*parts)]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(PACKAGE)).joinpath(*parts))
    except Exception:  # noqa: BLE001 - no ament index (no ROS install): fine
        pass
    candidates.append(Path(sys.prefix, "share", PACKAGE).joinpath(*parts))
    for c in candidates:
        if c.exists():
            return c
    return candidates[0]


def default_model_path() -> Path | str:
    """The shipped default estimator: ``$DEPTH_DEFOCUS_MODEL`` if set, else the shipped checkpoint
    (``models/depth_defocus.pt``) if one is shipped, else ``"training-free"`` (no network: the
    shipped checkpoint did not beat the training-free estimate, see models/README.md)."""
    env = os.environ.get("DEPTH_DEFOCUS_MODEL")
    if env:
        return env if env == "training-free" else Path(env)
    path = package_share_path(*SHIPPED_MODEL)
    return path if path.is_file() else "training-free"
