"""Launch file, parameter file and RViz config, checked against the node's real parameters and topics.

launch / launch_ros / rviz2 are not installable from PyPI, so the launch file is checked by its
syntax tree: every launch argument that becomes a parameter names a real parameter, every remap
names a real subscribed topic, the files it points at exist and are installed by setup.py.
"""

import ast
import re
from pathlib import Path

import pytest
import yaml

from depth_defocus_ros.ros.params import (
    LAUNCH_PARAMETER_ARGUMENTS,
    PARAM_NAMES,
    PARAMS,
    ConfigError,
    config_from_values,
    launch_overrides,
    lens_report,
    load_params_yaml,
)
from depth_defocus_ros.ros.rviz import resolve_topic, rviz_config_text, rviz_topics
from depth_defocus_ros.rosenv import large_frames_env, missing_package, node_exit_reason

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "launch" / "depth_defocus.launch.py"
RVIZ = ROOT / "config" / "depth_defocus.rviz"
INPUTS = {"image", "image/compressed", "camera_info"}
OUTPUTS = {
    "depth/image",
    "depth/camera_info",
    "defocus/image",
    "depth/uncertainty",
    "depth/preview",
    "defocus/preview",
    "points",
}


def test_params_yaml_has_every_parameter_at_its_default():
    raw = yaml.safe_load((ROOT / "config" / "depth_defocus.yaml").read_text())
    assert list(raw) == ["/**"] and list(raw["/**"]) == ["ros__parameters"]  # wildcard: any node name/namespace
    values = load_params_yaml(ROOT / "config" / "depth_defocus.yaml")
    assert sorted(values) == sorted(PARAM_NAMES)
    for p in PARAMS:
        assert type(values[p.name]) is type(p.default) and values[p.name] == p.default, p.name
    config_from_values(values)  # and they are valid together
    for fixed in (
        "model_path",
        "device",
        "image_transport",
        "focus_distance_m",
        "f_number",
        "focal_length_mm",
        "fx",
        "min_depth_m",
        "max_depth_m",
        "publish_points",
    ):
        assert fixed in values  # names fixed by DESIGN.md


def test_node_topics_match_design():
    from depth_defocus_ros.ros import node  # needs rclpy for the message types

    assert set(node.INPUT_TOPICS) == INPUTS
    assert set(node.OUTPUT_TOPICS) == OUTPUTS


def _calls(tree, name):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name]


def _kw(call, name):
    return next((k.value for k in call.keywords if k.arg == name), None)


def test_launch_file_arguments_remaps_and_parameters_are_real():
    src = LAUNCH.read_text()
    tree = ast.parse(src)
    compile(src, str(LAUNCH), "exec")
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in funcs
    imports = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    for mod, name in (
        ("launch", "LaunchDescription"),
        ("launch.actions", "DeclareLaunchArgument"),
        ("launch.substitutions", "LaunchConfiguration"),
        ("launch_ros.actions", "Node"),
    ):
        assert (mod, name) in imports

    declared = {c.args[0].value for c in _calls(tree, "DeclareLaunchArgument")}
    assert {"namespace", "image", "camera_info", "params_file", "device", "model_path", "rviz"} <= declared
    used = {c.args[0].value for c in _calls(tree, "LaunchConfiguration") if isinstance(c.args[0], ast.Constant)}
    used |= set(re.findall(r'arg\("(\w+)"\)', src))
    assert used <= declared, used - declared  # no typo'd argument names

    consts = {}
    for n in tree.body:
        if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name):
            try:
                consts[n.targets[0].id] = ast.literal_eval(n.value)
            except ValueError:  # a name imported from the package
                consts[n.targets[0].id] = getattr(n.value, "id", None)
    assert consts["PARAMETER_ARGUMENTS"] == "LAUNCH_PARAMETER_ARGUMENTS"
    assert set(LAUNCH_PARAMETER_ARGUMENTS) <= set(PARAM_NAMES) and set(LAUNCH_PARAMETER_ARGUMENTS) <= declared
    # the lens can be set on the command line; an unknown name is ignored by launch, so --show-args names them
    assert {"focal_length_mm", "f_number", "focus_distance_m", "focus_side", "max_relative_error"} <= declared

    nodes = {ast.literal_eval(_kw(c, "executable")): c for c in _calls(tree, "Node")}
    assert set(nodes) == {"depth_defocus_node", "rviz2"}
    dn = nodes["depth_defocus_node"]
    assert _kw(dn, "package").id == "PACKAGE" and consts["PACKAGE"] == "depth_defocus_ros"
    assert "depth_defocus_node = depth_defocus_ros.ros.node:main" in (ROOT / "setup.py").read_text()
    assert getattr(_kw(dn, "remappings"), "id", None) == "remappings"
    remaps = next(
        n.value for n in ast.walk(tree) if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "remappings"
    )
    remap_from = {ast.literal_eval(e.elts[0]) for e in remaps.elts}
    assert remap_from == INPUTS  # every input topic can be remapped, and only real ones
    assert _kw(dn, "namespace") is not None and _kw(dn, "parameters") is not None

    rv = nodes["rviz2"]
    assert ast.literal_eval(_kw(rv, "package")) == "rviz2"
    args = _kw(rv, "arguments")
    assert [e.value for e in args.elts if isinstance(e, ast.Constant)] == ["-d", "-f"]
    assert "depth_defocus.rviz" in src and "depth_defocus.yaml" in src


