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
    lens_file_for,
    record_command,
    record_topics,
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
