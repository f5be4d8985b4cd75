"""depth_defocus_node with real rclpy over DDS (in this process; the node, a camera and a listener
talk through the middleware exactly as separate processes would)."""

import math
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy", reason="needs the ROS 2 wheels (pip install -r requirements.txt)")

from rclpy.parameter import Parameter  # noqa: E402
from ros_helpers import PlaneEstimator, SlowEstimator, camera, get_parameters, set_parameters  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from tiny_checkpoint import make_tiny_checkpoint  # noqa: E402

from depth_defocus_ros.ros.conversions import (  # noqa: E402
    camera_info_from_intrinsics,
    image_to_numpy,
    pointcloud2_to_array,
)
from depth_defocus_ros.ros.harness import RosHarness, wait_until  # noqa: E402
from depth_defocus_ros.ros.node import OUTPUT_TOPICS, DepthDefocusNode  # noqa: E402
from depth_defocus_ros.ros.params import load_params_yaml  # noqa: E402
from depth_defocus_ros.ros.pointcloud import Intrinsics, unpack_rgb  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
W, H = 320, 240
INTR = Intrinsics(300.0, 305.0, 158.5, 121.0)
RGB = np.ascontiguousarray(cv2.resize(cv2.imread(str(ROOT / "data/samples/frame_001.png")), (W, H))[:, :, ::-1])
MAIN = "/t/depth_defocus_node"
ALL = tuple(t for t in OUTPUT_TOPICS if t != "depth/uncertainty")


def overrides(ckpt, **extra):
    values = load_params_yaml(ROOT / "config" / "depth_defocus.yaml")
    values.update(model_path=str(ckpt), diagnostics_period_s=0.2, **extra)
    return [Parameter(k, value=v) for k, v in values.items()]


@pytest.fixture(scope="module")
def ros(tmp_path_factory):
    ckpt = make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")
    h = RosHarness()
    yield h, ckpt
    h.close()


@pytest.fixture(scope="module")
def main(ros):
    """The node as configured by config/depth_defocus.yaml (tiny checkpoint), and a camera."""
    h, ckpt = ros
    # every depth published (front of the focus plane, any error): the checks below need finite depth
    node = h.add(
        DepthDefocusNode(
            namespace="/t",
            context=h.context,
            parameter_overrides=overrides(ckpt, focus_side="front", max_relative_error=1000.0),
        )
    )
    cam = camera(h, "/t")
    assert cam.wait_connected(topics=tuple(OUTPUT_TOPICS)), "DDS discovery between camera and node failed"
    return node, cam


def good_frame(cam, timeout=15.0, topics=ALL):
    stamp = cam.send(RGB, intr=INTR)
    out = cam.wait_outputs(stamp, topics, timeout)
    assert out is not None, f"no {topics} for a good frame"
    return stamp, out


def ok(results):
    return all(r.successful for r in results)


def test_every_output_arrives_with_type_encoding_size_stamp_frame_id(main):
    node, cam = main
    stamp, out = good_frame(cam)
    for topic, msg in out.items():
        assert isinstance(msg, OUTPUT_TOPICS[topic]), topic
        assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == stamp, topic
        assert msg.header.frame_id == "cam", topic
    for topic, enc, bpp in (
        ("depth/image", "32FC1", 4),
        ("defocus/image", "32FC1", 4),
        ("depth/preview", "bgr8", 3),
        ("defocus/preview", "bgr8", 3),
    ):
        m = out[topic]
        assert (m.encoding, m.width, m.height, m.step, len(m.data)) == (enc, W, H, W * bpp, W * bpp * H), topic
    depth = image_to_numpy(out["depth/image"])
    fin = np.isfinite(depth)
    assert fin.mean() > 0.5
    assert depth[fin].min() >= 0.1 and depth[fin].max() <= 20.0  # min_depth_m / max_depth_m of the YAML
    coc = image_to_numpy(out["defocus/image"])
    assert np.isfinite(coc).all() and coc.min() >= 0
    assert cam.get("depth/uncertainty", stamp) is None  # uncertainty is off by default

    ci = out["depth/camera_info"]  # matches depth/image, carries the camera's intrinsics
    assert (ci.width, ci.height) == (W, H)
    np.testing.assert_allclose(list(ci.k), INTR.k())

    pc = out["points"]
    assert (pc.height, pc.width, pc.point_step) == (H, W, 16)
    assert [(f.name, f.offset, f.datatype) for f in pc.fields] == [
        ("x", 0, 7),
        ("y", 4, 7),
        ("z", 8, 7),
        ("rgb", 12, 7),
    ]
    arr = pointcloud2_to_array(pc)
    k = Intrinsics.from_k(ci.k)
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    np.testing.assert_array_equal(np.isfinite(arr["z"]), fin)  # NaN exactly where depth is invalid
    np.testing.assert_allclose(arr["z"][fin], depth[fin])
    np.testing.assert_allclose(arr["x"][fin], ((u - k.cx) / k.fx * depth)[fin], atol=1e-4)
    np.testing.assert_allclose(arr["y"][fin], ((v - k.cy) / k.fy * depth)[fin], atol=1e-4)
    np.testing.assert_array_equal(unpack_rgb(arr["rgb"]), RGB)


