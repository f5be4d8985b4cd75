"""Write small rosbags from synthetic scenes with known depth (tests, examples, measurements).

A bag holds what an RGB-D robot camera records: ``/camera/color/image_raw`` (Image or
CompressedImage), ``/camera/color/camera_info`` and ``/camera/aligned_depth_to_color/image_raw``
(16UC1 mm or 32FC1 m), stamped like a camera running at ``fps``. The images are the focused
renders of :class:`~depth_defocus_ros.synth.scenes.SceneGenerator` (``image="focused"``, for
``real-defocus``) or its all-in-focus images (``image="aif"``, for ``render``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_synthetic_bag", "scene_frames"]

RGB_TOPIC = "/camera/color/image_raw"
INFO_TOPIC = "/camera/color/camera_info"
DEPTH_TOPIC = "/camera/aligned_depth_to_color/image_raw"


def scene_frames(n: int, seed: int = 0, config=None, batch: int = 8) -> dict:
    """``n`` synthetic frames as numpy: image / aif (N, H, W, 3) uint8, depth (N, H, W) float32 m,
    lens (N, 3), fx (N,)."""
    import torch

    from ..synth.scenes import SceneConfig, SceneGenerator

    cfg = config or SceneConfig(height=48, width=64, texture_size=64)
    gen = SceneGenerator(cfg, seed=seed)
    parts = [gen.batch(min(batch, n - i)) for i in range(0, n, batch)]
    b = {k: torch.cat([p[k] for p in parts]) for k in ("image", "aif", "depth", "lens", "fx")}

    def u8(x):
        return (x.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).byte().numpy()

    return {
        "image": u8(b["image"]),
        "aif": u8(b["aif"]),
        "depth": b["depth"][:, 0].numpy().astype(np.float32),
        "lens": b["lens"].numpy(),
        "fx": b["fx"].numpy(),
    }


def _stamp(ts, ns: int):
    return ts.types["builtin_interfaces/msg/Time"](sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _header(ts, ns: int, frame_id: str, ros1: bool):
    h = ts.types["std_msgs/msg/Header"]
    if ros1:
        return h(seq=0, stamp=_stamp(ts, ns), frame_id=frame_id)
    return h(stamp=_stamp(ts, ns), frame_id=frame_id)


def depth_to_encoding(depth_m: np.ndarray, encoding: str) -> np.ndarray:
    """Depth in metres (0 / NaN invalid) -> the raw array of a 16UC1 (mm) or 32FC1 (m) Image."""
    if encoding == "16UC1":
        mm = np.where(np.isfinite(depth_m) & (depth_m > 0), np.round(depth_m * 1000.0), 0)
        return np.clip(mm, 0, 65535).astype(np.uint16)
    return np.where(np.isfinite(depth_m) & (depth_m > 0), depth_m, np.nan).astype(np.float32)


def _typestore(ros1: bool, typestore_name: str | None):
    """The ``rosbags`` typestore named ``typestore_name``, else ROS 1 Noetic / ROS 2 Jazzy."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(
        Stores(typestore_name) if typestore_name else (Stores.ROS1_NOETIC if ros1 else Stores.ROS2_JAZZY)
    )


def _depth_images(depth_m: np.ndarray, seed: int, invalid_fraction: float, depth_size, encoding: str) -> np.ndarray:
    """(N, h, w) raw depth images as written: ``depth_m`` (N, H, W) m with a random ``invalid_fraction``
    of pixels set invalid (drawn from ``seed``), resized (nearest) to ``depth_size`` (w, h) if given,
    encoded as ``encoding`` (16UC1 mm or 32FC1 m)."""
    import cv2

    rng = np.random.default_rng(seed + 17)
    depth_raw = []
    for i in range(len(depth_m)):
        d = depth_m[i].copy()
        if invalid_fraction > 0:
            d[rng.random(d.shape) < invalid_fraction] = 0.0
        if depth_size is not None:
            d = cv2.resize(d, tuple(depth_size), interpolation=cv2.INTER_NEAREST)
        depth_raw.append(depth_to_encoding(d, encoding))
    return np.stack(depth_raw)


