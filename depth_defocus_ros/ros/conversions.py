"""sensor_msgs <-> numpy without cv_bridge: Image, CompressedImage, CameraInfo, PointCloud2.

Decoding a camera frame (:mod:`..imagecodec`, shared with the bag converter and the CLI) checks
everything a driver can get wrong and raises :class:`BadInput` (``kind`` names the diagnostics
counter, the message says what was wrong) instead of returning garbage.
"""

from __future__ import annotations

import math
import sys

import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField

from ..imagecodec import SUPPORTED_ENCODINGS, DecodeError, check_layout, decode_compressed, decode_image
from .pointcloud import POINT_DTYPE, Intrinsics

__all__ = [
    "BadInput",
    "SUPPORTED_ENCODINGS",
    "image_to_rgb",
    "check_raw_image",
    "compressed_to_rgb",
    "numpy_to_image",
    "image_to_numpy",
    "check_camera_info",
    "camera_info_from_intrinsics",
    "points_to_pointcloud2",
    "pointcloud2_to_array",
]

# one decoder for every path (node, converter, CLI): depth_defocus_ros/imagecodec.py
BadInput = DecodeError  # an input message the node skips; ``kind`` is its diagnostics counter
MIN_SIZE = 8  # px: smaller frames cannot be processed (the estimator's lower limit)


def _processable(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    if w < MIN_SIZE or h < MIN_SIZE:
        raise BadInput("zero_size", f"frame too small ({w}x{h}, at least {MIN_SIZE}x{MIN_SIZE} px)")
    return rgb


def image_to_rgb(msg: Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a sensor_msgs/Image in any of :data:`SUPPORTED_ENCODINGS`."""
    return _processable(decode_image(msg.encoding, msg.width, msg.height, msg.step, msg.is_bigendian, msg.data))


def check_raw_image(msg: Image) -> None:
    """Raise :class:`BadInput` for an Image whose encoding, size or data length cannot be decoded,
    without reading a pixel (the node checks every frame on arrival, so a malformed one is counted
    even when a newer frame would have replaced it)."""
    check_layout(msg.encoding, msg.width, msg.height, msg.step, len(msg.data))
    if msg.width < MIN_SIZE or msg.height < MIN_SIZE:
        raise BadInput("zero_size", f"frame too small ({msg.width}x{msg.height}, at least {MIN_SIZE}x{MIN_SIZE} px)")


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a sensor_msgs/CompressedImage (jpeg or png, as image_transport's
    compressed plugin writes them)."""
    return _processable(decode_compressed(msg.format, msg.data))


_NUMPY_ENCODINGS = {
    "32FC1": (np.float32, 1),
    "bgr8": (np.uint8, 3),
    "rgb8": (np.uint8, 3),
    "mono8": (np.uint8, 1),
    "16UC1": (np.uint16, 1),
    "mono16": (np.uint16, 1),
}


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
    msg.fields = [
        PointField(name=n, offset=POINT_DTYPE.fields[n][1], datatype=PointField.FLOAT32, count=1)
        for n in POINT_DTYPE.names
    ]
    msg.is_bigendian = False
    msg.point_step = POINT_DTYPE.itemsize
    msg.row_step = msg.point_step * msg.width
    msg.is_dense = bool(np.isfinite(pts["z"]).all())
    msg.data = pts.tobytes()
    return msg


_PF_DTYPES = {
    PointField.INT8: "i1",
    PointField.UINT8: "u1",
    PointField.INT16: "i2",
    PointField.UINT16: "u2",
    PointField.INT32: "i4",
    PointField.UINT32: "u4",
    PointField.FLOAT32: "f4",
    PointField.FLOAT64: "f8",
}


def pointcloud2_to_array(msg: PointCloud2) -> np.ndarray:
    """(height, width) structured array with the message's fields (any layout, either byte order)."""
    order = ">" if msg.is_bigendian else "<"
    dt = np.dtype(
        {
            "names": [f.name for f in msg.fields],
            "formats": [order + _PF_DTYPES[f.datatype] for f in msg.fields],
            "offsets": [f.offset for f in msg.fields],
            "itemsize": msg.point_step,
        }
    )
    rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.row_step)[:, : msg.width * msg.point_step]
    return np.ascontiguousarray(rows).view(dt).reshape(msg.height, msg.width)
