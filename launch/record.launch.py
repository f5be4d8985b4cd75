"""Record a depth_defocus_ros dataset on a robot: RGB, registered depth and CameraInfo, in MCAP.

    ros2 launch depth_defocus_ros record.launch.py output:=/data/bags/desk_f1.8_1m2 \
        focal_length_mm:=35 f_number:=1.8 focus_distance_m:=1.2

runs ``ros2 bag record -s mcap -o OUTPUT RGB INFO DEPTH [EXTRA...]`` and writes the lens settings
next to the bag as ``OUTPUT.lens.yaml``, where ``depth-defocus bag2dataset OUTPUT`` finds them.
Then convert (docs/recording.md, DATASET.md):

    depth-defocus bag2dataset /data/bags/desk_f1.8_1m2 --out /data/datasets/desk

Arguments (``ros2 launch depth_defocus_ros record.launch.py --show-args``):
    output            bag folder to create (default: depth_defocus_<date>_<time> in the working folder)
    rgb_topic         colour image, sensor_msgs/Image (default: RealSense ROS 2 wrapper 4.x name)
    info_topic        CameraInfo of the colour camera
    depth_topic       depth registered to the colour camera, 16UC1 (mm) or 32FC1 (m), raw (not compressedDepth)
    extra_topics      more topics to record, space-separated (default: /tf /tf_static)
    compressed_rgb    true: record <rgb_topic>/compressed instead of the raw image (less disk; JPEG is lossy)
    focal_length_mm, f_number, focus_distance_m
                      the lens settings of this recording (empty: not written; give them to bag2dataset)
    max_bag_duration  split the bag into files of this many seconds (0: one file)
    storage_preset    MCAP preset: '' (none), fastwrite, zstd_fast, zstd_small

Before writing anything it checks that ``ros2 bag`` and its MCAP storage plugin are installed and
that ``output`` does not exist; if not, or if the recorder dies, the launch stops with a non-zero
exit status and a one-line reason, and no lens file is left without its bag.
"""

import datetime

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, LogInfo, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration

from depth_defocus_ros.bags.record import (
    DEFAULT_TOPICS,
    LENS_ARGUMENTS,
    finish_recording,
    record_command,
    record_topics,
    recorder_problem,
    write_lens_file,
)


class RecordingFailed(RuntimeError):
    """Raised inside the launch: launch logs its message on one line and exits with status 1."""


def launch_setup(context, *args, **kwargs):
    def arg(name):
        return LaunchConfiguration(name).perform(context).strip()

    output = arg("output") or datetime.datetime.now().strftime("depth_defocus_%Y%m%d_%H%M%S")
    compressed = arg("compressed_rgb").lower() in ("true", "1", "yes", "on")
    topics = record_topics(arg("rgb_topic"), arg("info_topic"), arg("depth_topic"), arg("extra_topics"), compressed)
    cmd = record_command(output, topics, arg("max_bag_duration"), arg("storage_preset"))
    problem = recorder_problem(output)
    if problem:
        raise RecordingFailed(f"record.launch.py: {problem}")
    actions = []
    path = write_lens_file(output, {name: arg(name) for name in LENS_ARGUMENTS})
    if path is not None:
        actions.append(LogInfo(msg=f"lens settings written to {path}"))
    else:
        actions.append(
            LogInfo(
                msg="no lens settings given: note focal length, f-number and focus distance for "
                "bag2dataset (docs/recording.md)"
            )
        )
    recorder = ExecuteProcess(cmd=cmd, output="screen", name="ros2_bag_record")

    def on_recorder_exit(event, context):
        reason = finish_recording(output, path, event.returncode)
        if reason:
            raise RecordingFailed(f"record.launch.py: {reason}")

    actions += [recorder, RegisterEventHandler(OnProcessExit(target_action=recorder, on_exit=on_recorder_exit))]
    return actions


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument("output", default_value="", description="bag folder to create (must not exist)"),
            DeclareLaunchArgument(
                "rgb_topic", default_value=DEFAULT_TOPICS["rgb_topic"], description="colour image (sensor_msgs/Image)"
            ),
            DeclareLaunchArgument(
                "info_topic", default_value=DEFAULT_TOPICS["info_topic"], description="CameraInfo of the colour camera"
            ),
            DeclareLaunchArgument(
                "depth_topic",
                default_value=DEFAULT_TOPICS["depth_topic"],
                description="depth registered to the colour camera (16UC1 mm or 32FC1 m, raw)",
            ),
            DeclareLaunchArgument(
                "extra_topics", default_value="/tf /tf_static", description="more topics, space-separated"
            ),
            DeclareLaunchArgument(
                "compressed_rgb",
                default_value="false",
                description="record <rgb_topic>/compressed (JPEG) instead of the raw image",
            ),
            DeclareLaunchArgument("focal_length_mm", default_value="", description="lens focal length (mm)"),
            DeclareLaunchArgument("f_number", default_value="", description="aperture f-number"),
            DeclareLaunchArgument("focus_distance_m", default_value="", description="focus distance (m)"),
            DeclareLaunchArgument("max_bag_duration", default_value="0", description="split files every N s (0: no)"),
            DeclareLaunchArgument(
                "storage_preset",
                default_value="",
                description="MCAP storage preset: '', fastwrite, zstd_fast, zstd_small",
            ),
            OpaqueFunction(function=launch_setup),
        ]
    )
