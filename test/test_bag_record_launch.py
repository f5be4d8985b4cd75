"""launch/record.launch.py and what it runs.

launch / launch_ros are not installable from PyPI and are not faked here: the launch file is checked
by its syntax tree (standard launch API, every declared argument used, the defaults are the topics
of :mod:`depth_defocus_ros.bags.record`), and the command and lens file it produces come from
:mod:`depth_defocus_ros.bags.record`, which is tested directly against what bag2dataset reads."""

import ast
from pathlib import Path

import pytest
import yaml

from depth_defocus_ros.bags.convert import ConvertOptions
from depth_defocus_ros.bags.reader import BagSource, select_topics
from depth_defocus_ros.bags.record import (
    DEFAULT_TOPICS,
    LENS_ARGUMENTS,
    finish_recording,
    lens_file_for,
    record_command,
    record_topics,
    recorder_problem,
    write_lens_file,
)
from depth_defocus_ros.bags.scan import bag_lens

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "launch" / "record.launch.py"


def _tree():
    src = LAUNCH.read_text()
    compile(src, str(LAUNCH), "exec")
    return ast.parse(src)


def _declared(tree) -> dict:
    """{argument name: default expression source} of every DeclareLaunchArgument."""
    out = {}
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "DeclareLaunchArgument":
            name = ast.literal_eval(n.args[0])
            default = next((k.value for k in n.keywords if k.arg == "default_value"), None)
            out[name] = ast.unparse(default) if default is not None else None
    return out


def test_syntax_standard_launch_api_and_arguments():
    tree = _tree()
    assert "generate_launch_description" in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    imports = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    for need in [
        ("launch", "LaunchDescription"),
        ("launch.actions", "DeclareLaunchArgument"),
        ("launch.actions", "ExecuteProcess"),
        ("launch.actions", "OpaqueFunction"),
        ("launch.substitutions", "LaunchConfiguration"),
        ("depth_defocus_ros.bags.record", "record_command"),
        ("depth_defocus_ros.bags.record", "write_lens_file"),
    ]:
        assert need in imports, need
    declared = _declared(tree)
    assert {
        "output",
        "extra_topics",
        "compressed_rgb",
        "max_bag_duration",
        "storage_preset",
        *DEFAULT_TOPICS,
        *LENS_ARGUMENTS,
    } == set(declared)
    for name in DEFAULT_TOPICS:
        assert declared[name] == f"DEFAULT_TOPICS[{name!r}]"
    # every declared argument is read in launch_setup (arg("name") or the LENS_ARGUMENTS loop)
    used = {
        ast.literal_eval(n.args[0])
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "arg" and isinstance(n.args[0], ast.Constant)
    }
    assert set(declared) - set(LENS_ARGUMENTS) <= used
    assert "record.launch.py" in (ROOT / "docs" / "recording.md").read_text()


def test_record_command_topics_and_lens_file_are_what_bag2dataset_reads(tmp_path):
    out = tmp_path / "bags" / "desk_f1.8"
    topics = record_topics(**DEFAULT_TOPICS, extra_topics="/tf /tf_static")
    cmd = record_command(str(out), topics)
    assert cmd == ["ros2", "bag", "record", "-s", "mcap", "-o", str(out), *topics]
    assert topics[3:] == ["/tf", "/tf_static"]
    # bag2dataset auto-detects exactly these topics in such a bag
    types_ = {
        topics[0]: "sensor_msgs/msg/Image",
        topics[1]: "sensor_msgs/msg/CameraInfo",
        topics[2]: "sensor_msgs/msg/Image",
        "/tf": "tf2_msgs/msg/TFMessage",
    }
    assert select_topics(types_, "bag") == (topics[0], topics[2], topics[1])  # (rgb, depth, camera_info)
    # the lens file, as launch arguments (strings) give it, is read back by bag2dataset
    path = write_lens_file(str(out), {"focal_length_mm": "35", "f_number": "1.8", "focus_distance_m": "1.2"})
    assert path == lens_file_for(str(out)) == out.with_name("desk_f1.8.lens.yaml")
    assert yaml.safe_load(path.read_text()) == {"focal_length_mm": 35.0, "f_number": 1.8, "focus_distance_m": 1.2}
    out.mkdir()
    lens, source = bag_lens(ConvertOptions(), BagSource(out, "rosbag2", [out]), {})
    assert lens == {"focal_length_m": 0.035, "f_number": 1.8, "focus_distance_m": 1.2} and "lens.yaml" in source


