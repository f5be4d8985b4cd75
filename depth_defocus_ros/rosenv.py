"""What the ROS 2 installation around us has, asked before a launch file starts anything: installed
packages and plugins (the ament index on ``AMENT_PREFIX_PATH``, through ament_index_python) and
programs on PATH. No rclpy; without a ROS environment every answer is "missing"."""

from __future__ import annotations

import os
import shutil

__all__ = [
    "ament_has",
    "missing_program",
    "missing_package",
    "large_frames_env",
    "node_exit_reason",
    "FASTDDS_PROFILE_VARIABLES",
]

FASTDDS_PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")  # new, old name
LARGE_FRAMES_PROFILE = ("config", "fastdds_large_frames.xml")  # in the package's share folder


def ament_has(resource_type: str, name: str) -> bool:
    """Whether the ament index registers ``name`` under ``resource_type``: ``"packages"`` for an
    installed ROS package, ``"<base package>__pluginlib__plugin"`` for a package that exports
    plugins of that base (e.g. a rosbag2 storage plugin)."""
    try:
        from ament_index_python.resources import has_resource

        return bool(has_resource(resource_type, name))
    except Exception:  # noqa: BLE001 - no ament_index_python or no AMENT_PREFIX_PATH: not installed
        return False


def missing_program(name: str) -> str | None:
    """None if ``name`` is on PATH, else a one-line reason."""
    if shutil.which(name):
        return None
    return f"'{name}' is not on PATH: source your ROS 2 setup first (e.g. . /opt/ros/$ROS_DISTRO/setup.bash)"


def missing_package(package: str, apt_name: str, needed_for: str) -> str | None:
    """None if ROS package ``package`` is installed, else a one-line reason with the apt package."""
    if ament_has("packages", package):
        return None
    return (
        f"{needed_for} needs the ROS package '{package}', which is not installed: "
        f"sudo apt install ros-$ROS_DISTRO-{apt_name}"
    )


def large_frames_env(enabled: bool, share_dir: str, environ=None) -> dict:
    """Environment for launched processes that gives Fast DDS the shipped large-frames profile
    (``<share_dir>/config/fastdds_large_frames.xml``): empty when not ``enabled`` or when
    ``environ`` (default: os.environ) names a Fast DDS profile file already (the user's wins)."""
    environ = os.environ if environ is None else environ
    if not enabled or any(environ.get(v) for v in FASTDDS_PROFILE_VARIABLES):
        return {}
    return {FASTDDS_PROFILE_VARIABLES[0]: os.path.join(share_dir, *LARGE_FRAMES_PROFILE)}


def node_exit_reason(returncode: int | None, launch_shutting_down: bool) -> str | None:
    """Why ``ros2 launch`` must fail when depth_defocus_node exits: a one-line reason when the node
    ended on its own with a non-zero status (it could not start, or it died), else None (a clean
    exit, or any exit while launch itself is shutting down, e.g. after Ctrl-C)."""
    if launch_shutting_down or returncode == 0:
        return None
    how = (
        f"was killed by signal {-returncode}"
        if returncode is not None and returncode < 0
        else f"exited with status {returncode}"
    )
    return f"depth_defocus_node {how} (its log above says why)"
