"""sensor_msgs <-> numpy without cv_bridge: Image, CompressedImage, CameraInfo, PointCloud2.

Decoding a camera frame checks everything a driver can get wrong and raises :class:`BadInput`
(``kind`` names the diagnostics counter, the message says what was wrong) instead of returning
garbage.
"""

from __future__ import annotations

import math
import sys

import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField

from .pointcloud import POINT_DTYPE, Intrinsics

__all__ = ["BadInput", "SUPPORTED_ENCODINGS", "image_to_rgb", "compressed_to_rgb", "numpy_to_image",
           "image_to_numpy", "check_camera_info", "camera_info_from_intrinsics", "points_to_pointcloud2",
           "pointcloud2_to_array"]  # fmt: skip

MIN_SIZE = 8  # px: smaller frames cannot be processed (the estimator's lower limit)


class BadInput(ValueError):
    """An input message the node skips. ``kind`` is its diagnostics counter."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


# encoding -> bytes per pixel; yuv422 is UYVY (sensor_msgs/image_encodings.hpp), yuv422_yuy2 is YUYV
_BPP = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "mono16": 2, "8uc1": 1, "8uc3": 3,
        "yuv422": 2, "uyvy": 2, "yuv422_yuy2": 2, "yuyv": 2}  # fmt: skip
SUPPORTED_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "yuv422", "yuv422_yuy2")


def _check_size(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise BadInput("zero_size", f"zero-size frame ({width}x{height})")
    if width < MIN_SIZE or height < MIN_SIZE:
        raise BadInput("zero_size", f"frame too small ({width}x{height}, at least {MIN_SIZE}x{MIN_SIZE} px)")


def image_to_rgb(msg: Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a sensor_msgs/Image in any of :data:`SUPPORTED_ENCODINGS`
    (grey images are repeated into 3 channels; mono16 keeps its top 8 bits)."""
    import cv2

    enc = msg.encoding.strip().lower()
    w, h, step = int(msg.width), int(msg.height), int(msg.step)
    if enc not in _BPP:
        raise BadInput("unsupported_encoding", f"unsupported encoding {msg.encoding!r} (supported: "
                       f"{', '.join(SUPPORTED_ENCODINGS)}; or use image_transport=compressed)")  # fmt: skip
    _check_size(w, h)
    bpp = _BPP[enc]
    n = len(msg.data)
    if step < w * bpp or n != step * h:
        raise BadInput("bad_data_length", f"data length {n} does not match {w}x{h} {enc} with step {step} "
                       f"(expected step >= {w * bpp} and length = step * height = {step * h})")  # fmt: skip
    if enc in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv") and w % 2:
        raise BadInput("bad_data_length", f"{enc} needs an even width, got {w}")
    raw = np.frombuffer(msg.data, dtype=np.uint8).reshape(h, step)[:, : w * bpp]  # (H, W*bpp)
    if enc == "mono16":
        px = raw.reshape(h, w, 2).copy().view(">u2" if msg.is_bigendian else "<u2")[..., 0]  # (H, W)
        grey = (px >> 8).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
    img = raw.reshape(h, w, bpp)
    if enc in ("rgb8", "rgba8"):
        return np.ascontiguousarray(img[..., :3])
    if enc in ("bgr8", "bgra8", "8uc3"):
        return np.ascontiguousarray(img[..., 2::-1])
    if enc in ("mono8", "8uc1"):
        return np.ascontiguousarray(np.repeat(img, 3, axis=2))
    code = cv2.COLOR_YUV2RGB_UYVY if enc in ("yuv422", "uyvy") else cv2.COLOR_YUV2RGB_YUY2
    return cv2.cvtColor(np.ascontiguousarray(img), code)


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a sensor_msgs/CompressedImage (jpeg or png, as image_transport's
    compressed plugin writes them)."""
    import cv2

    fmt = msg.format.lower()
    if "compresseddepth" in fmt:
        raise BadInput("unsupported_encoding", f"compressed depth ({msg.format!r}) is not a camera image")
    data = bytes(msg.data)
    if not data:
        raise BadInput("zero_size", "empty compressed image")
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]:
        raise BadInput("corrupt_compressed", f"truncated JPEG ({len(data)} bytes, no end-of-image marker)")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # (H, W, 3) BGR or None
    if img is None:
        raise BadInput("corrupt_compressed", f"cannot decode compressed image (format {msg.format!r}, "
                       f"{len(data)} bytes): corrupt or not jpeg/png")  # fmt: skip
    _check_size(img.shape[1], img.shape[0])
    return np.ascontiguousarray(img[..., ::-1])


_NUMPY_ENCODINGS = {"32FC1": (np.float32, 1), "bgr8": (np.uint8, 3), "rgb8": (np.uint8, 3), "mono8": (np.uint8, 1),
                    "16UC1": (np.uint16, 1), "mono16": (np.uint16, 1)}  # fmt: skip


def numpy_to_image(arr: np.ndarray, encoding: str, header=None) -> Image:
    """sensor_msgs/Image from an (H, W) or (H, W, C) array (32FC1, bgr8, rgb8, mono8, 16UC1)."""
    dtype, ch = _NUMPY_ENCODINGS[encoding]
    a = np.ascontiguousarray(arr, dtype=dtype)
    if a.ndim != (3 if ch > 1 else 2) or (ch > 1 and a.shape[2] != ch):
        raise ValueError(f"{encoding} needs shape (H, W) or (H, W, {ch}) as fits, got {a.shape}")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = a.shape[:2]
    msg.encoding = encoding
    msg.is_bigendian = int(sys.byteorder == "big" and a.itemsize > 1)
    msg.step = a.shape[1] * ch * a.itemsize
    msg.data = a.tobytes()
    return msg


def image_to_numpy(msg: Image) -> np.ndarray:
    """(H, W) or (H, W, C) array from an Image in an encoding of :func:`numpy_to_image`."""
    dtype, ch = _NUMPY_ENCODINGS[msg.encoding]
    dt = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    row = msg.width * ch * dt.itemsize
    raw = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)[:, :row]
    a = np.ascontiguousarray(raw).view(dt).reshape((msg.height, msg.width) + ((ch,) if ch > 1 else ()))
    return a.astype(dtype)


def check_camera_info(msg: CameraInfo) -> Intrinsics:
    """Intrinsics of a usable CameraInfo; :class:`BadInput` ``camera_info_invalid`` otherwise."""
    k = [float(x) for x in msg.k]
    if msg.width <= 0 or msg.height <= 0:
        raise BadInput("camera_info_invalid", f"CameraInfo with zero size ({msg.width}x{msg.height})")
    for name, val in (("fx (K[0])", k[0]), ("fy (K[4])", k[4])):
        if not math.isfinite(val) or val <= 0:
            raise BadInput("camera_info_invalid", f"CameraInfo with {name} = {val} (must be positive and finite)")
    for name, val in (("cx (K[2])", k[2]), ("cy (K[5])", k[5])):
        if not math.isfinite(val):
            raise BadInput("camera_info_invalid", f"CameraInfo with {name} = {val}")
    return Intrinsics.from_k(k)


def camera_info_from_intrinsics(intr: Intrinsics, width: int, height: int, header=None) -> CameraInfo:
    """A CameraInfo for an undistorted pinhole camera (no distortion, identity R, P = [K | 0])."""
    msg = CameraInfo()
    if header is not None:
        msg.header = header
    msg.width, msg.height = int(width), int(height)
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = intr.k()
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [intr.fx, 0.0, intr.cx, 0.0, 0.0, intr.fy, intr.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


def points_to_pointcloud2(points: np.ndarray, header=None) -> PointCloud2:
    """Organised PointCloud2 (height H', width W', fields x y z rgb float32) from an (H', W')
    structured array of :data:`~.pointcloud.POINT_DTYPE`; NaN points make it not dense."""
    pts = np.ascontiguousarray(points, dtype=POINT_DTYPE)
    msg = PointCloud2()
    if header is not None:
        msg.header = header
    msg.height, msg.width = pts.shape
    msg.fields = [PointField(name=n, offset=POINT_DTYPE.fields[n][1], datatype=PointField.FLOAT32, count=1)
                  for n in POINT_DTYPE.names]  # fmt: skip
    msg.is_bigendian = False
    msg.point_step = POINT_DTYPE.itemsize
    msg.row_step = msg.point_step * msg.width
    msg.is_dense = bool(np.isfinite(pts["z"]).all())
    msg.data = pts.tobytes()
    return msg


_PF_DTYPES = {PointField.INT8: "i1", PointField.UINT8: "u1", PointField.INT16: "i2", PointField.UINT16: "u2",
              PointField.INT32: "i4", PointField.UINT32: "u4", PointField.FLOAT32: "f4", PointField.FLOAT64: "f8"}


def pointcloud2_to_array(msg: PointCloud2) -> np.ndarray:
    """(height, width) structured array with the message's fields (any layout, either byte order)."""
    order = ">" if msg.is_bigendian else "<"
    dt = np.dtype({"names": [f.name for f in msg.fields],
                   "formats": [order + _PF_DTYPES[f.datatype] for f in msg.fields],
                   "offsets": [f.offset for f in msg.fields], "itemsize": msg.point_step})  # fmt: skip
    rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.row_step)[:, : msg.width * msg.point_step]
    return np.ascontiguousarray(rows).view(dt).reshape(msg.height, msg.width)
