"""launch/record.launch.py: checked by its syntax tree and run against stand-ins for the launch API
(launch is not installable from PyPI), and its output checked against what bag2dataset reads."""

import ast
import importlib.util
import sys
import types
from pathlib import Path

import yaml

from depth_defocus_ros.bags.convert import ConvertOptions, bag_lens
from depth_defocus_ros.bags.reader import BagSource, select_topics

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "launch" / "record.launch.py"


def test_syntax_and_standard_launch_api():
    src = LAUNCH.read_text()
    tree = ast.parse(src)
    compile(src, str(LAUNCH), "exec")
    assert "generate_launch_description" in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    imports = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    for need in [("launch", "LaunchDescription"), ("launch.actions", "DeclareLaunchArgument"),
                 ("launch.actions", "ExecuteProcess"), ("launch.actions", "OpaqueFunction"),
                 ("launch.substitutions", "LaunchConfiguration")]:  # fmt: skip
        assert need in imports, need
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert {"ros2", "bag", "record", "-s", "mcap", "-o"} <= strings
    assert "record.launch.py" in (ROOT / "docs" / "recording.md").read_text()


class _Action:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _Config:
    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context.launch_configurations[self.name]


def _load_with_stub_launch(monkeypatch):
    launch = types.ModuleType("launch")
    launch.LaunchDescription = lambda actions: list(actions)
    actions = types.ModuleType("launch.actions")
    for name in ("DeclareLaunchArgument", "ExecuteProcess", "LogInfo", "OpaqueFunction"):
        setattr(actions, name, type(name, (_Action,), {}))
    subs = types.ModuleType("launch.substitutions")
    subs.LaunchConfiguration = _Config
    for name, mod in (("launch", launch), ("launch.actions", actions), ("launch.substitutions", subs)):
        monkeypatch.setitem(sys.modules, name, mod)
    spec = importlib.util.spec_from_file_location("record_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_launch_records_mcap_and_writes_lens_file_bag2dataset_reads(tmp_path, monkeypatch):
    mod = _load_with_stub_launch(monkeypatch)
    ld = mod.generate_launch_description()
    declared = {a.args[0]: a.kwargs.get("default_value") for a in ld if type(a).__name__ == "DeclareLaunchArgument"}
    assert {"output", "rgb_topic", "info_topic", "depth_topic", "focal_length_mm", "f_number",
            "focus_distance_m"} <= set(declared)  # fmt: skip
    opaque = [a for a in ld if type(a).__name__ == "OpaqueFunction"][0]
    out = tmp_path / "bags" / "desk_f1.8"
    ctx = types.SimpleNamespace(launch_configurations={**declared, "output": str(out), "focal_length_mm": "35",
                                                       "f_number": "1.8", "focus_distance_m": "1.2"})  # fmt: skip
    acts = opaque.kwargs["function"](ctx)
    proc = [a for a in acts if type(a).__name__ == "ExecuteProcess"][0]
    cmd = proc.kwargs["cmd"]
    assert cmd[:7] == ["ros2", "bag", "record", "-s", "mcap", "-o", str(out)]
    topics = cmd[7:]
    assert topics[:3] == [declared["rgb_topic"], declared["info_topic"], declared["depth_topic"]]
    # bag2dataset auto-detects exactly these topics in such a bag
    types_ = {topics[0]: "sensor_msgs/msg/Image", topics[1]: "sensor_msgs/msg/CameraInfo",
              topics[2]: "sensor_msgs/msg/Image", "/tf": "tf2_msgs/msg/TFMessage"}  # fmt: skip
    assert select_topics(types_, "bag") == (topics[0], topics[2], topics[1])  # (rgb, depth, camera_info)
    # and reads the lens file written next to the bag
    lens_file = out.with_name(out.name + ".lens.yaml")
    assert yaml.safe_load(lens_file.read_text()) == {"focal_length_mm": 35.0, "f_number": 1.8, "focus_distance_m": 1.2}
    out.mkdir()
    lens, source = bag_lens(ConvertOptions(), BagSource(out, "rosbag2", [out]), {})
    assert lens == {"focal_length_m": 0.035, "f_number": 1.8, "focus_distance_m": 1.2} and "lens.yaml" in source
    # compressed RGB and file splitting
    ctx.launch_configurations.update(compressed_rgb="true", max_bag_duration="60", focal_length_mm="")
    cmd = [a for a in opaque.kwargs["function"](ctx) if type(a).__name__ == "ExecuteProcess"][0].kwargs["cmd"]
    assert declared["rgb_topic"] + "/compressed" in cmd and cmd[cmd.index("--max-bag-duration") + 1] == "60"
