"""Organised point clouds from a depth image (pinhole back-projection), plain numpy.

A pixel ``(u, v)`` (column, row; pixel centres at integer coordinates, as in CameraInfo ``K``)
with depth ``z`` (m, along the optical axis) becomes, in the camera's optical frame (REP 103:
x right, y down, z forward)::

    x = (u - cx) * z / fx,   y = (v - cy) * z / fy,   z = z

Invalid depth (NaN, inf, <= 0) gives a NaN point; the cloud stays organised (one point per kept
pixel, row-major), as depth_image_proc's ``point_cloud_xyzrgb`` publishes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Intrinsics", "depth_to_points", "pack_rgb", "unpack_rgb", "POINT_DTYPE", "make_points_array", "write_ply"]

# x y z rgb, float32 each (rgb: 0x00RRGGBB reinterpreted as float32, the PCL / RViz convention)
POINT_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4")])


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in px at the resolution of the depth image they go with."""

    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_k(cls, k) -> Intrinsics:
        """From a row-major 3x3 camera matrix (CameraInfo ``k``)."""
        return cls(float(k[0]), float(k[4]), float(k[2]), float(k[5]))

    @classmethod
    def centred(cls, fx: float, width: int, height: int, fy: float | None = None) -> Intrinsics:
        """Principal point at the image centre (``width / 2``, ``height / 2``), square pixels."""
        return cls(float(fx), float(fy if fy is not None else fx), width / 2.0, height / 2.0)

    def k(self) -> list[float]:
        return [self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0]


def depth_to_points(depth: np.ndarray, intr: Intrinsics, decimation: int = 1) -> np.ndarray:
    """(H', W', 3) float32 points (m) from an (H, W) depth image (m); ``H' = ceil(H / decimation)``.

    Keeps pixels ``(u, v)`` with ``u % decimation == 0 and v % decimation == 0`` (their true pixel
    coordinates are used, so a decimated cloud lies on the same surface). Invalid depth -> NaN.
    """
    if decimation < 1:
        raise ValueError(f"decimation must be >= 1, got {decimation}")
    z = np.asarray(depth, dtype=np.float32)[::decimation, ::decimation]  # (H', W')
    z = np.where(np.isfinite(z) & (z > 0), z, np.float32(np.nan))
    h, w = depth.shape
    u = np.arange(0, w, decimation, dtype=np.float64)  # (W',)
    v = np.arange(0, h, decimation, dtype=np.float64)  # (H',)
    rx = ((u - intr.cx) / intr.fx).astype(np.float32)[None, :]  # (1, W')
    ry = ((v - intr.cy) / intr.fy).astype(np.float32)[:, None]  # (H', 1)
    return np.stack([rx * z, ry * z, z], axis=-1)  # (H', W', 3)


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (...) float32 holding the bits of uint32 ``0x00RRGGBB``."""
    rgb = np.asarray(rgb, dtype=np.uint8)
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    return packed.astype("<u4").view("<f4")


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_rgb`: (...) float32 -> (..., 3) uint8 RGB."""
    u = np.ascontiguousarray(packed, dtype="<f4").view("<u4")
    return np.stack([(u >> 16) & 255, (u >> 8) & 255, u & 255], axis=-1).astype(np.uint8)


def make_points_array(points: np.ndarray, rgb: np.ndarray | None = None) -> np.ndarray:
    """(H', W') structured array of :data:`POINT_DTYPE` from (H', W', 3) points and matching RGB."""
    out = np.empty(points.shape[:2], dtype=POINT_DTYPE)
    out["x"], out["y"], out["z"] = points[..., 0], points[..., 1], points[..., 2]
    out["rgb"] = pack_rgb(rgb) if rgb is not None else pack_rgb(np.full(points.shape, 255, np.uint8))
    return out


def write_ply(path, points: np.ndarray, rgb: np.ndarray | None = None) -> int:
    """Write the finite points of (..., 3) ``points`` (and (..., 3) uint8 ``rgb``) as a binary
    little-endian PLY (float x y z, uchar red green blue); return the number of points written."""
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    cols = np.full(pts.shape, 255, np.uint8) if rgb is None else np.asarray(rgb, np.uint8).reshape(-1, 3)
    keep = np.isfinite(pts).all(axis=1)
    pts, cols = pts[keep], cols[keep]
    rec = np.empty(
        len(pts), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    )
    rec["x"], rec["y"], rec["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    rec["red"], rec["green"], rec["blue"] = cols[:, 0], cols[:, 1], cols[:, 2]
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment depth_defocus_ros point cloud (m, camera optical "
        f"frame)\nelement vertex {len(rec)}\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(rec.tobytes())
    return len(rec)