def test_uncertainty_output_and_masking(main):
    node, cam = main
    try:
        assert ok(set_parameters(cam, MAIN, uncertainty=True))
        stamp, out = good_frame(cam, topics=("depth/uncertainty", "depth/image", "points"))
        unc_msg = out["depth/uncertainty"]
        assert (unc_msg.encoding, unc_msg.width, unc_msg.height) == ("32FC1", W, H)
        unc = image_to_numpy(unc_msg)
        assert np.isfinite(unc).mean() > 0.9 and np.nanmin(unc) >= 0
        thr = float(np.median(unc))
        assert ok(set_parameters(cam, MAIN, max_uncertainty_m=thr))
        stamp, out = good_frame(cam, topics=("depth/uncertainty", "depth/image", "points"))
        unc, depth = image_to_numpy(out["depth/uncertainty"]), image_to_numpy(out["depth/image"])
        z = pointcloud2_to_array(out["points"])["z"]
        expect = np.isfinite(depth) & (unc <= thr)
        np.testing.assert_array_equal(np.isfinite(z), expect)
        assert 0 < expect.sum() < expect.size
    finally:
        assert ok(set_parameters(cam, MAIN, uncertainty=False, max_uncertainty_m=0.0))


def test_focus_side_and_max_relative_error_through_rclpy(main):
    """focus_side puts every depth on its side of the focus plane (1.2 m); max_relative_error
    decides what is published: NaN in depth/image and in the point cloud alike (REP 118)."""
    node, cam = main
    try:
        _, out = good_frame(cam)
        front = image_to_numpy(out["depth/image"])
        assert np.isfinite(front).mean() > 0.9 and np.nanmax(front) <= 1.2 + 1e-4
        assert ok(set_parameters(cam, MAIN, focus_side="behind"))
        _, out = good_frame(cam)
        behind = image_to_numpy(out["depth/image"])
        assert np.isfinite(behind).any() and np.nanmin(behind) >= 1.2 - 1e-4
        assert not ok(set_parameters(cam, MAIN, focus_side="sideways"))  # refused, old value kept
        assert get_parameters(cam, MAIN, ["focus_side"])["focus_side"] == "behind"
        assert ok(set_parameters(cam, MAIN, focus_side="front", max_relative_error=1e-3))
        _, out = good_frame(cam)
        strict = image_to_numpy(out["depth/image"])
        z = pointcloud2_to_array(out["points"])["z"]
        assert np.isfinite(strict).mean() < 0.5 * np.isfinite(front).mean()
        np.testing.assert_array_equal(np.isfinite(z), np.isfinite(strict))
        assert not ok(set_parameters(cam, MAIN, max_relative_error=0.0))  # out of range: refused
    finally:
        assert ok(set_parameters(cam, MAIN, focus_side="front", max_relative_error=1000.0))


