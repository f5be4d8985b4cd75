"""Open rosbag2 (sqlite3, MCAP) and ROS 1 bags with ``rosbags`` and choose the topics to convert.

Accepted paths: a rosbag2 folder (with ``metadata.yaml``), a ``.mcap`` or ``.db3`` storage file, a
rosbag2 folder without ``metadata.yaml`` (a recording that was not closed cleanly: its storage files
are read directly), or a ROS 1 ``.bag`` file. Bags without embedded message definitions (rosbag2
before Iron) are read with the ROS 2 Humble definitions of ``sensor_msgs`` (unchanged since).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .messages import DEPTH_TYPES, IMAGE_TYPES, INFO_TYPES

__all__ = ["BagError", "BagSource", "resolve_bag", "open_bag", "select_topics", "bag_custom_data"]


class BagError(RuntimeError):
    """A bag that cannot be converted; the message names the bag and the problem."""


@dataclass
class BagSource:
    path: Path  # as given (resolved)
    kind: str  # "rosbag2", "mcap", "sqlite3", "ros1"
    read_paths: list = field(default_factory=list)
    note: str = ""

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def ros1(self) -> bool:
        return self.kind == "ros1"


def resolve_bag(path) -> BagSource:
    """Find what to read for ``path``; raise :class:`BagError` if it is no bag."""
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise BagError(f"{path}: no such file or folder")
    if p.is_dir():
        if (p / "metadata.yaml").is_file():
            return BagSource(p, "rosbag2", [p])
        files = sorted(p.glob("*.mcap")) or sorted(p.glob("*.db3"))
        if files:
            return BagSource(
                p,
                "mcap" if files[0].suffix == ".mcap" else "sqlite3",
                files,
                note="no metadata.yaml (was the recording stopped cleanly?): reading "
                f"{', '.join(f.name for f in files)} directly",
            )
        raise BagError(f"{path}: not a bag (a rosbag2 folder needs metadata.yaml or .mcap/.db3 files)")
    if p.suffix == ".bag":
        return BagSource(p, "ros1", [p])
    if p.suffix in (".mcap", ".db3"):
        return BagSource(p, "mcap" if p.suffix == ".mcap" else "sqlite3", [p])
    raise BagError(f"{path}: unknown bag type (expected a rosbag2 folder, .mcap, .db3 or ROS 1 .bag)")


def explain_read_error(exc: BaseException) -> str:
    """A user-facing reason for an exception raised by ``rosbags`` (or sqlite / the OS)."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    low = msg.lower()
    if "end magic" in low or "invalid mcap footer" in low or ("mcap" in low and "summary" in low):
        return (
            "MCAP file is truncated or corrupt (no valid end of file: the recording was interrupted or the "
            "copy is incomplete); 'mcap recover IN.mcap -o OUT.mcap' (mcap CLI) may rescue its messages"
        )
    if "file magic" in low:
        return "not an MCAP file (wrong magic bytes at the start) or the file is corrupt"
    if "not a database" in low or "malformed" in low or "disk image" in low:
        return f"sqlite3 storage is corrupt or truncated ({msg})"
    if "could not read" in low or "unexpected end" in low or "truncat" in low or "short" in low:
        return f"truncated or unreadable data ({msg})"
    return msg


def _default_typestore(ros1: bool):
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE)


@contextmanager
def open_bag(src: BagSource):
    """``rosbags.highlevel.AnyReader`` on the bag, errors turned into :class:`BagError`."""
    from rosbags.highlevel import AnyReader

    try:
        reader = AnyReader(src.read_paths, default_typestore=_default_typestore(src.ros1))
        reader.open()
    except Exception as exc:  # rosbags' ReaderError, sqlite errors, OSError, KeyError in metadata...
        raise BagError(f"{src.name}: cannot open bag: {explain_read_error(exc)}") from None
    try:
        yield reader
    finally:
        try:
            reader.close()
        except Exception:  # closing a broken bag must not hide the real error
            pass


def bag_custom_data(reader) -> dict:
    """rosbag2 ``custom_data`` from metadata.yaml (``ros2 bag record --custom-data K=V``), or {}."""
    out = {}
    for r in getattr(reader, "readers", []):
        meta = getattr(getattr(r, "storage", None), "metadata", None)
        custom = getattr(meta, "custom", None)
        if isinstance(custom, dict):
            out.update({str(k): str(v) for k, v in custom.items()})
    return out


_DEPTHISH = re.compile(r"(depth|disparity|infra|/ir(/|$)|confidence|colorized|/points)", re.I)
_TRANSPORT = re.compile(r"/(compressed|compressedDepth|theora|zstd|ffmpeg)$")


def _base(topic: str) -> str:
    return _TRANSPORT.sub("", topic)


