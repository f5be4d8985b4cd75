"""depth_defocus_node for one camera, and RViz on request.

    ros2 launch depth_defocus_ros depth_defocus.launch.py \
        image:=/camera/image_raw camera_info:=/camera/camera_info rviz:=true

Arguments (``ros2 launch depth_defocus_ros depth_defocus.launch.py --show-args``):
    namespace          the node's namespace; its outputs are <namespace>/depth/image, ... (default: none)
    image              camera image topic, remapped to the node's 'image' (default: image)
    image_compressed   compressed image topic, remapped to 'image/compressed' (default: <image>/compressed)
    camera_info        CameraInfo topic, remapped to 'camera_info' (default: camera_info)
    params_file        parameter file (default: the package's config/depth_defocus.yaml); it must exist
    focal_length_mm    lens focal length (mm); empty: as in params_file
    f_number           lens f-number; empty: as in params_file
    focus_distance_m   lens focus distance (m); empty: as in params_file
                       (the lens arguments override the file and are checked like the node's
                       parameters, together with it, before anything starts)
    focus_side         auto | front | behind; empty: as in params_file
    max_relative_error publish depth where its expected relative error is at most this; empty: as in params_file
    device             auto | cuda | cpu; empty: as in params_file
    model_path         checkpoint (.pt); empty: as in params_file (there: empty = the shipped weights)
    image_transport    raw | compressed; empty: as in params_file
    reliable_qos       true | false: subscribe reliably (a camera without the large-frames profile that
                       publishes reliably); empty: as in params_file
    large_frames       true: the node and RViz use config/fastdds_large_frames.xml, Fast DDS shared memory
                       for large images (default: true; no effect when FASTDDS_DEFAULT_PROFILES_FILE is
                       already set, or with another RMW); give the camera driver the same file
    rviz               true: start RViz with config/depth_defocus.rviz (default: false); rviz2 must be
                       installed, else nothing starts and the launch exits non-zero
    camera_frame       RViz fixed frame, the camera's optical frame_id (default: camera_optical_frame)
    log_level          the node's log level (default: info)

Only these names exist: launch cannot refuse an argument it does not know (``f_number:=2.8`` is
used, ``fnumber:=2.8`` is silently ignored), so check ``--show-args``. A bad value, an impossible
lens or a missing params_file stops the launch before the node starts (one line, exit status 1).
The node logs its lens settings and where each came from at start-up, and warns when they are the
params file's defaults. The launch ends when the node does: with status 1 when the node exits on
its own with a non-zero status (it could not start, or it died), 0 after Ctrl-C.
"""

import json

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler, Shutdown
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from depth_defocus_ros.ros.params import LAUNCH_PARAMETER_ARGUMENTS, LENS_SOURCES_ENV, ConfigError, launch_overrides
from depth_defocus_ros.rosenv import large_frames_env, missing_package, node_exit_reason

PACKAGE = "depth_defocus_ros"
# launch arguments that override the parameter of the same name when they are not empty
PARAMETER_ARGUMENTS = LAUNCH_PARAMETER_ARGUMENTS
BOOL_ARGUMENTS = ("large_frames", "rviz")
TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


class LaunchRefused(RuntimeError):
    """Raised before anything starts: launch logs its message on one line and exits with status 1."""