def test_runtime_parameter_changes_take_effect(main):
    node, cam = main
    _, out = good_frame(cam)
    depth0 = image_to_numpy(out["depth/image"])
    try:
        res = set_parameters(cam, MAIN, focus_distance_m=3.0, f_number=2.8)
        assert ok(res), [r.reason for r in res]
        assert get_parameters(cam, MAIN, ["focus_distance_m", "f_number"]) == {"focus_distance_m": 3.0, "f_number": 2.8}
        _, out = good_frame(cam)
        depth1 = image_to_numpy(out["depth/image"])
        both = np.isfinite(depth0) & np.isfinite(depth1)
        assert np.abs(depth1[both] - depth0[both]).mean() > 0.01  # the new lens is in force

        assert ok(set_parameters(cam, MAIN, point_decimation=4, max_depth_m=2.0, min_depth_m=0.5))
        _, out = good_frame(cam)
        pc = out["points"]
        assert (pc.height, pc.width) == (H // 4, W // 4)
        d = image_to_numpy(out["depth/image"])
        assert np.nanmax(d) <= 2.0 and np.nanmin(d) >= 0.5

        assert ok(set_parameters(cam, MAIN, publish_points=False))
        stamp, _ = good_frame(cam, topics=("depth/image",))
        assert not wait_until(lambda: cam.get("points", stamp) is not None, 1.0)
    finally:
        assert ok(
            set_parameters(
                cam,
                MAIN,
                focus_distance_m=1.2,
                f_number=1.8,
                point_decimation=1,
                max_depth_m=20.0,
                min_depth_m=0.1,
                publish_points=True,
            )
        )


@pytest.mark.parametrize(
    "values,reason",
    [
        ({"focus_distance_m": 0.02}, "focus distance"),  # inside the focal length (35 mm)
        ({"focal_length_mm": 1500.0}, "focus distance"),  # 1.5 m lens focused at 1.2 m
        ({"f_number": math.nan}, ""),
        ({"f_number": -2.0}, ""),
        ({"fx": 0.0}, ""),
        ({"min_depth_m": 50.0}, "min_depth_m"),
        ({"point_decimation": 0}, ""),
        ({"model_path": "/elsewhere.pt"}, "read-only"),
        ({"f_number": "two"}, ""),
    ],
)
def test_invalid_parameters_are_refused_and_the_old_ones_stay(main, values, reason):
    node, cam = main
    names = list(values)
    before = get_parameters(cam, MAIN, names + ["focus_distance_m", "f_number"])
    res = set_parameters(cam, MAIN, **values)
    assert not res[0].successful and res[0].reason, res
    assert reason.lower() in res[0].reason.lower(), res[0].reason
    assert get_parameters(cam, MAIN, names + ["focus_distance_m", "f_number"]) == before
    assert node._cfg.lens.focus_distance_m == before["focus_distance_m"]
    good_frame(cam)  # still running, still publishing


def _image(width, height, encoding, data, step):
    m = Image(width=width, height=height, encoding=encoding, step=step)
    m.data = data
    return m


def _info_with_fx(fx, w=W, h=H):
    ci = camera_info_from_intrinsics(INTR, w, h)
    k = list(ci.k)
    k[0] = fx
    ci.k = k
    return ci


BAD_FRAMES = {
    "unsupported_encoding": lambda cam: cam.send(image=_image(W, H, "bayer_rggb8", bytes(W * H), W)),
    "bad_data_length": lambda cam: cam.send(image=_image(W, H, "rgb8", bytes(W * 3 * (H - 1)), W * 3)),
    "zero_size": lambda cam: cam.send(image=_image(0, 0, "rgb8", b"", 0)),
    "frame_id_changed": lambda cam: cam.send(RGB, frame_id="another_frame", intr=INTR),
}
BAD_INFOS = {
    "camera_info_invalid": [_info_with_fx(0.0), _info_with_fx(math.nan)],
    "camera_info_mismatch": [camera_info_from_intrinsics(INTR, 2 * W, 2 * H)],
}


def _count(cam, kind):
    v = cam.wait_diag(MAIN, lambda v: True)
    return int(v["bad_" + kind])


@pytest.mark.parametrize("kind", list(BAD_FRAMES))
def test_bad_frame_is_counted_and_skipped_and_the_next_good_frame_published(main, kind):
    node, cam = main
    good_frame(cam)
    before = _count(cam, kind)
    stamp = BAD_FRAMES[kind](cam)
    v = cam.wait_diag(MAIN, lambda v: int(v["bad_" + kind]) > before)
    assert v is not None, f"{kind} not counted in /diagnostics"
    assert int(v["bad_input_total"]) >= 1
    assert all(cam.get(t, stamp) is None for t in OUTPUT_TOPICS)  # nothing published for it
    good_frame(cam)
    assert node._worker.is_alive()


@pytest.mark.parametrize("kind", list(BAD_INFOS))
def test_bad_camera_info_is_counted_and_ignored(main, kind):
    node, cam = main
    good_frame(cam)
    for info in BAD_INFOS[kind]:
        before = _count(cam, kind)
        stamp = cam.send(RGB, info=info)  # the bad CameraInfo, then a good frame with the same stamp
        out = cam.wait_outputs(stamp, ("depth/image", "depth/camera_info", "points"))
        assert out is not None
        # the frame went out with the last good CameraInfo, not the bad one
        ci = out["depth/camera_info"]
        assert (ci.width, ci.height) == (W, H)
        np.testing.assert_allclose(list(ci.k), INTR.k())
        assert cam.wait_diag(MAIN, lambda v, n=before: int(v["bad_" + kind]) > n) is not None
    good_frame(cam)


def test_diagnostics_report_rates_latency_device_model(main):
    node, cam = main
    for _ in range(3):
        good_frame(cam)
    v = cam.wait_diag(MAIN, lambda v: float(v["output_rate_hz"]) > 0)
    assert v is not None
    for key in (
        "input_rate_hz",
        "output_rate_hz",
        "latency_ms_mean",
        "latency_ms_p95",
        "frames_in",
        "frames_out",
        "frames_dropped",
        "bad_input_total",
        "device",
        "model",
        "precision",
    ):
        assert key in v, key
    assert v["device"] == "cpu" and v["model"].endswith("tiny.pt") and v["precision"] == "fp32"
    assert v["intrinsics_from"] == "CameraInfo" and v["frame_id"] == "cam"
    assert 0 < float(v["latency_ms_mean"]) < 10000


def test_point_cloud_of_a_known_plane_lies_on_it(ros):
    """Through DDS: an estimator that sees the plane n . X = 1.8 m; every point is on it (< 1 mm)."""
    h, _ = ros
    normal = np.array([0.15, -0.25, 1.0])
    est = PlaneEstimator(INTR, tuple(normal), 1.8)
    h.add(
        DepthDefocusNode(
            namespace="/p",
            context=h.context,
            estimator=est,
            parameter_overrides=[Parameter("diagnostics_period_s", value=0.2)],
        )
    )
    cam = camera(h, "/p")
    assert cam.wait_connected()
    n = normal / np.linalg.norm(normal)
    for dec in (1, 3):
        assert ok(set_parameters(cam, "/p/depth_defocus_node", point_decimation=dec))
        stamp = cam.send(RGB, intr=INTR)
        out = cam.wait_outputs(stamp, ("points",))
        assert out is not None
        arr = pointcloud2_to_array(out["points"])
        assert arr.shape == (math.ceil(H / dec), math.ceil(W / dec))
        xyz = np.stack([arr["x"], arr["y"], arr["z"]], -1)
        fin = np.isfinite(xyz).all(-1)
        assert fin.mean() > 0.99
        residual = np.abs(xyz[fin] @ n - 1.8)
        assert residual.max() < 1e-3, residual.max()


def test_latest_frame_wins_and_drops_are_counted(ros):
    h, _ = ros
    est = SlowEstimator(delay_s=0.3)
    node = h.add(
        DepthDefocusNode(
            namespace="/s",
            context=h.context,
            estimator=est,
            parameter_overrides=[Parameter("diagnostics_period_s", value=0.2)],
        )
    )
    cam = camera(h, "/s")
    assert cam.wait_connected()
    stamps = []
    for _ in range(8):
        stamps.append(cam.send(RGB, intr=INTR))
        time.sleep(0.04)
    # the subscription callback is never blocked by inference: frames keep coming in while the model is busy
    assert wait_until(lambda: node.stats.counts["frames_in"] >= 6, 2.0)
    assert cam.wait_outputs(stamps[-1], ("points",), 10.0) is not None  # the latest frame is processed
    assert wait_until(node.idle, 5.0)
    c = node.stats.counts
    got = [s for s in stamps if cam.get("points", s) is not None]
    assert len(got) == c["frames_out"] < c["frames_in"]
    assert c["frames_dropped"] == c["frames_in"] - c["frames_out"] > 0
    assert est.calls - 1 == c["frames_out"]  # (one warm-up call) no frame was processed twice or queued
    v = cam.wait_diag("/s/depth_defocus_node", lambda v: int(v["frames_dropped"]) == c["frames_dropped"])
    assert v is not None


def test_compressed_transport_and_fx_fallback(ros):
    """image_transport=compressed: jpeg in; corrupt data skipped; no CameraInfo -> the fx parameter."""
    h, ckpt = ros
    h.add(
        DepthDefocusNode(
            namespace="/c",
            context=h.context,
            parameter_overrides=overrides(ckpt, image_transport="compressed", fx=400.0),
        )
    )
    cam = camera(h, "/c")
    assert cam.wait_connected()

    def jpeg(data=None):
        m = CompressedImage(format="rgb8; jpeg compressed bgr8")
        m.data = data if data is not None else cv2.imencode(".jpg", RGB[:, :, ::-1])[1].tobytes()
        return m

    stamp = cam.send(image=jpeg())
    out = cam.wait_outputs(stamp, ALL)
    assert out is not None
    d = out["depth/image"]
    assert (d.width, d.height, d.header.frame_id) == (W, H, "cam")
    ci = out["depth/camera_info"]
    assert (ci.width, ci.height) == (W, H)
    np.testing.assert_allclose(list(ci.k), [400.0, 0, W / 2, 0, 400.0, H / 2, 0, 0, 1])
    v = cam.wait_diag("/c/depth_defocus_node", lambda v: int(v["frames_out"]) >= 1)
    assert v["intrinsics_from"] == "fx parameter"
    good = jpeg().data
    for bad in (bytes(np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8)), bytes(good[: len(good) // 2])):
        before = int(cam.wait_diag("/c/depth_defocus_node", lambda v: True)["bad_corrupt_compressed"])
        stamp = cam.send(image=jpeg(bad))
        assert cam.wait_diag("/c/depth_defocus_node", lambda v, n=before: int(v["bad_corrupt_compressed"]) > n)
        assert cam.get("depth/image", stamp) is None
        stamp = cam.send(image=jpeg())
        assert cam.wait_outputs(stamp, ("depth/image", "points")) is not None
