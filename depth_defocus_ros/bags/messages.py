"""Decode sensor_msgs payloads (as deserialised by ``rosbags``) to numpy arrays.

* RGB: ``sensor_msgs/Image`` or ``CompressedImage`` in any encoding of :mod:`..imagecodec` (the
  one decoder the node and the CLI use too). Returns an (H, W, 3) uint8 RGB array.
* Depth: ``sensor_msgs/Image`` in 16UC1 / mono16 (millimetres, 0 = invalid) or 32FC1 (metres,
  0 / NaN / inf = invalid). Returned as stored (uint16 or float32): the dataset keeps it lossless.
  ``compressedDepth`` (image_transport) is refused with the way out.
* The header (stamp, frame_id) is read straight from the serialised bytes (CDR or ROS 1) without
  deserialising the pixels, so scanning a bag costs little more than reading it.

Anything that cannot be decoded raises :class:`FrameError` with a one-line reason.
"""

from __future__ import annotations

import struct

import numpy as np

__all__ = [
    "FrameError",
    "header_from_raw",
    "decode_rgb",
    "decode_depth",
    "camera_info",
    "DEPTH_SCALES",
    "IMAGE_TYPES",
    "DEPTH_TYPES",
    "INFO_TYPES",
]

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
DEPTH_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
INFO_TYPES = ("sensor_msgs/msg/CameraInfo",)

# depth encoding -> metres per stored unit (16-bit depth is millimetres by the REP 118 convention)
DEPTH_SCALES = {"16UC1": 0.001, "mono16": 0.001, "32FC1": 1.0}

COMPRESSED_DEPTH_HINT = (
    "compressedDepth frames are not supported (the 32FC1 variant is quantised, i.e. lossy); record the raw "
    "depth topic (e.g. /camera/aligned_depth_to_color/image_raw), or decompress the bag first with "
    "'ros2 run image_transport republish compressedDepth raw' while playing it back"
)


class FrameError(ValueError):
    """A message that cannot be used (unknown encoding, corrupt data, ...); the text is the reason."""


def header_from_raw(raw, ros1: bool) -> tuple[int, str]:
    """(stamp in ns, frame_id) of a message that starts with ``std_msgs/Header``.

    CDR (rosbag2): 4-byte encapsulation, int32 sec, uint32 nanosec, string frame_id.
    ROS 1: uint32 seq, uint32 sec, uint32 nsec, string frame_id.
    """
    mv = memoryview(raw)
    try:
        if ros1:
            _, sec, nsec, n = struct.unpack_from("<IIII", mv, 0)
            frame = bytes(mv[16 : 16 + n]).decode("utf-8", "replace")
        else:
            order = "<" if mv[1] & 1 else ">"
            sec, nsec, n = struct.unpack_from(order + "iII", mv, 4)
            frame = bytes(mv[16 : 16 + max(0, n - 1)]).decode("utf-8", "replace")  # CDR strings end in NUL
    except struct.error:
        raise FrameError("message too short for a header (truncated data)") from None
    if n > len(mv):
        raise FrameError("corrupt header (frame_id longer than the message)")
    return sec * 1_000_000_000 + nsec, frame


def _rows(msg, bpp: int) -> np.ndarray:
    """(H, W * bpp) bytes of an Image, dropping row padding; checks the sizes."""
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.asarray(msg.data, dtype=np.uint8)
    if h <= 0 or w <= 0:
        raise FrameError(f"empty image ({w}x{h})")
    if step < w * bpp or data.size < h * step:
        raise FrameError(f"image data too short: {data.size} bytes for {w}x{h} {msg.encoding} (step {step})")
    return data[: h * step].reshape(h, step)[:, : w * bpp]


def decode_rgb(msg, msgtype: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a sensor_msgs Image or CompressedImage (:mod:`..imagecodec`, the
    decoder the node uses too)."""
    from ..imagecodec import DecodeError, decode_compressed, decode_image

    try:
        if msgtype.endswith("CompressedImage"):
            return decode_compressed(str(msg.format), msg.data)
        return decode_image(str(msg.encoding), msg.width, msg.height, msg.step, msg.is_bigendian, msg.data)
    except DecodeError as exc:
        raise FrameError(str(exc)) from None


def decode_depth(msg, msgtype: str) -> np.ndarray:
    """Depth as stored: (H, W) uint16 (16UC1 / mono16, mm) or float32 (32FC1, m)."""
    if msgtype.endswith("CompressedImage"):
        fmt = str(msg.format)
        if "compressedDepth" in fmt:
            raise FrameError(f"compressedDepth frame ({fmt!r}): {COMPRESSED_DEPTH_HINT}")
        raise FrameError(f"compressed depth image ({fmt!r}); a raw 16UC1 or 32FC1 depth Image is needed")
    enc = str(msg.encoding)
    h, w = int(msg.height), int(msg.width)
    if enc in ("16UC1", "mono16"):
        rows = _rows(msg, 2)
        return np.ascontiguousarray(rows).view(">u2" if msg.is_bigendian else "<u2").reshape(h, w).astype(np.uint16)
    if enc == "32FC1":
        rows = _rows(msg, 4)
        return np.ascontiguousarray(rows).view(">f4" if msg.is_bigendian else "<f4").reshape(h, w).astype(np.float32)
    raise FrameError(f"unknown depth encoding {enc!r} (supported: 16UC1 / mono16 in mm, 32FC1 in m)")


def camera_info(msg) -> dict:
    """The fields of a CameraInfo that the converter uses (K is row-major 3x3; fx = K[0])."""
    k = [float(v) for v in np.asarray(msg.k if hasattr(msg, "k") else msg.K, dtype=np.float64).ravel()]
    return {
        "width": int(msg.width),
        "height": int(msg.height),
        "fx": k[0],
        "fy": k[4],
        "cx": k[2],
        "cy": k[5],
        "distortion_model": str(msg.distortion_model),
        "d": [float(v) for v in np.asarray(msg.d if hasattr(msg, "d") else msg.D).ravel()],
    }