def _pick(cands: list, prefer: list, what: str, flag: str, bag: str):
    if len(cands) == 1:
        return cands[0]
    for pat in prefer:
        sel = [t for t in cands if re.search(pat, t, re.I)]
        if len(sel) == 1:
            return sel[0]
    raise BagError(f"{bag}: several {what} topics ({', '.join(cands)}); choose one with {flag}")


def _check_topic(topics: dict, topic: str, kinds, flag: str, bag: str, listing: str) -> str:
    """``topic`` as named with ``flag``, if the bag has it with a message type in ``kinds``."""
    if topic not in topics:
        raise BagError(f"{bag}: no topic {topic!r} ({flag}); the bag has: {listing}")
    if topics[topic] not in kinds:
        raise BagError(f"{bag}: {flag} {topic!r} is a {topics[topic]}, not a {' or '.join(kinds)}")
    return topic


def _auto_rgb(topics: dict, images: list, bag: str, listing: str) -> str:
    """The one image topic that does not look like depth/IR (raw beats ``/compressed``, then color/rgb)."""
    cands = [t for t in images if not _DEPTHISH.search(t)]
    raw = {t for t in cands if topics[t] == "sensor_msgs/msg/Image"}
    cands = [t for t in cands if not (_base(t) != t and _base(t) in raw)]  # raw beats its compressed twin
    if not cands:
        raise BagError(
            f"{bag}: no RGB image topic found (Image or CompressedImage); the bag has: {listing}; "
            "name it with --rgb-topic"
        )
    return _pick(cands, [r"color|rgb"], "RGB image", "--rgb-topic", bag)


def _auto_depth(topics: dict, images: list, bag: str, listing: str) -> str:
    """The image topic with ``depth`` in its name (raw beats ``/compressed``, then aligned/registered)."""
    cands = [t for t in images if re.search("depth", t, re.I) and not re.search("colorized", t, re.I)]
    raw = {t for t in cands if topics[t] == "sensor_msgs/msg/Image"}
    cands = [t for t in cands if not (_base(t) != t and _base(t) in raw)]
    if not cands:
        raise BagError(
            f"{bag}: no depth topic found (an Image topic with 'depth' in its name); the bag has: "
            f"{listing}; name it with --depth-topic, or use --mode unlabeled for frames "
            "without depth"
        )
    return _pick(cands, [r"aligned_depth_to_color|aligned", r"registered"], "depth", "--depth-topic", bag)


def _auto_info(topics: dict, rgb: str, bag: str) -> str | None:
    """The RGB topic's sibling ``camera_info``, else the bag's only CameraInfo topic, else None."""
    infos = sorted(t for t, ty in topics.items() if ty in INFO_TYPES)
    sibling = _base(rgb).rsplit("/", 1)[0] + "/camera_info"
    if sibling in infos:
        return sibling
    if len(infos) == 1:
        return infos[0]
    if len(infos) > 1:
        raise BagError(
            f"{bag}: several CameraInfo topics ({', '.join(infos)}) and none next to {rgb}; "
            "choose one with --info-topic"
        )
    return None


def select_topics(
    topics: dict,
    bag: str,
    rgb: str | None = None,
    depth: str | None = None,
    info: str | None = None,
    need_depth: bool = True,
) -> tuple:
    """(rgb, depth or None, camera_info or None) topics of a bag from ``{topic: msgtype}``.

    Auto-detection: the RGB topic is the one Image/CompressedImage topic whose name does not look
    like depth/IR (a raw topic is preferred over its ``/compressed`` twin; names with ``color`` or
    ``rgb`` win a tie); the depth topic is the Image topic with ``depth`` in its name (``aligned``
    or ``registered`` wins a tie); the CameraInfo is the RGB topic's sibling ``camera_info`` or
    the only CameraInfo in the bag. Anything ambiguous asks for the flag.
    """
    images = sorted(t for t, ty in topics.items() if ty in IMAGE_TYPES)
    listing = ", ".join(f"{t} ({topics[t].rsplit('/', 1)[-1]})" for t in sorted(topics)) or "none"
    if rgb:
        rgb = _check_topic(topics, rgb, IMAGE_TYPES, "--rgb-topic", bag, listing)
    else:
        rgb = _auto_rgb(topics, images, bag, listing)
    if depth:
        depth = _check_topic(topics, depth, DEPTH_TYPES, "--depth-topic", bag, listing)
    elif need_depth:
        depth = _auto_depth(topics, images, bag, listing)
    if info:
        info = _check_topic(topics, info, INFO_TYPES, "--info-topic", bag, listing)
    elif (found := _auto_info(topics, rgb, bag)) is not None:
        info = found
    return rgb, depth, info
