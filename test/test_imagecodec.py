"""One decoder for every path: each supported encoding gives the same RGB through the node's
conversion (sensor_msgs/Image from the ROS 2 wheels) and the bag converter's (a rosbags message)."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from depth_defocus_ros.bags.messages import FrameError, decode_rgb
from depth_defocus_ros.imagecodec import SUPPORTED_ENCODINGS, DecodeError, decode_compressed, decode_image

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(3)
RGB = RNG.integers(0, 256, (12, 16, 3), dtype=np.uint8)
GREY = RGB[..., 1]
YUV = (120, 90, 170)  # a flat colour for the chroma-subsampled encodings


def _yuv_rgb():
    y, u, v = YUV
    c, d, e = 1.164 * (y - 16), u - 128, v - 128  # BT.601 limited range
    return np.array([c + 1.596 * e, c - 0.392 * d - 0.813 * e, c + 2.017 * d])


def encode(enc: str):
    """(buffer bytes, step, expected RGB or None for the flat YUV colour) for a 16x12 frame."""
    h, w = GREY.shape
    alpha = np.full((h, w, 1), 9, np.uint8)
    pad = 6  # padded rows, as some drivers send them
    if enc in ("yuv422", "yuv422_yuy2"):
        y, u, v = YUV
        quad = [u, y, v, y] if enc == "yuv422" else [y, u, y, v]
        rows = np.tile(np.array(quad, np.uint8), (h, w // 2))
        return rows, None
    if enc == "nv12":
        y, u, v = YUV
        plane = np.full((h * 3 // 2, w), y, np.uint8)
        plane[h:] = np.tile(np.array([u, v], np.uint8), (h // 2, w // 2))
        return plane, None
    base = enc.replace("16", "").replace("8", "")  # rgb, bgr, rgba, bgra, mono
    px = {"rgb": RGB, "rgba": RGB, "bgr": RGB[..., ::-1], "bgra": RGB[..., ::-1], "mono": GREY[..., None]}[base]
    if base in ("rgba", "bgra"):
        px = np.concatenate([px, alpha], axis=2)
    expected = np.repeat(GREY[..., None], 3, axis=2) if enc.startswith("mono") else RGB
    if enc.endswith("16"):
        px = px.astype(np.uint16) * 257
        px = px.astype("<u2").view(np.uint8).reshape(h, w, -1)
    rows = px.reshape(h, -1)
    rows = np.concatenate([rows, np.zeros((h, pad), np.uint8)], axis=1)
    return rows, expected


def _check(out, expected):
    assert out.shape == (12, 16, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    if expected is None:
        assert np.abs(out.reshape(-1, 3).astype(int) - _yuv_rgb()).max() <= 3
    else:
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("enc", SUPPORTED_ENCODINGS)
def test_every_encoding_through_the_node_and_the_converter(enc):
    pytest.importorskip("sensor_msgs.msg", reason="needs the ROS 2 wheels")
    from rosbags.typesys import Stores, get_typestore
    from sensor_msgs.msg import Image

    from depth_defocus_ros.ros.conversions import image_to_rgb

    rows, expected = encode(enc)
    h, w = GREY.shape
    step = rows.shape[1]
    ros_msg = Image(width=w, height=h, step=step, encoding=enc, is_bigendian=0)
    ros_msg.data = rows.tobytes()
    node_out = image_to_rgb(ros_msg)
    ts = get_typestore(Stores.ROS2_HUMBLE)
    t = ts.types
    bag_msg = t["sensor_msgs/msg/Image"](
        header=t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=0, nanosec=0), frame_id="cam"),
        height=h,
        width=w,
        encoding=enc,
        is_bigendian=0,
        step=step,
        data=rows.reshape(-1).copy(),
    )
    bag_out = decode_rgb(bag_msg, "sensor_msgs/msg/Image")
    _check(node_out, expected)
    np.testing.assert_array_equal(node_out, bag_out)


def test_big_endian_16_bit():
    px = (RGB.astype(np.uint16) * 257).astype(">u2")
    out = decode_image("rgb16", 16, 12, 16 * 6, True, px.view(np.uint8).tobytes())
    np.testing.assert_array_equal(out, RGB)


@pytest.mark.parametrize(
    "enc, kind",
    [
        ("bayer_rggb8", "unsupported_encoding"),
        ("32FC1", "unsupported_encoding"),
        ("16UC1", "unsupported_encoding"),
        ("", "unsupported_encoding"),
    ],
)
def test_unsupported_encodings_are_named(enc, kind):
    with pytest.raises(DecodeError) as e:
        decode_image(enc, 16, 12, 64, False, bytes(64 * 12))
    assert e.value.kind == kind and repr(enc) in str(e.value) and "rgb8" in str(e.value)
    if enc.upper() in ("32FC1", "16UC1"):
        assert "depth encoding" in str(e.value)
    with pytest.raises(FrameError, match="unsupported image encoding"):
        decode_rgb(
            type("M", (), dict(encoding=enc, width=16, height=12, step=64, is_bigendian=0, data=bytes(64 * 12)))(),
            "sensor_msgs/msg/Image",
        )


def test_sizes_and_lengths():
    with pytest.raises(DecodeError) as e:
        decode_image("rgb8", 0, 0, 0, False, b"")
    assert e.value.kind == "zero_size"
    with pytest.raises(DecodeError) as e:
        decode_image("rgb8", 16, 12, 48, False, bytes(48 * 12 - 1))
    assert e.value.kind == "bad_data_length"
    with pytest.raises(DecodeError) as e:
        decode_image("nv12", 15, 12, 15, False, bytes(15 * 18))
    assert e.value.kind == "bad_data_length" and "even" in str(e.value)


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_compressed_colour_and_grey(ext):
    big = cv2.resize(RGB, (64, 48), interpolation=cv2.INTER_NEAREST)
    ok, buf = cv2.imencode(ext, big[..., ::-1])
    out = decode_compressed(ext[1:], buf.tobytes())
    assert out.shape == (48, 64, 3) and np.abs(out.astype(int) - big).mean() < (25 if ext == ".jpg" else 1e-9)
    ok, buf = cv2.imencode(".png", big[..., 0])
    np.testing.assert_array_equal(decode_compressed("png", buf.tobytes()), np.repeat(big[..., :1], 3, axis=2))
    with pytest.raises(DecodeError) as e:
        decode_compressed("jpeg", b"\xff\xd8garbage")
    assert e.value.kind == "corrupt_compressed"


def test_the_docs_list_every_encoding():
    for doc in ("docs/ros_node.md", "DATASET.md"):
        text = (ROOT / doc).read_text()
        for enc in SUPPORTED_ENCODINGS:
            assert f"`{enc}`" in text, (doc, enc)
