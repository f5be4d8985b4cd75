"""Message conversions and the point-cloud builder (no DDS needed; sensor_msgs from the ROS 2 wheels)."""

import math

import cv2
import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="needs the ROS 2 wheels (pip install -r requirements.txt)")

from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402

from depth_defocus_ros.ros.conversions import (  # noqa: E402
    BadInput,
    camera_info_from_intrinsics,
    check_camera_info,
    compressed_to_rgb,
    image_to_numpy,
    image_to_rgb,
    numpy_to_image,
    pointcloud2_to_array,
    points_to_pointcloud2,
)
from depth_defocus_ros.ros.pointcloud import (  # noqa: E402
    Intrinsics,
    depth_to_points,
    make_points_array,
    pack_rgb,
    unpack_rgb,
    write_ply,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (12, 16, 3), dtype=np.uint8)  # (H, W, 3)


def raw_image(data: bytes, w: int, h: int, step: int, enc: str, big=False) -> Image:
    m = Image(width=w, height=h, step=step, encoding=enc, is_bigendian=int(big))
    m.data = data
    return m


@pytest.mark.parametrize("enc", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_colour_encodings_with_row_padding(enc):
    px = {
        "rgb8": RGB,
        "bgr8": RGB[..., ::-1],
        "rgba8": np.dstack([RGB, np.full(RGB.shape[:2], 7, np.uint8)]),
        "bgra8": np.dstack([RGB[..., ::-1], np.full(RGB.shape[:2], 7, np.uint8)]),
    }[enc]
    h, w, c = px.shape
    step = w * c + 5  # drivers may pad rows
    buf = np.zeros((h, step), np.uint8)
    buf[:, : w * c] = px.reshape(h, -1)
    out = image_to_rgb(raw_image(buf.tobytes(), w, h, step, enc))
    assert out.shape == (h, w, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, RGB)


@pytest.mark.parametrize("big", [False, True])
def test_mono_encodings(big):
    grey = RGB[..., 0]
    out = image_to_rgb(raw_image(grey.tobytes(), 16, 12, 16, "mono8"))
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))
    g16 = grey.astype(np.uint16) * 257  # full 16-bit range
    data = g16.astype(">u2" if big else "<u2").tobytes()
    out = image_to_rgb(raw_image(data, 16, 12, 32, "mono16", big=big))
    np.testing.assert_array_equal(out[..., 1], grey)


