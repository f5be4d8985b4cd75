"""The node as its own process (``--ros-args --params-file``), talked to over DDS from this one;
and the ``depth-defocus demo`` command. Each test uses its own ROS domain so that parallel runs do
not see each other."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

pytest.importorskip("rclpy", reason="needs the ROS 2 wheels (pip install -r requirements.txt)")

from ros_helpers import camera, get_parameters, list_parameters  # noqa: E402
from sensor_msgs.msg import CompressedImage  # noqa: E402
from tiny_checkpoint import make_tiny_checkpoint  # noqa: E402

from depth_defocus_ros.ros.conversions import image_to_numpy  # noqa: E402
from depth_defocus_ros.ros.harness import RosHarness, stop_process, wait_until  # noqa: E402
from depth_defocus_ros.ros.params import PARAM_NAMES, load_params_yaml  # noqa: E402
from depth_defocus_ros.ros.pointcloud import Intrinsics  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "depth_defocus.yaml"
NODE = "/depth_defocus_node"
W, H = 320, 240
RGB = np.ascontiguousarray(cv2.resize(cv2.imread(str(ROOT / "data/samples/frame_002.png")), (W, H))[:, :, ::-1])
# parameters the middleware declares on every node
STANDARD = {"use_sim_time", "start_type_description_service"}

pytestmark = pytest.mark.slow  # each starts a Python + torch process (a few seconds)


def domain(k: int) -> int:
    """A ROS domain of its own for test k (1..100), away from this session's ROS_DOMAIN_ID."""
    base = int(os.environ.get("ROS_DOMAIN_ID", "0"))
    return 1 + (base + 37 + 11 * k) % 100


def env_for(dom: int) -> dict:
    env = dict(os.environ, ROS_DOMAIN_ID=str(dom), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def start_node(tmp_path, dom, *ros_args):
    log = open(tmp_path / "node.log", "w")  # closed with the process
    cmd = [sys.executable, "-m", "depth_defocus_ros.ros.node", "--ros-args", *ros_args]
    return subprocess.Popen(cmd, cwd=ROOT, env=env_for(dom), stdout=log, stderr=subprocess.STDOUT), log


def stop(proc, log, timeout=20.0) -> int:
    rc = stop_process(proc, timeout)
    log.close()
    return rc


@pytest.fixture
def tiny(tmp_path):
    return make_tiny_checkpoint(tmp_path / "tiny.pt")


def test_params_file_every_parameter_declared_and_applied_over_dds(tmp_path, tiny):
    """config/depth_defocus.yaml as it ships: every parameter is declared with its YAML value, the
    node serves a camera in another process, and SIGINT ends it cleanly (exit 0)."""
    dom = domain(0)
    proc, log = start_node(tmp_path, dom, "--params-file", str(CONFIG), "-p", f"model_path:={tiny}")
    h = RosHarness(domain_id=dom)
    try:
        cam = camera(h)
        assert cam.wait_connected(timeout=60.0), (tmp_path / "node.log").read_text()[-3000:]
        names = set(list_parameters(cam, NODE)) - STANDARD
        names = {n for n in names if not n.startswith("qos_overrides.")}
        yaml_values = load_params_yaml(CONFIG)
        assert names == set(yaml_values) == set(PARAM_NAMES)  # every YAML key is declared, and nothing else
        got = get_parameters(cam, NODE, sorted(yaml_values))
        assert got == dict(yaml_values, model_path=str(tiny))

        stamp = cam.send(RGB, intr=Intrinsics(280.0, 280.0, 160.0, 120.0))
        out = cam.wait_outputs(stamp, ("depth/image", "depth/camera_info", "defocus/image", "points"), 30.0)
        assert out is not None, (tmp_path / "node.log").read_text()[-3000:]
        assert out["points"].header.frame_id == "cam" and (out["points"].width, out["points"].height) == (W, H)
        assert list(out["depth/camera_info"].k)[0] == 280.0
    finally:
        h.close()
        rc = stop(proc, log)
    text = (tmp_path / "node.log").read_text()
    assert rc == 0, text[-3000:]
    assert "ready:" in text and "Traceback" not in text


def test_every_yaml_value_is_applied(tmp_path, tiny):
    """A params file with every value changed: the node runs with each of them."""
    values = dict(load_params_yaml(CONFIG))
    changed = dict(
        model_path=str(tiny),
        device="cpu",
        half=False,
        image_transport="compressed",
        reliable_qos=True,
        focus_distance_m=2.5,
        f_number=2.8,
        focal_length_mm=50.0,
        fx=500.0,
        min_depth_m=0.3,
        max_depth_m=15.0,
        focus_side="front",
        max_relative_error=900.0,
        publish_points=False,
        point_decimation=2,
        uncertainty=True,
        max_uncertainty_m=5.0,
        preview_max_coc_px=8.0,
        diagnostics_period_s=0.5,
    )
    assert set(changed) == set(values) and all(changed[k] != values[k] for k in values)
    path = tmp_path / "my_camera.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": changed}}))
    dom = domain(1)
    proc, log = start_node(tmp_path, dom, "--params-file", str(path))
    h = RosHarness(domain_id=dom)
    try:
        cam = camera(h)
        assert cam.wait_connected(timeout=60.0), (tmp_path / "node.log").read_text()[-3000:]
        assert get_parameters(cam, NODE, sorted(changed)) == changed
        msg = CompressedImage(format="jpeg")  # image_transport=compressed
        msg.data = cv2.imencode(".jpg", RGB[:, :, ::-1])[1].tobytes()
        stamp = cam.send(image=msg)  # no CameraInfo: fx = 500 (the parameter)
        out = cam.wait_outputs(stamp, ("depth/image", "depth/uncertainty", "depth/camera_info"), 30.0)
        assert out is not None, (tmp_path / "node.log").read_text()[-3000:]
        assert list(out["depth/camera_info"].k)[0] == 500.0
        d = image_to_numpy(out["depth/image"])
        # focus_side=front and max_relative_error=900: everything in front of 2.5 m is published
        assert np.isfinite(d).mean() > 0.9 and np.nanmin(d) >= 0.3 and np.nanmax(d) <= 2.5 + 1e-4
        assert not wait_until(lambda: cam.get("points", stamp) is not None, 1.0)  # publish_points=false
        diag = cam.wait_diag(NODE, lambda v: True, 10.0)
        assert diag["device"] == "cpu" and diag["precision"] == "fp32"
    finally:
        h.close()
        assert stop(proc, log) == 0, (tmp_path / "node.log").read_text()[-3000:]


