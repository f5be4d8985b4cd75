"""What ``launch/record.launch.py`` runs and writes, without ROS (so it is testable here).

* :data:`DEFAULT_TOPICS`: the RealSense ROS 2 wrapper (realsense2_camera 4.x, ``align_depth.enable:=true``)
  topic names that the launch file records by default;
* :func:`record_topics` / :func:`record_command`: the ``ros2 bag record`` command line (MCAP);
* :func:`lens_file_for` / :func:`write_lens_file`: ``OUTPUT.lens.yaml`` next to the bag, where
  ``depth-defocus bag2dataset OUTPUT`` finds the lens settings;
* :func:`recorder_problem`: why a recording cannot start (no ``ros2``, no rosbag2, no MCAP storage
  plugin, the output exists), asked before anything is written;
* :func:`finish_recording`: after ``ros2 bag record`` ends, removes a lens file that has no bag
  beside it and says why a failed recording failed.

The launch file calls these in this order: ``recorder_problem`` (stop with its reason, nothing
written), ``write_lens_file``, start the recorder, ``finish_recording`` on its exit (a reason means
the launch stops with a non-zero exit status).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..rosenv import ament_has, missing_package, missing_program

__all__ = [
    "DEFAULT_TOPICS",
    "LENS_ARGUMENTS",
    "lens_file_for",
    "record_command",
    "record_topics",
    "write_lens_file",
    "recorder_problem",
    "finish_recording",
]

DEFAULT_TOPICS = {
    "rgb_topic": "/camera/camera/color/image_raw",
    "info_topic": "/camera/camera/color/camera_info",
    "depth_topic": "/camera/camera/aligned_depth_to_color/image_raw",
}
LENS_ARGUMENTS = ("focal_length_mm", "f_number", "focus_distance_m")  # mm, -, m
STORAGE_PRESETS = ("", "fastwrite", "zstd_fast", "zstd_small")
STORAGE_PLUGIN = ("rosbag2_storage__pluginlib__plugin", "rosbag2_storage_mcap")  # ament index (type, name)


def lens_file_for(output: str) -> Path:
    """Where bag2dataset looks for a bag's lens settings: ``OUTPUT.lens.yaml`` beside the bag folder."""
    out = Path(output)
    return out.with_name(out.name + ".lens.yaml")


def write_lens_file(output: str, lens: dict) -> Path | None:
    """Write the given lens settings (a subset of :data:`LENS_ARGUMENTS`, strings or numbers; empty
    values are left out) next to the bag; None when there is nothing to write. A non-numeric or
    non-positive value raises ValueError naming it."""
    values = {}
    for name in LENS_ARGUMENTS:
        raw = lens.get(name)
        if raw is None or str(raw).strip() == "":
            continue
        try:
            v = float(raw)
        except ValueError:
            raise ValueError(f"{name}:={raw!r} is not a number") from None
        if not v > 0:
            raise ValueError(f"{name}:={raw!r} must be > 0")
        values[name] = v
    if not values:
        return None
    path = lens_file_for(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}: {v}\n" for k, v in values.items()))
    return path


def record_topics(
    rgb_topic: str, info_topic: str, depth_topic: str, extra_topics: str = "", compressed_rgb: bool = False
) -> list:
    """[rgb, camera_info, depth, extra...]; the RGB topic's ``/compressed`` twin with ``compressed_rgb``."""
    rgb = rgb_topic.rstrip("/") + "/compressed" if compressed_rgb else rgb_topic
    return [rgb, info_topic, depth_topic] + extra_topics.split()


def record_command(output: str, topics: list, max_bag_duration: str = "0", storage_preset: str = "") -> list:
    """``ros2 bag record -s mcap -o OUTPUT [--max-bag-duration S] [--storage-preset-profile P] TOPICS``."""
    if storage_preset not in STORAGE_PRESETS:
        choices = ", ".join(repr(p) for p in STORAGE_PRESETS)
        raise ValueError(f"storage_preset:={storage_preset!r} (choose from {choices})")
    cmd = ["ros2", "bag", "record", "-s", "mcap", "-o", output]
    if max_bag_duration and float(max_bag_duration) > 0:
        cmd += ["--max-bag-duration", str(int(float(max_bag_duration)))]
    if storage_preset:
        cmd += ["--storage-preset-profile", storage_preset]
    return cmd + list(topics)


def recorder_problem(output: str) -> str | None:
    """None if ``ros2 bag record -s mcap -o OUTPUT`` can start here, else a one-line reason:
    ``ros2`` not on PATH, rosbag2 (the ``ros2 bag`` verb) or its MCAP storage plugin not installed
    (the ament index, as pluginlib finds storage plugins), or ``output`` already exists (the
    recorder refuses to write into an existing folder)."""
    problem = missing_program("ros2") or missing_package("ros2bag", "rosbag2", "'ros2 bag record'")
    if problem:
        return problem
    if not ament_has(*STORAGE_PLUGIN):
        return (
            "'ros2 bag record -s mcap' needs the MCAP storage plugin, which is not installed: "
            "sudo apt install ros-$ROS_DISTRO-rosbag2-storage-mcap"
        )
    if Path(output).exists():
        return f"output:={output} already exists: ros2 bag record writes a new folder; choose another output"
    return None


def _has_bag(output: str) -> bool:
    """A rosbag2 folder with a metadata file or any storage file in it."""
    out = Path(output)
    return out.is_dir() and any(
        p.name == "metadata.yaml" or p.suffix in (".mcap", ".db3", ".zstd") for p in out.iterdir()
    )


def finish_recording(output: str, lens_path: Path | None, returncode: int) -> str | None:
    """After ``ros2 bag record`` exited with ``returncode``: remove the lens file if no bag was
    written (never a lens file without its bag); None for a good recording, else a one-line
    reason (the recorder's own messages are above it in the launch output)."""
    bag = _has_bag(output)
    if lens_path is not None and not bag:
        Path(lens_path).unlink(missing_ok=True)
        if Path(output).is_dir() and not any(Path(output).iterdir()):
            shutil.rmtree(output, ignore_errors=True)  # an empty folder the recorder left
    if returncode == 0:
        return None if bag else f"ros2 bag record ended without writing a bag in {output}"
    what = (
        f"the bag in {output} may be incomplete"
        if bag
        else "no bag was written" + (", lens file removed" if lens_path is not None else "")
    )
    return f"ros2 bag record exited with code {returncode} ({what}); its messages are above"