@pytest.mark.parametrize("enc", ["yuv422", "yuv422_yuy2"])
def test_yuv422_encodings(enc):
    # build packed 4:2:2 from a flat colour: Y, U, V constant -> the decoded image is that colour
    y, u, v = 120, 90, 170
    quad = [u, y, v, y] if enc == "yuv422" else [y, u, y, v]  # UYVY | YUYV
    data = bytes(quad) * (16 // 2) * 12
    out = image_to_rgb(raw_image(data, 16, 12, 32, enc))
    c, d, e = 1.164 * (y - 16), u - 128, v - 128  # BT.601 limited range, as cameras send it
    ref = np.array([c + 1.596 * e, c - 0.392 * d - 0.813 * e, c + 2.017 * d])
    assert out.shape == (12, 16, 3)
    assert np.abs(out.reshape(-1, 3).astype(int) - ref).max() <= 3


@pytest.mark.parametrize("case", ["short", "long", "step_too_small", "odd_yuv_width"])
def test_bad_data_length(case):
    if case == "odd_yuv_width":
        msg = raw_image(bytes(15 * 2 * 12), 15, 12, 30, "yuv422")
    else:
        n = {"short": 16 * 3 * 12 - 1, "long": 16 * 3 * 12 + 3, "step_too_small": 40 * 12}[case]
        msg = raw_image(bytes(n), 16, 12, 40 if case == "step_too_small" else 48, "rgb8")
    with pytest.raises(BadInput) as e:
        image_to_rgb(msg)
    assert e.value.kind == "bad_data_length"


def test_zero_size_and_unsupported():
    with pytest.raises(BadInput) as e:
        image_to_rgb(raw_image(b"", 0, 0, 0, "rgb8"))
    assert e.value.kind == "zero_size"
    with pytest.raises(BadInput) as e:
        image_to_rgb(raw_image(bytes(4 * 4 * 3), 4, 4, 12, "rgb8"))  # below the 8 px minimum
    assert e.value.kind == "zero_size"
    for enc in ("32FC1", "bayer_rggb8", "", "16UC1"):
        with pytest.raises(BadInput) as e:
            image_to_rgb(raw_image(bytes(16 * 12 * 4), 16, 12, 64, enc))
        assert e.value.kind == "unsupported_encoding" and "supported" in str(e.value)


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed_round_trip_and_corrupt(fmt):
    yy, xx = np.mgrid[0:48, 0:64]
    big = np.dstack([xx * 4, yy * 5, np.full_like(xx, 200)]).astype(np.uint8)  # smooth, channels distinct
    ok, enc = cv2.imencode("." + ("jpg" if fmt == "jpeg" else "png"), big[..., ::-1])
    assert ok
    msg = CompressedImage(format=f"rgb8; {fmt} compressed bgr8")
    msg.data = enc.tobytes()
    out = compressed_to_rgb(msg)
    assert out.shape == (48, 64, 3)
    assert np.abs(out.astype(int) - big).mean() < (3 if fmt == "jpeg" else 1e-9)
    for bad in (enc.tobytes()[: len(enc) // 2], RNG.integers(0, 256, 500, dtype=np.uint8).tobytes()):
        msg.data = bad
        with pytest.raises(BadInput) as e:
            compressed_to_rgb(msg)
        assert e.value.kind == "corrupt_compressed"
    msg.data = b""
    with pytest.raises(BadInput):
        compressed_to_rgb(msg)


def test_numpy_image_round_trip():
    d = RNG.random((12, 16)).astype(np.float32)
    d[0, 0] = np.nan
    m = numpy_to_image(d, "32FC1")
    assert (m.encoding, m.width, m.height, m.step) == ("32FC1", 16, 12, 64)
    np.testing.assert_array_equal(image_to_numpy(m), d)
    m = numpy_to_image(RGB[..., ::-1], "bgr8")
    assert m.step == 48
    np.testing.assert_array_equal(image_to_numpy(m), RGB[..., ::-1])
    with pytest.raises(ValueError):
        numpy_to_image(RGB, "32FC1")


def test_camera_info_checks():
    good = camera_info_from_intrinsics(Intrinsics(500.0, 510.0, 320.0, 240.0), 640, 480)
    assert check_camera_info(good) == Intrinsics(500.0, 510.0, 320.0, 240.0)
    assert list(good.p)[:3] == [500.0, 0.0, 320.0]
    for fx in (0.0, -3.0, math.nan, math.inf):
        bad = camera_info_from_intrinsics(Intrinsics(500.0, 500.0, 320.0, 240.0), 640, 480)
        k = list(bad.k)
        k[0] = fx
        bad.k = k
        with pytest.raises(BadInput) as e:
            check_camera_info(bad)
        assert e.value.kind == "camera_info_invalid"
    with pytest.raises(BadInput):
        check_camera_info(CameraInfo())  # all zero


def plane_depth(h, w, intr, normal, dist):
    """Depth (m) of the plane n . X = dist seen by a pinhole camera: z = dist / (n . ray)."""
    u, v = np.meshgrid(np.arange(w), np.arange(h))
    ray = np.stack([(u - intr.cx) / intr.fx, (v - intr.cy) / intr.fy, np.ones_like(u, float)], axis=-1)
    return (dist / (ray @ np.asarray(normal))).astype(np.float32)


@pytest.mark.parametrize("decimation", [1, 3])
def test_point_cloud_of_a_plane_lies_on_it(decimation):
    intr = Intrinsics(525.0, 520.0, 319.5, 239.5)
    n = np.array([0.2, -0.3, 0.93])
    n /= np.linalg.norm(n)
    depth = plane_depth(480, 640, intr, n, 2.0)
    depth[10:20, 10:20] = np.nan  # invalid pixels stay NaN, the cloud stays organised
    pts = depth_to_points(depth, intr, decimation)
    assert pts.shape == (math.ceil(480 / decimation), math.ceil(640 / decimation), 3) and pts.dtype == np.float32
    ok = np.isfinite(pts).all(-1)
    assert not ok[10 // decimation + 1, 10 // decimation + 1] and ok.mean() > 0.99
    residual = np.abs(pts[ok] @ n - 2.0)
    assert residual.max() < 1e-3, residual.max()
    np.testing.assert_allclose(pts[..., 2][ok], depth[::decimation, ::decimation][ok])


def test_pointcloud2_message_round_trip(tmp_path):
    intr = Intrinsics.centred(100.0, 16, 12)
    depth = np.full((12, 16), 1.5, np.float32)
    depth[0, :] = np.nan
    arr = make_points_array(depth_to_points(depth, intr), RGB)
    msg = points_to_pointcloud2(arr)
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (12, 16, 16, 256)
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb"] and not msg.is_dense
    back = pointcloud2_to_array(msg)
    np.testing.assert_array_equal(back["z"][1:], 1.5)
    assert np.isnan(back["x"][0]).all()
    np.testing.assert_array_equal(unpack_rgb(back["rgb"]), RGB)
    assert pack_rgb(np.array([1, 2, 3], np.uint8)).view("<u4") == 0x010203
    n = write_ply(tmp_path / "p.ply", np.stack([back["x"], back["y"], back["z"]], -1), unpack_rgb(back["rgb"]))
    assert n == 11 * 16
    head = (tmp_path / "p.ply").read_bytes()[:200]
    assert head.startswith(b"ply\nformat binary_little_endian 1.0") and b"element vertex 176" in head
