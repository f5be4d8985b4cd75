"""What ``launch/record.launch.py`` runs and writes, without ROS (so it is testable here).

* :data:`DEFAULT_TOPICS`: the RealSense ROS 2 wrapper (realsense2_camera 4.x, ``align_depth.enable:=true``)
  topic names that the launch file records by default;
* :func:`record_topics` / :func:`record_command`: the ``ros2 bag record`` command line (MCAP);
* :func:`lens_file_for` / :func:`write_lens_file`: ``OUTPUT.lens.yaml`` next to the bag, where
  ``depth-defocus bag2dataset OUTPUT`` finds the lens settings.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEFAULT_TOPICS", "LENS_ARGUMENTS", "lens_file_for", "record_command", "record_topics", "write_lens_file"]

DEFAULT_TOPICS = {
    "rgb_topic": "/camera/camera/color/image_raw",
    "info_topic": "/camera/camera/color/camera_info",
    "depth_topic": "/camera/camera/aligned_depth_to_color/image_raw",
}
LENS_ARGUMENTS = ("focal_length_mm", "f_number", "focus_distance_m")  # mm, -, m
STORAGE_PRESETS = ("", "fastwrite", "zstd_fast", "zstd_small")


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
