"""The one camera-image decoder: raw pixel buffers and compressed images -> (H, W, 3) uint8 RGB.

numpy (and OpenCV for YUV and compressed data), no rclpy: the node (``ros/conversions.py``), the
bag converter (``bags/messages.py``) and the CLI (``cli.read_rgb_image``) all call it, so a stream
that one of them accepts, the others accept too. Supported encodings (sensor_msgs/image_encodings,
case-insensitive; rows may be padded, ``step`` >= width x bytes per pixel):

| encoding | pixels | note |
| --- | --- | --- |
| rgb8, bgr8, rgba8, bgra8 (8UC3 = bgr8, 8UC4 = bgra8) | 8-bit colour | alpha dropped |
| rgb16, bgr16, rgba16, bgra16 | 16-bit colour, either byte order | rounded to 8 bits (x / 257) |
| mono8 (8UC1), mono16 | grey | repeated into R, G, B; mono16 rounded to 8 bits |
| yuv422 (UYVY), yuv422_yuy2 (YUYV) | packed 4:2:2 | BT.601; even width |
| nv12 | planar 4:2:0 (Y plane, interleaved UV) | even width and height |

Compressed images: JPEG or PNG (what image_transport's compressed plugin writes), colour or grey,
8 or 16 bits. Depth encodings (16UC1, 32FC1) and compressedDepth are not camera images.

Anything else raises :class:`DecodeError`, whose ``kind`` says what went wrong
(``unsupported_encoding``, ``zero_size``, ``bad_data_length``, ``corrupt_compressed``) and whose
message names the encoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DecodeError", "SUPPORTED_ENCODINGS", "ENCODING_ALIASES", "decode_image", "decode_compressed"]


class DecodeError(ValueError):
    """A frame that cannot be decoded; ``kind`` names the problem (a diagnostics counter)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class _Layout:
    channels: int  # samples per pixel in the buffer
    bytes_per_sample: int
    order: str  # rgb, bgr, grey, uyvy, yuyv, nv12


_ENCODINGS = {
    "rgb8": _Layout(3, 1, "rgb"),
    "bgr8": _Layout(3, 1, "bgr"),
    "rgba8": _Layout(4, 1, "rgb"),
    "bgra8": _Layout(4, 1, "bgr"),
    "rgb16": _Layout(3, 2, "rgb"),
    "bgr16": _Layout(3, 2, "bgr"),
    "rgba16": _Layout(4, 2, "rgb"),
    "bgra16": _Layout(4, 2, "bgr"),
    "mono8": _Layout(1, 1, "grey"),
    "mono16": _Layout(1, 2, "grey"),
    "yuv422": _Layout(2, 1, "uyvy"),
    "yuv422_yuy2": _Layout(2, 1, "yuyv"),
    "nv12": _Layout(1, 1, "nv12"),
}
ENCODING_ALIASES = {"8uc1": "mono8", "8uc3": "bgr8", "8uc4": "bgra8", "uyvy": "yuv422", "yuyv": "yuv422_yuy2"}
SUPPORTED_ENCODINGS = tuple(_ENCODINGS)
_DEPTH = ("16uc1", "32fc1")


def _unsupported(encoding: str) -> DecodeError:
    what = " (a depth encoding, not a camera image)" if encoding.strip().lower() in _DEPTH else ""
    return DecodeError(
        "unsupported_encoding",
        f"unsupported image encoding {encoding!r}{what}; supported: "
        f"{', '.join(SUPPORTED_ENCODINGS)} (or a compressed jpeg/png image)",
    )


