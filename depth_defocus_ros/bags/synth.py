"""Write small rosbags from synthetic scenes with known depth (tests, examples, measurements).

A bag holds what an RGB-D robot camera records: ``/camera/color/image_raw`` (Image or
CompressedImage), ``/camera/color/camera_info`` and ``/camera/aligned_depth_to_color/image_raw``
(16UC1 mm or 32FC1 m), stamped like a camera running at ``fps``. The images are the focused
renders of :class:`~depth_defocus_ros.synth.scenes.SceneGenerator` (``image="focused"``, for
``real-defocus``) or its all-in-focus images (``image="aif"``, for ``render``).
"""

from __future__ import annotations

from pathlib import Path

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
    import cv2
    from rosbags.typesys import Stores, get_typestore

    frames = frames if frames is not None else scene_frames(n, seed)
    n = len(frames["fx"])
    ros1 = storage == "ros1"
    ts = get_typestore(
        Stores(typestore_name) if typestore_name else (Stores.ROS1_NOETIC if ros1 else Stores.ROS2_JAZZY)
    )
    rgb_all = frames["image"] if image == "focused" else frames["aif"]
    h, w = rgb_all.shape[1:3]
    rng = np.random.default_rng(seed + 17)
    stamps = t0_ns + (np.arange(n) * (1e9 / fps)).astype(np.int64)
    Image = ts.types["sensor_msgs/msg/Image"]
    Compressed = ts.types["sensor_msgs/msg/CompressedImage"]
    Info = ts.types["sensor_msgs/msg/CameraInfo"]
    Roi = ts.types["sensor_msgs/msg/RegionOfInterest"]
    compressed = rgb_encoding in ("jpeg", "png")
    rgb_type = Compressed.__msgtype__ if compressed else Image.__msgtype__
    rgb_topic = RGB_TOPIC + ("/compressed" if compressed else "")
    depth_raw = []
    for i in range(n):
        d = frames["depth"][i].copy()
        if invalid_fraction > 0:
            d[rng.random(d.shape) < invalid_fraction] = 0.0
        if depth_size is not None:
            d = cv2.resize(d, tuple(depth_size), interpolation=cv2.INTER_NEAREST)
        depth_raw.append(depth_to_encoding(d, depth_encoding))
    depth_raw = np.stack(depth_raw)
    written = []

    def ser(msg, typ):
        return ts.serialize_ros1(msg, typ) if ros1 else ts.serialize_cdr(msg, typ)

    def info_msg(i, stamp):
        iw, ih = info_size or (w, h)
        fx = float(frames["fx"][i]) * iw / w
        k = np.array([fx, 0, iw / 2, 0, fx, ih / 2, 0, 0, 1], dtype=np.float64)
        p = np.array([fx, 0, iw / 2, 0, 0, fx, ih / 2, 0, 0, 0, 1, 0], dtype=np.float64)
        kw = dict(
            header=_header(ts, stamp, rgb_frame_id, ros1),
            height=ih,
            width=iw,
            distortion_model="plumb_bob",
            binning_x=0,
            binning_y=0,
            roi=Roi(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
        )
        if ros1:
            kw.update(D=np.zeros(5), K=k, R=np.eye(3).ravel(), P=p)
        else:
            kw.update(d=np.zeros(5), k=k, r=np.eye(3).ravel(), p=p)
        return Info(**kw)

    def messages():
        for i in range(n):
            st = int(stamps[i])
            if i not in drop_rgb:
                rgb = rgb_all[i]
                if compressed:
                    ok, buf = cv2.imencode("." + ("jpg" if rgb_encoding == "jpeg" else "png"), rgb[:, :, ::-1])
                    msg = Compressed(
                        header=_header(ts, st, rgb_frame_id, ros1),
                        format=f"rgb8; {rgb_encoding} compressed bgr8",
                        data=np.frombuffer(buf.tobytes(), np.uint8),
                    )
                else:
                    data = rgb if rgb_encoding == "rgb8" else rgb[:, :, ::-1]
                    msg = Image(
                        header=_header(ts, st, rgb_frame_id, ros1),
                        height=h,
                        width=w,
                        encoding=rgb_encoding,
                        is_bigendian=0,
                        step=w * 3,
                        data=np.ascontiguousarray(data).reshape(-1),
                    )
                yield rgb_topic, rgb_type, st, msg
            if with_info:
                yield INFO_TOPIC, Info.__msgtype__, st, info_msg(i, st)
            if with_depth and i not in drop_depth:
                dst = st + depth_offset_ns
                d = depth_raw[i]
                bpp = 2 if depth_encoding == "16UC1" else 4
                msg = Image(
                    header=_header(ts, dst, depth_frame_id or rgb_frame_id, ros1),
                    height=d.shape[0],
                    width=d.shape[1],
                    encoding=depth_encoding,
                    is_bigendian=0,
                    step=d.shape[1] * bpp,
                    data=np.frombuffer(d.tobytes(), np.uint8),
                )
                yield DEPTH_TOPIC, Image.__msgtype__, dst + 1_000_000, msg  # received 1 ms after the stamp

    path = Path(path)
    conns = {}
    if ros1:
        from rosbags.rosbag1 import Writer as Writer1

        with Writer1(path) as wr:
            for topic, typ, t, msg in messages():
                if topic not in conns:
                    conns[topic] = wr.add_connection(topic, typ, typestore=ts)
                wr.write(conns[topic], t, ser(msg, typ))
                written.append(topic)
    else:
        from rosbags.rosbag2 import StoragePlugin, Writer

        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        with Writer(path, version=9, storage_plugin=plugin) as wr:
            for topic, typ, t, msg in messages():
                if topic not in conns:
                    conns[topic] = wr.add_connection(topic, typ, typestore=ts)
                wr.write(conns[topic], t, ser(msg, typ))
                written.append(topic)
    return {
        "image": rgb_all,
        "aif": frames["aif"],
        "depth_raw": depth_raw,
        "stamps": stamps,
        "lens": frames["lens"],
        "fx": frames["fx"],
        "rgb_topic": rgb_topic,
    }