def test_launch_and_config_files_are_installed():
    setup = (ROOT / "setup.py").read_text()
    assert 'glob("launch/*.py")' in setup
    assert 'glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")' in setup
    assert LAUNCH.name.endswith(".launch.py") and RVIZ.is_file()


def _ament_prefix(root: Path, packages=()) -> Path:
    """A real ament prefix (the index layout colcon and apt install) registering ``packages``."""
    index = root / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True, exist_ok=True)
    for p in packages:
        (index / p).touch()
    return root


def test_rviz_true_refuses_before_anything_starts_without_rviz2(tmp_path, monkeypatch):
    """rviz:=true on a machine without rviz2: the launch raises (launch logs the reason on one line
    and exits 1) before the node is created, so no node is left running alone."""
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(_ament_prefix(tmp_path / "a", ["depth_defocus_ros"])))
    problem = missing_package("rviz2", "rviz2", "rviz:=true")
    assert "rviz2" in problem and "apt install ros-$ROS_DISTRO-rviz2" in problem and "\n" not in problem
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(_ament_prefix(tmp_path / "b", ["rviz2"])))
    assert missing_package("rviz2", "rviz2", "rviz:=true") is None
    monkeypatch.delenv("AMENT_PREFIX_PATH")
    assert missing_package("rviz2", "rviz2", "rviz:=true") is not None  # no ROS environment at all
    # in the launch file the check comes first: it raises before any Node(...) is built
    src = LAUNCH.read_text()
    setup_fn = src[src.index("def launch_setup") :]
    assert 'missing_package("rviz2"' in setup_fn and "raise LaunchRefused" in setup_fn
    assert setup_fn.index("raise LaunchRefused") < setup_fn.index("Node(")


def test_large_frames_profile_is_shipped_and_applied_unless_the_user_has_one():
    """large_frames:=true gives the node (and RViz) the shipped Fast DDS profile: shared memory with
    a segment that holds a 1280x720 rgb8 frame and a 640x480 point cloud; a user's profile wins."""
    import xml.etree.ElementTree as ET

    xml = ROOT / "config" / "fastdds_large_frames.xml"
    ns = {"d": "http://www.eprosima.com"}
    root = ET.parse(xml).getroot()
    shm = [t for t in root.iterfind(".//d:transport_descriptor", ns) if t.findtext("d:type", namespaces=ns) == "SHM"]
    assert len(shm) == 1 and int(shm[0].findtext("d:segment_size", namespaces=ns)) >= 2 * 1280 * 720 * 3
    participant = root.find(".//d:participant", ns)
    assert participant.get("is_default_profile") == "true"
    used = [e.text for e in participant.iterfind(".//d:userTransports/d:transport_id", ns)]
    assert shm[0].findtext("d:transport_id", namespaces=ns) in used and len(used) == 2  # SHM and UDP

    env = large_frames_env(True, "/opt/ws/share/depth_defocus_ros", {})
    assert env == {"FASTDDS_DEFAULT_PROFILES_FILE": "/opt/ws/share/depth_defocus_ros/config/fastdds_large_frames.xml"}
    assert large_frames_env(False, "/s", {}) == {}
    assert large_frames_env(True, "/s", {"FASTDDS_DEFAULT_PROFILES_FILE": "/mine.xml"}) == {}
    assert large_frames_env(True, "/s", {"FASTRTPS_DEFAULT_PROFILES_FILE": "/old.xml"}) == {}
    src = LAUNCH.read_text()
    assert src.count("additional_env=env or None") == 2  # the node and RViz
    assert 'DeclareLaunchArgument(\n                "large_frames",\n                default_value="true"' in src


def test_rviz_config_shows_camera_depth_defocus_points_in_the_camera_frame():
    doc = yaml.safe_load(RVIZ.read_text())
    vm = doc["Visualization Manager"]
    camera = yaml.safe_load((ROOT / "data" / "samples" / "camera.yaml").read_text())
    assert vm["Global Options"]["Fixed Frame"] == camera["frame_id"]
    classes = [d["Class"] for d in vm["Displays"]]
    assert classes.count("rviz_default_plugins/Image") >= 3 and "rviz_default_plugins/PointCloud2" in classes
    topics = rviz_topics(doc)
    assert set(topics.values()) <= {"/image"} | {"/" + t for t in OUTPUTS}
    assert {"/image", "/points", "/depth/preview", "/defocus/preview"} <= set(topics.values())
    cloud = next(d for d in vm["Displays"] if d["Class"] == "rviz_default_plugins/PointCloud2")
    assert cloud["Color Transformer"] == "RGB8" and cloud["Topic"]["Reliability Policy"] == "Reliable"