def _check_size(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise DecodeError("zero_size", f"zero-size frame ({width}x{height})")


def _to8(px: np.ndarray) -> np.ndarray:
    """16-bit samples rounded to 8 bits (0..65535 -> 0..255)."""
    return ((px.astype(np.uint32) + 128) // 257).astype(np.uint8)


def check_layout(encoding: str, width: int, height: int, step: int, data_length: int):
    """The checks a raw buffer must pass before it is decoded (cheap: no pixel is read).

    Returns (normalised encoding, its layout, rows of ``step`` bytes in the buffer); raises
    :class:`DecodeError` (``unsupported_encoding``, ``zero_size``, ``bad_data_length``)."""
    enc = encoding.strip().lower()
    enc = ENCODING_ALIASES.get(enc, enc)
    layout = _ENCODINGS.get(enc)
    if layout is None:
        raise _unsupported(encoding)
    w, h, step = int(width), int(height), int(step)
    _check_size(w, h)
    bpp = layout.channels * layout.bytes_per_sample
    rows_needed = h * 3 // 2 if layout.order == "nv12" else h
    if step < w * bpp or data_length != step * rows_needed:
        want = step * rows_needed
        raise DecodeError(
            "bad_data_length",
            f"data length {data_length} does not match {w}x{h} {enc} with step {step} "
            f"(expected step >= {w * bpp} and length = step x {rows_needed} = {want})",
        )
    if layout.order in ("uyvy", "yuyv", "nv12") and (w % 2 or (layout.order == "nv12" and h % 2)):
        raise DecodeError("bad_data_length", f"{enc} needs an even width{' and height' * (enc == 'nv12')}, got {w}x{h}")
    return enc, layout, rows_needed


def decode_image(encoding: str, width: int, height: int, step: int, is_bigendian, data) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a raw image buffer (a sensor_msgs/Image's fields).

    Args:
        encoding: one of :data:`SUPPORTED_ENCODINGS` or :data:`ENCODING_ALIASES`.
        width, height: px. step: bytes per row (>= width x bytes per pixel).
        is_bigendian: byte order of 16-bit samples.
        data: bytes-like, at least ``step x height`` bytes (exactly, for a ROS message).
    """
    import cv2

    buf = data.reshape(-1).view(np.uint8) if isinstance(data, np.ndarray) else np.frombuffer(data, dtype=np.uint8)
    enc, layout, rows_needed = check_layout(encoding, width, height, step, buf.size)
    w, h, step = int(width), int(height), int(step)
    bpp = layout.channels * layout.bytes_per_sample
    rows = buf.reshape(rows_needed, step)[:, : w * bpp]  # (rows, W * bpp): row padding dropped
    if layout.order == "nv12":
        return cv2.cvtColor(np.ascontiguousarray(rows), cv2.COLOR_YUV2RGB_NV12)
    if layout.order in ("uyvy", "yuyv"):
        code = cv2.COLOR_YUV2RGB_UYVY if layout.order == "uyvy" else cv2.COLOR_YUV2RGB_YUY2
        return cv2.cvtColor(np.ascontiguousarray(rows).reshape(h, w, 2), code)
    if layout.bytes_per_sample == 2:
        px = _to8(np.ascontiguousarray(rows).view(">u2" if is_bigendian else "<u2").reshape(h, w, layout.channels))
    else:
        px = rows.reshape(h, w, layout.channels)
    if layout.order == "grey":
        return np.ascontiguousarray(np.repeat(px, 3, axis=2))
    px = px[..., :3]
    return np.ascontiguousarray(px[..., ::-1] if layout.order == "bgr" else px)


def decode_compressed(fmt: str, data) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a compressed image (a sensor_msgs/CompressedImage's ``format`` and
    ``data``): JPEG or PNG, colour or grey, 8 or 16 bits."""
    import cv2

    if "compresseddepth" in fmt.lower():
        raise DecodeError("unsupported_encoding", f"compressed depth ({fmt!r}) is not a camera image")
    buf = data.reshape(-1).view(np.uint8) if isinstance(data, np.ndarray) else np.frombuffer(data, dtype=np.uint8)
    if buf.size == 0:
        raise DecodeError("zero_size", "empty compressed image")
    if buf[:2].tobytes() == b"\xff\xd8" and b"\xff\xd9" not in buf[-64:].tobytes():
        raise DecodeError("corrupt_compressed", f"truncated JPEG ({buf.size} bytes, no end-of-image marker)")
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)  # (H, W[, C]) BGR(A) or grey, uint8 / uint16, or None
    if img is None:
        raise DecodeError(
            "corrupt_compressed",
            f"cannot decode compressed image (format {fmt!r}, {buf.size} bytes): corrupt or not jpeg/png",
        )
    if img.dtype == np.uint16:
        img = _to8(img)
    elif img.dtype != np.uint8:
        raise DecodeError("unsupported_encoding", f"compressed image of {img.dtype} samples (format {fmt!r})")
    _check_size(img.shape[1], img.shape[0])
    if img.ndim == 2 or img.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=2))
    return np.ascontiguousarray(img[..., 2::-1])  # BGR(A) -> RGB