def test_bad_checkpoint_is_one_fatal_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    r = subprocess.run(
        [sys.executable, "-m", "depth_defocus_ros.ros.node", "--ros-args", "-p", f"model_path:={bad}"],
        cwd=ROOT,
        env=env_for(domain(2)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    out = r.stdout + r.stderr
    assert "Traceback" not in out and "cannot start" in out and "bad.pt" in out


def test_demo_writes_depth_defocus_pngs_ply_and_summary(tmp_path, tiny):
    out = tmp_path / "demo"
    t0 = time.monotonic()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "depth_defocus_ros",
            "demo",
            "--model",
            str(tiny),
            "--out",
            str(out),
            "--frames",
            "3",
            "--rate",
            "5",
        ],
        cwd=ROOT,
        env=env_for(domain(3)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert time.monotonic() - t0 < 120
    s = json.loads((out / "summary.json").read_text())
    assert s["frames_published"] == 3 and s["frames_out"] == 3  # the player waits for each frame (its own lens)
    assert s["frames_in"] == s["frames_processed"] + s["frames_dropped"] and s["bad_input"] == 0
    lenses = [(r["sample"], r["coc_mae"], r["coverage"]) for r in s["frames"]]
    assert [n for n, *_ in lenses] == ["frame_000", "frame_001", "frame_002"] and all(m > 0 for _, m, _ in lenses)
    assert s["latency_ms_mean"] > 0 and s["device"] == "cpu"
    for rec in s["frames"]:
        n = rec["frame"]
        depth = cv2.imread(str(out / f"depth_{n:03d}.png"))
        assert depth.shape == (500, 741, 3)
        assert cv2.imread(str(out / f"defocus_{n:03d}.png")).shape == (500, 741, 3)
        mm = cv2.imread(str(out / f"depth_{n:03d}_mm.png"), cv2.IMREAD_UNCHANGED)
        assert mm.dtype == np.uint16 and mm.shape == (500, 741)
    head = (out / "points.ply").read_bytes()[:300]
    assert head.startswith(b"ply\nformat binary_little_endian 1.0")
    overview = cv2.imread(str(out / "overview.png"))
    assert overview.shape[0] > overview.shape[1] * 0.4 and overview.shape[1] >= 1000  # 3 rows of 5 panels
    assert "frames: published 3" in r.stdout