def test_rviz_config_follows_namespace_and_camera_remap():
    assert resolve_topic("image", "") == "/image" and resolve_topic("depth/image", "/front/") == "/front/depth/image"
    assert resolve_topic("/abs/img", "front") == "/abs/img"
    text = rviz_config_text(RVIZ.read_text(), namespace="front", image_topic="/camera/image_raw", fixed_frame="cam")
    doc = yaml.safe_load(text)
    topics = rviz_topics(doc)
    assert topics["Camera image"] == "/camera/image_raw"
    assert topics["Point cloud"] == "/front/points" and topics["Depth"] == "/front/depth/preview"
    assert doc["Visualization Manager"]["Global Options"]["Fixed Frame"] == "cam"
    # relative camera topic: resolved in the node's namespace, like the launch file's remapping
    assert (
        rviz_topics(yaml.safe_load(rviz_config_text(RVIZ.read_text(), "front", "cam/image")))["Camera image"]
        == "/front/cam/image"
    )


def test_node_doc_lists_every_parameter_and_topic():
    doc = (ROOT / "docs" / "ros_node.md").read_text()
    for heading in ("## Subscribed topics", "## Published topics", "## Parameters"):
        assert heading in doc
    params = doc[doc.index("## Parameters") : doc.index("## Behaviour")]
    for p in PARAMS:
        assert f"| `{p.name}` |" in params, p.name
    for t in INPUTS | OUTPUTS:
        assert f"| `{t}` |" in doc, t


def test_every_launch_argument_is_documented():
    tree = ast.parse(LAUNCH.read_text())
    declared = {c.args[0].value for c in _calls(tree, "DeclareLaunchArgument")}
    doc = (ROOT / "docs" / "ros_node.md").read_text()
    table = doc[doc.index("## Launch") : doc.index("## RViz")]
    for name in declared:
        assert f"`{name}`" in table, name
        assert f"    {name} " in LAUNCH.read_text()  # and in the launch file's own docstring
    assert "## Frames that arrive" in doc and "scripts/bench_transport.py" in doc


def test_lens_launch_arguments_override_the_params_file_and_are_checked(tmp_path):
    cfg = ROOT / "config" / "depth_defocus.yaml"
    none = dict.fromkeys(LAUNCH_PARAMETER_ARGUMENTS, "")
    overrides, sources = launch_overrides(
        cfg, {**none, "f_number": "2.8", "focus_distance_m": "3", "focus_side": "front"}
    )
    assert overrides == {"f_number": 2.8, "focus_distance_m": 3.0, "focus_side": "front"}
    assert type(overrides["focus_distance_m"]) is float  # a ROS double parameter, even when typed as '3'
    assert sources["f_number"] == "launch argument" and sources["focal_length_mm"].startswith("params file")
    for bad, why in (
        ({"f_number": "-1.8"}, "f_number must be in"),
        ({"f_number": "fast"}, "not a number"),
        ({"focus_side": "left"}, "focus_side must be one of"),
        ({"focal_length_mm": "85", "focus_distance_m": "0.05"}, "greater than the focal length"),
        ({"max_relative_error": "0"}, "max_relative_error must be in"),
        ({"reliable_qos": "maybe"}, "not true or false"),
    ):
        with pytest.raises(ConfigError, match=why):
            launch_overrides(cfg, {**none, **bad})
    with pytest.raises(ConfigError, match="does not exist"):
        launch_overrides(tmp_path / "no_such.yaml", none)
    # the file's own values are checked too (a params file with f_number: -1.8 stops the launch)
    broken = tmp_path / "broken.yaml"
    broken.write_text(cfg.read_text().replace("f_number: 1.8", "f_number: -1.8"))
    with pytest.raises(ConfigError, match="f_number"):
        launch_overrides(broken, none)


def test_lens_report_names_sources_and_warns_on_the_default_lens():
    cfg = config_from_values({})
    info, warning = lens_report(cfg)
    assert "focal_length_mm=35 (default)" in info and warning and "depth is wrong" in warning
    info, warning = lens_report(config_from_values({"f_number": 2.8}), {"f_number": "launch argument"})
    assert "f_number=2.8 (launch argument)" in info and warning is None


def test_launch_fails_when_the_node_fails_and_not_after_ctrl_c():
    assert node_exit_reason(2, launch_shutting_down=False) == (
        "depth_defocus_node exited with status 2 (its log above says why)"
    )
    assert "killed by signal 11" in node_exit_reason(-11, launch_shutting_down=False)
    assert node_exit_reason(0, launch_shutting_down=False) is None  # a clean end: launch ends with 0
    assert node_exit_reason(-2, launch_shutting_down=True) is None  # Ctrl-C: launch is already stopping
    assert node_exit_reason(1, launch_shutting_down=True) is None
    src = LAUNCH.read_text()
    assert "OnProcessExit(target_action=node, on_exit=on_node_exit)" in src and "node_exit_reason(" in src