def test_compressed_rgb_file_splitting_and_bad_values(tmp_path):
    topics = record_topics(**DEFAULT_TOPICS, compressed_rgb=True)
    assert topics[0] == DEFAULT_TOPICS["rgb_topic"] + "/compressed" and len(topics) == 3
    cmd = record_command("b", topics, max_bag_duration="60", storage_preset="zstd_fast")
    assert cmd[cmd.index("--max-bag-duration") + 1] == "60"
    assert cmd[cmd.index("--storage-preset-profile") + 1] == "zstd_fast"
    assert "--max-bag-duration" not in record_command("b", topics, max_bag_duration="0")
    with pytest.raises(ValueError, match="storage_preset"):
        record_command("b", topics, storage_preset="lz77")
    assert write_lens_file(str(tmp_path / "x"), {"focal_length_mm": "", "f_number": ""}) is None
    with pytest.raises(ValueError, match="f_number"):
        write_lens_file(str(tmp_path / "y"), {"f_number": "f/1.8"})
    with pytest.raises(ValueError, match="focus_distance_m"):
        write_lens_file(str(tmp_path / "z"), {"focus_distance_m": "-1"})


def _ros_machine(tmp_path, monkeypatch, ros2=True, rosbag2=True, mcap=True):
    """PATH and AMENT_PREFIX_PATH of a ROS machine with or without ``ros2``, rosbag2 and its MCAP
    storage plugin: a real ament index layout (as apt and colcon install it), read by the real
    ament_index_python; ``ros2`` an executable file on PATH."""
    index = tmp_path / "opt" / "share" / "ament_index" / "resource_index"
    (index / "packages").mkdir(parents=True)
    (index / "rosbag2_storage__pluginlib__plugin").mkdir()
    if rosbag2:
        (index / "packages" / "ros2bag").touch()
    if mcap:
        (index / "rosbag2_storage__pluginlib__plugin" / "rosbag2_storage_mcap").touch()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if ros2:
        (bin_dir / "ros2").write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / "ros2").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "opt"))


@pytest.mark.parametrize(
    "machine, words",
    [
        (dict(ros2=False), "'ros2' is not on PATH"),
        (dict(rosbag2=False), "apt install ros-$ROS_DISTRO-rosbag2"),
        (dict(mcap=False), "apt install ros-$ROS_DISTRO-rosbag2-storage-mcap"),
    ],
)
def test_recording_that_cannot_start_is_refused_before_anything_is_written(tmp_path, monkeypatch, machine, words):
    _ros_machine(tmp_path, monkeypatch, **machine)
    problem = recorder_problem(str(tmp_path / "bag"))
    assert problem is not None and words in problem and "\n" not in problem


def test_recorder_check_passes_on_a_full_machine_and_refuses_an_existing_output(tmp_path, monkeypatch):
    _ros_machine(tmp_path, monkeypatch)
    assert recorder_problem(str(tmp_path / "bag")) is None
    (tmp_path / "bag").mkdir()
    assert "already exists" in recorder_problem(str(tmp_path / "bag"))


def test_a_failed_recording_leaves_no_lens_file_and_says_why(tmp_path):
    lens = {"focal_length_mm": "35", "f_number": "1.8", "focus_distance_m": "1.2"}
    # the recorder died before writing anything ("invalid choice: 'bag'"): no orphan lens file
    out = tmp_path / "died"
    path = write_lens_file(str(out), lens)
    reason = finish_recording(str(out), path, 2)
    assert "exited with code 2" in reason and "no bag was written" in reason and "\n" not in reason
    assert not path.exists() and not out.exists()
    # it died after it had started writing: the bag stays with its lens file, and the exit says so
    out = tmp_path / "crashed"
    path = write_lens_file(str(out), lens)
    out.mkdir()
    (out / "crashed_0.mcap").write_bytes(b"\x89MCAP0\r\n")
    reason = finish_recording(str(out), path, 1)
    assert "may be incomplete" in reason and path.exists()
    # a clean stop (Ctrl-C: exit 0) with a bag: nothing to say, lens file kept
    out = tmp_path / "good"
    path = write_lens_file(str(out), lens)
    out.mkdir()
    (out / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")
    assert finish_recording(str(out), path, 0) is None and path.exists()
    # exit 0 but no bag (nothing was ever written): still a failure, and no orphan lens file
    out = tmp_path / "empty"
    path = write_lens_file(str(out), lens)
    out.mkdir()
    assert "without writing a bag" in finish_recording(str(out), path, 0) and not path.exists()


def test_launch_file_checks_first_and_fails_the_launch_when_the_recorder_dies():
    """The order in record.launch.py: check (raise: launch exits 1 with the reason), write the lens
    file, start the recorder, and on its exit finish_recording (a reason raises: exit 1)."""
    src = LAUNCH.read_text()
    body = src[src.index("def launch_setup") :]
    order = [body.index(s) for s in ("recorder_problem(output)", "write_lens_file(", "ExecuteProcess(")]
    assert order == sorted(order)
    assert "OnProcessExit(target_action=recorder, on_exit=on_recorder_exit)" in body
    handler = body[body.index("def on_recorder_exit") :]
    assert "finish_recording(output, path, event.returncode)" in handler and "raise RecordingFailed" in handler
    imports = {(n.module, a.name) for n in ast.walk(_tree()) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert ("launch.actions", "RegisterEventHandler") in imports and (
        "launch.event_handlers",
        "OnProcessExit",
    ) in imports