def launch_setup(context, *args, **kwargs):
    def arg(name):
        text = LaunchConfiguration(name).perform(context)
        if name in BOOL_ARGUMENTS and text:
            if text.strip().lower() not in TRUE + FALSE:
                raise LaunchRefused(f"depth_defocus.launch.py: {name}:={text!r} is not true or false")
            return text.strip().lower() in TRUE
        return text

    namespace = arg("namespace")
    image = arg("image")
    rviz = arg("rviz")
    if rviz:  # before anything starts: a failed RViz must not leave the node running alone
        problem = missing_package("rviz2", "rviz2", "rviz:=true")
        if problem:
            raise LaunchRefused(f"depth_defocus.launch.py: {problem}; or launch without rviz:=true")
    share = FindPackageShare(PACKAGE).perform(context)
    env = large_frames_env(arg("large_frames"), share, getattr(context, "environment", None))
    remappings = [
        ("image", image),
        ("image/compressed", arg("image_compressed") or image.rstrip("/") + "/compressed"),
        ("camera_info", arg("camera_info")),
    ]
    try:
        overrides, lens_sources = launch_overrides(arg("params_file"), {n: arg(n) for n in PARAMETER_ARGUMENTS})
    except ConfigError as exc:
        raise LaunchRefused(f"depth_defocus.launch.py: {exc}") from None
    env = {**(env or {}), LENS_SOURCES_ENV: json.dumps(lens_sources)}
    node = Node(
        package=PACKAGE,
        executable="depth_defocus_node",
        name="depth_defocus_node",
        namespace=namespace,
        parameters=[arg("params_file")] + ([overrides] if overrides else []),
        remappings=remappings,
        ros_arguments=["--log-level", arg("log_level")],
        output="screen",
        emulate_tty=True,
        additional_env=env or None,
    )
    actions = [node, RegisterEventHandler(OnProcessExit(target_action=node, on_exit=on_node_exit))]
    if rviz:
        # RViz shows the node's topics in its namespace and the camera image on the remapped topic
        from depth_defocus_ros.ros.rviz import write_rviz_config

        template = PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "depth_defocus.rviz"]).perform(context)
        rviz_config = write_rviz_config(template, namespace=namespace, image_topic=image)
        actions.append(
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                arguments=["-d", rviz_config, "-f", arg("camera_frame")],
                output="screen",
                additional_env=env or None,
            )
        )
    return actions


def on_node_exit(event, context):
    """The node ended: a failure fails the launch (exit status 1, one line), a clean end ends it."""
    reason = node_exit_reason(event.returncode, context.is_shutdown)
    if reason:
        raise LaunchRefused(f"depth_defocus.launch.py: {reason}")
    if not context.is_shutdown:
        return [Shutdown(reason="depth_defocus_node exited")]
    return None


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
            DeclareLaunchArgument(
                "image",
                default_value="image",
                description="camera image topic (sensor_msgs/Image), remapped to 'image'",
            ),
            DeclareLaunchArgument(
                "image_compressed",
                default_value="",
                description="compressed image topic, remapped to 'image/compressed' (empty: <image>/compressed)",
            ),
            DeclareLaunchArgument(
                "camera_info", default_value="camera_info", description="CameraInfo topic, remapped to 'camera_info'"
            ),
            DeclareLaunchArgument(
                "params_file",
                default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "depth_defocus.yaml"]),
                description="parameter file (/**: ros__parameters: form); must exist",
            ),
            DeclareLaunchArgument(
                "focal_length_mm", default_value="", description="lens focal length, mm (empty: from params_file)"
            ),
            DeclareLaunchArgument("f_number", default_value="", description="lens f-number (empty: from params_file)"),
            DeclareLaunchArgument(
                "focus_distance_m", default_value="", description="lens focus distance, m (empty: from params_file)"
            ),
            DeclareLaunchArgument(
                "focus_side", default_value="", description="auto | front | behind (empty: from params_file)"
            ),
            DeclareLaunchArgument(
                "max_relative_error",
                default_value="",
                description="publish depth only where its expected relative error is at most this (empty: from "
                "params_file). Only the arguments listed here exist: an unknown name is ignored by launch",
            ),
            DeclareLaunchArgument(
                "device", default_value="", description="auto | cuda | cpu (empty: from params_file)"
            ),
            DeclareLaunchArgument(
                "model_path",
                default_value="",
                description="checkpoint .pt (empty: from params_file; there empty = shipped weights)",
            ),
            DeclareLaunchArgument(
                "image_transport", default_value="", description="raw | compressed (empty: from params_file)"
            ),
            DeclareLaunchArgument(
                "reliable_qos",
                default_value="",
                description="true | false: subscribe with reliable QoS (empty: from params_file)",
            ),
            DeclareLaunchArgument(
                "large_frames",
                default_value="true",
                description="node and RViz use config/fastdds_large_frames.xml (Fast DDS shared memory for "
                "large images) unless FASTDDS_DEFAULT_PROFILES_FILE is set; give the camera the same file",
            ),
            DeclareLaunchArgument(
                "rviz", default_value="false", description="start RViz with config/depth_defocus.rviz"
            ),
            DeclareLaunchArgument(
                "camera_frame",
                default_value="camera_optical_frame",
                description="RViz fixed frame: the camera's optical frame_id",
            ),
            DeclareLaunchArgument("log_level", default_value="info", description="log level of the node"),
            OpaqueFunction(function=launch_setup),
        ]
    )
