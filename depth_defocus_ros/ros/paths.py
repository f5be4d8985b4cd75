"""Where the package's data, config and launch files are: the source tree, or an install's share folder."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["PACKAGE", "package_share_path"]

PACKAGE = "depth_defocus_ros"
SOURCE_ROOT = Path(__file__).resolve().parents[2]


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