@dataclass(frozen=True)
class _Camera:
    """The synthetic RGB-D camera: what it publishes (images as written), how it stamps and encodes it."""

    ts: Any  # rosbags typestore
    ros1: bool
    rgb: np.ndarray  # (N, H, W, 3) uint8 RGB
    fx: np.ndarray  # (N,) px at the RGB size
    depth_raw: np.ndarray  # (N, h, w) as written (mm uint16 or m float32)
    stamps: np.ndarray  # (N,) ns, the RGB and CameraInfo header stamps
    depth_offset_ns: int  # depth stamps = RGB stamps + this
    rgb_encoding: str  # rgb8, bgr8 (Image) or jpeg, png (CompressedImage)
    depth_encoding: str  # 16UC1 or 32FC1
    rgb_frame_id: str
    depth_frame_id: str
    info_size: tuple | None  # (w, h) of the CameraInfo if it differs from the RGB size

    @property
    def compressed(self) -> bool:
        return self.rgb_encoding in ("jpeg", "png")

    @property
    def rgb_topic(self) -> str:
        return RGB_TOPIC + ("/compressed" if self.compressed else "")

    def msgtype(self, name: str) -> str:
        """``sensor_msgs/msg/<name>`` as the typestore spells it."""
        return self.ts.types[f"sensor_msgs/msg/{name}"].__msgtype__

    def header(self, ns: int, frame_id: str):
        return _header(self.ts, ns, frame_id, self.ros1)

    def serialize(self, msg, typ: str):
        """The message's bytes in the bag (ROS 1 or CDR)."""
        return self.ts.serialize_ros1(msg, typ) if self.ros1 else self.ts.serialize_cdr(msg, typ)

    def rgb_msg(self, i: int, ns: int):
        """Frame ``i``'s RGB Image, or CompressedImage (jpeg / png of BGR, as image_transport writes)."""
        import cv2

        rgb, h, w = self.rgb[i], *self.rgb.shape[1:3]
        if self.compressed:
            ok, buf = cv2.imencode("." + ("jpg" if self.rgb_encoding == "jpeg" else "png"), rgb[:, :, ::-1])
            return self.ts.types["sensor_msgs/msg/CompressedImage"](
                header=self.header(ns, self.rgb_frame_id),
                format=f"rgb8; {self.rgb_encoding} compressed bgr8",
                data=np.frombuffer(buf.tobytes(), np.uint8),
            )
        data = rgb if self.rgb_encoding == "rgb8" else rgb[:, :, ::-1]
        return self.ts.types["sensor_msgs/msg/Image"](
            header=self.header(ns, self.rgb_frame_id),
            height=h,
            width=w,
            encoding=self.rgb_encoding,
            is_bigendian=0,
            step=w * 3,
            data=np.ascontiguousarray(data).reshape(-1),
        )

    def info_msg(self, i: int, ns: int):
        """Frame ``i``'s CameraInfo: pinhole K and P (fx scaled to ``info_size``), no distortion."""
        h, w = self.rgb.shape[1:3]
        iw, ih = self.info_size or (w, h)
        fx = float(self.fx[i]) * iw / w
        k = np.array([fx, 0, iw / 2, 0, fx, ih / 2, 0, 0, 1], dtype=np.float64)
        p = np.array([fx, 0, iw / 2, 0, 0, fx, ih / 2, 0, 0, 0, 1, 0], dtype=np.float64)
        roi = self.ts.types["sensor_msgs/msg/RegionOfInterest"]
        kw = dict(
            header=self.header(ns, self.rgb_frame_id),
            height=ih,
            width=iw,
            distortion_model="plumb_bob",
            binning_x=0,
            binning_y=0,
            roi=roi(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
        )
        if self.ros1:
            kw.update(D=np.zeros(5), K=k, R=np.eye(3).ravel(), P=p)
        else:
            kw.update(d=np.zeros(5), k=k, r=np.eye(3).ravel(), p=p)
        return self.ts.types["sensor_msgs/msg/CameraInfo"](**kw)

    def depth_msg(self, i: int, ns: int):
        """Frame ``i``'s depth Image (``depth_encoding``), stamped ``ns``."""
        d = self.depth_raw[i]
        bpp = 2 if self.depth_encoding == "16UC1" else 4
        return self.ts.types["sensor_msgs/msg/Image"](
            header=self.header(ns, self.depth_frame_id),
            height=d.shape[0],
            width=d.shape[1],
            encoding=self.depth_encoding,
            is_bigendian=0,
            step=d.shape[1] * bpp,
            data=np.frombuffer(d.tobytes(), np.uint8),
        )

    def messages(self, drop_rgb=(), drop_depth=(), with_info: bool = True, with_depth: bool = True):
        """``(topic, msgtype, log time ns, message)`` in recording order, frame by frame."""
        rgb_type = self.msgtype("CompressedImage" if self.compressed else "Image")
        for i in range(len(self.stamps)):
            st = int(self.stamps[i])
            if i not in drop_rgb:
                yield self.rgb_topic, rgb_type, st, self.rgb_msg(i, st)
            if with_info:
                yield INFO_TOPIC, self.msgtype("CameraInfo"), st, self.info_msg(i, st)
            if with_depth and i not in drop_depth:
                dst = st + self.depth_offset_ns
                yield DEPTH_TOPIC, self.msgtype("Image"), dst + 1_000_000, self.depth_msg(i, dst)  # received 1 ms later


def _bag_writer(path: Path, storage: str):
    """An unopened ``rosbags`` writer for ``storage`` (``ros1``, ``mcap`` or ``sqlite3``)."""
    if storage == "ros1":
        from rosbags.rosbag1 import Writer as Writer1

        return Writer1(path)
    from rosbags.rosbag2 import StoragePlugin, Writer

    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    return Writer(path, version=9, storage_plugin=plugin)


def _write_messages(path: Path, storage: str, cam: _Camera, messages) -> None:
    """Write ``(topic, msgtype, log time ns, message)`` to a new bag, one connection per topic."""
    conns = {}
    with _bag_writer(path, storage) as wr:
        for topic, typ, t, msg in messages:
            if topic not in conns:
                conns[topic] = wr.add_connection(topic, typ, typestore=cam.ts)
            wr.write(conns[topic], t, cam.serialize(msg, typ))


def _ground_truth(cam: _Camera, frames: dict) -> dict:
    """What :func:`write_synthetic_bag` returns: the images and depth as written, stamps (ns), lens, fx."""
    return {
        "image": cam.rgb,
        "aif": frames["aif"],
        "depth_raw": cam.depth_raw,
        "stamps": cam.stamps,
        "lens": frames["lens"],
        "fx": frames["fx"],
        "rgb_topic": cam.rgb_topic,
    }


def write_synthetic_bag(
    path,
    frames: dict | None = None,
    n: int = 8,
    seed: int = 0,
    storage: str = "mcap",
    fps: float = 10.0,
    depth_encoding: str = "16UC1",
    rgb_encoding: str = "rgb8",
    image: str = "focused",
    t0_ns: int = 1_700_000_000_000_000_000,
    depth_offset_ns: int = 0,
    drop_rgb=(),
    drop_depth=(),
    with_depth: bool = True,
    with_info: bool = True,
    rgb_frame_id: str = "camera_color_optical_frame",
    depth_frame_id: str | None = None,
    depth_size: tuple | None = None,
    invalid_fraction: float = 0.02,
    info_size: tuple | None = None,
    typestore_name: str | None = None,
) -> dict:
    """Write a bag and return the ground truth as written.

    Args:
        path: bag folder (rosbag2) or ``.bag`` file (``storage="ros1"``); must not exist.
        frames: output of :func:`scene_frames` (drawn with ``n``, ``seed`` if None).
        storage: ``mcap``, ``sqlite3`` (rosbag2) or ``ros1``.
        rgb_encoding: ``rgb8``, ``bgr8`` (Image) or ``jpeg`` / ``png`` (CompressedImage).
        image: ``focused`` or ``aif`` (all-in-focus) for the RGB topic.
        depth_offset_ns: depth stamps = RGB stamps + offset (to test the pairing tolerance).
        drop_rgb, drop_depth: frame indices whose RGB / depth message is left out.
        depth_size: (w, h) of the depth images if they differ from the RGB size (nearest resize).
        invalid_fraction: share of depth pixels set invalid (0 / NaN), as depth sensors give.
    Returns:
        dict with ``image`` (N, H, W, 3) uint8 RGB as written, ``depth_raw`` (N, h, w) as written,
        ``stamps`` (N,) ns, ``lens`` (N, 3), ``fx`` (N,), ``aif``.
    """
    frames = frames if frames is not None else scene_frames(n, seed)
    ros1 = storage == "ros1"
    cam = _Camera(
        ts=_typestore(ros1, typestore_name),
        ros1=ros1,
        rgb=frames["image"] if image == "focused" else frames["aif"],
        fx=frames["fx"],
        depth_raw=_depth_images(frames["depth"], seed, invalid_fraction, depth_size, depth_encoding),
        stamps=t0_ns + (np.arange(len(frames["fx"])) * (1e9 / fps)).astype(np.int64),
        depth_offset_ns=depth_offset_ns,
        rgb_encoding=rgb_encoding,
        depth_encoding=depth_encoding,
        rgb_frame_id=rgb_frame_id,
        depth_frame_id=depth_frame_id or rgb_frame_id,
        info_size=info_size,
    )
    _write_messages(Path(path), storage, cam, cam.messages(drop_rgb, drop_depth, with_info, with_depth))
    return _ground_truth(cam, frames)
