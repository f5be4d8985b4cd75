"""bag2dataset, stage 1 (one process per bag): choose the topics, read every RGB / depth /
CameraInfo header (stamps and frame_ids, without decoding pixels), decode the first frame of each
topic to check its encoding, check registration and sizes, find fx and the lens settings; then
plan the bag's shards (:mod:`.plan`)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np

from .messages import FrameError, camera_info, decode_depth, decode_rgb, header_from_raw
from .options import ConvertError, ConvertOptions, report_progress
from .plan import group_shards, plan_frames
from .reader import BagError, bag_custom_data, explain_read_error, open_bag, resolve_bag, select_topics

__all__ = ["scan_bag", "bag_lens"]


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConvertError(f"cannot read lens file {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConvertError(f"lens file {path}: expected a mapping (focal_length_mm, f_number, focus_distance_m)")
    return data


def _lens_fields(d: dict) -> dict:
    out = {}
    if d.get("focal_length_m") is not None:
        out["focal_length_m"] = float(d["focal_length_m"])
    elif d.get("focal_length_mm") is not None:
        out["focal_length_m"] = float(d["focal_length_mm"]) / 1000.0
    for k in ("f_number", "focus_distance_m"):
        if d.get(k) is not None:
            out[k] = float(d[k])
    return out


def bag_lens(opts: ConvertOptions, src, custom: dict) -> tuple[dict, str]:
    """Lens settings of a bag, field by field from the first source that has them:
    flags, ``--lens`` file (its ``bags: {name: ...}`` entry, then its top level), ``BAG/lens.yaml``
    or ``BAG.lens.yaml`` next to the bag, the bag's ``custom_data``. Returns (lens, sources)."""
    sources = [
        (
            "flags",
            _lens_fields(
                {
                    "focal_length_mm": opts.focal_length_mm,
                    "f_number": opts.f_number,
                    "focus_distance_m": opts.focus_distance_m,
                }
            ),
        )
    ]
    if opts.lens_file:
        data = _read_yaml(Path(opts.lens_file))
        per_bag = data.get("bags") or {}
        for key in (src.name, Path(src.name).stem):
            if key in per_bag:
                sources.append((f"{opts.lens_file}[bags][{key}]", _lens_fields(per_bag[key] or {})))
                break
        sources.append((opts.lens_file, _lens_fields(data)))
    for cand in (
        src.path / "lens.yaml",
        src.path.with_name(src.path.name + ".lens.yaml"),
        src.path.with_name(src.path.stem + ".lens.yaml"),
    ):
        if cand.is_file():
            sources.append((str(cand), _lens_fields(_read_yaml(cand))))
            break
    if custom:
        sources.append(("metadata custom_data", _lens_fields(custom)))
    lens, used = {}, []
    for name, vals in sources:
        for k, v in vals.items():
            if k not in lens:
                lens[k] = v
                used.append(name)
    missing = [k for k in ("focal_length_m", "f_number", "focus_distance_m") if k not in lens]
    if missing:
        raise BagError(
            f"{src.name}: no lens settings for {', '.join(missing)}: give --focal-length-mm, --f-number, "
            "--focus-distance, or a --lens YAML file, or put lens.yaml in the bag (see DATASET.md). "
            "For an all-in-focus RGB-D camera (RealSense, ZED, ...), use --mode render: it renders "
            "focused images from the frames and their depth at drawn lens settings"
        )
    from ..optics import Lens, LensError

    try:
        Lens(**lens)
    except LensError as exc:
        raise BagError(f"{src.name}: impossible lens settings: {exc}") from None
    return lens, ", ".join(dict.fromkeys(used))


def _dedupe(items: list) -> tuple[list, int]:
    """Sort (stamp, log) by stamp, drop repeated stamps (a driver republishing a frame)."""
    items = sorted(items)
    out, dup = [], 0
    for it in items:
        if out and it[0] == out[-1][0]:
            dup += 1
            continue
        out.append(it)
    return out, dup


def _size_check(bag: str, what: str, w: int, h: int, ref_w: int, ref_h: int) -> None:
    if abs(w / h - ref_w / ref_h) > 0.01 * ref_w / ref_h:
        raise BagError(
            f"{bag}: mismatched sizes: {what} is {w}x{h} but the RGB images are {ref_w}x{ref_h} "
            "(a different aspect ratio: is it registered to this RGB camera?)"
        )


def scan_bag(index: int, path: str, opts: ConvertOptions, split_of_bag: str | None) -> dict:
    """Read the headers of one bag and plan its shards. Never raises: problems go to ``error``."""
    t0 = time.time()
    res = {
        "index": index,
        "path": str(path),
        "name": Path(path).name,
        "error": None,
        "warnings": [],
        "counts": {},
        "shards": [],
    }
    try:
        src = resolve_bag(path)
        res.update(name=src.name, kind=src.kind, path=str(src.path))
        if src.note:
            res["warnings"].append(src.note)
        with open_bag(src) as reader:
            _scan(reader, src, opts, split_of_bag, res)
    except BagError as exc:
        res["error"] = str(exc)
    except Exception as exc:  # anything unexpected from a broken bag still names the bag
        res["error"] = f"{res['name']}: {explain_read_error(exc)}"
    res["scan_s"] = round(time.time() - t0, 3)
    return res


def _scan(reader, src, opts: ConvertOptions, split_of_bag, res: dict) -> None:
    name = src.name
    topics = {t: info.msgtype for t, info in reader.topics.items()}
    labeled = opts.mode != "unlabeled"
    rgb_t, depth_t, info_t = select_topics(
        topics, name, opts.rgb_topic, opts.depth_topic, opts.info_topic, need_depth=labeled
    )
    res["topics"] = {"rgb": rgb_t, "depth": depth_t, "camera_info": info_t}
    res["msgtypes"] = {k: topics[t] for k, t in res["topics"].items() if t}
    if opts.mode in ("real-defocus", "unlabeled"):
        res["lens"], res["lens_source"] = bag_lens(opts, src, bag_custom_data(reader))
    hdr = _read_headers(reader, src, rgb_t, depth_t, info_t, res)
    rgb, depth = _frame_stamps(hdr, res, labeled, rgb_t, depth_t, name)
    cam = _registration(hdr, opts, res, labeled, rgb_t, depth_t, name)
    fx_of = _fx_lookup(hdr, opts, cam, rgb_t, info_t, name)
    res["camera"] = cam
    frames, counts = plan_frames(rgb, depth if labeled else None, fx_of, opts, split_of_bag, name)
    res["counts"].update(counts)
    res["shards"] = group_shards(frames, opts.shard_size, res["index"])
    res["duration_s"] = round(float(rgb[-1][0] - rgb[0][0]) / 1e9, 3)


def _read_headers(reader, src, rgb_t: str, depth_t: str | None, info_t: str | None, res: dict) -> dict:
    """Stamps, frame_ids and the first decoded frame of each image topic, and every CameraInfo.

    Returns ``{"lists": {"rgb": [(stamp ns, log ns)], "depth": [...]}, "frame_ids": {kind: Counter},
    "first": {"rgb" | "depth": {width, height, encoding, frame_id}, "info": CameraInfo fields},
    "infos": [(stamp ns, fx, width, height)]}``. A read error after the first RGB frame keeps what
    was read (``res["truncated"]``)."""
    wanted = {t for t in (rgb_t, depth_t, info_t) if t}
    conns = [c for c in reader.connections if c.topic in wanted]
    total = sum(c.msgcount for c in conns)
    hdr = {
        "lists": {"rgb": [], "depth": []},
        "frame_ids": {"rgb": Counter(), "depth": Counter()},
        "first": {},
        "infos": [],
    }
    n = 0
    try:
        for c, log_ns, raw in reader.messages(connections=conns):
            n += 1
            if n % 256 == 0:
                report_progress("scan", 256)
            if c.topic == info_t:
                _read_info(reader, c, raw, log_ns, hdr, res)
            else:
                _read_image_header(reader, src, c, raw, log_ns, "rgb" if c.topic == rgb_t else "depth", hdr, res)
    except BagError:
        raise
    except Exception as exc:
        msg = f"reading stopped after {n} of {total} messages: {explain_read_error(exc)}"
        if not hdr["lists"]["rgb"]:
            raise BagError(f"{src.name}: {msg}") from None
        res["warnings"].append(msg + "; the frames read before are converted")
        res["truncated"] = True
    report_progress("scan", n % 256)
    return hdr


def _read_info(reader, c, raw, log_ns: int, hdr: dict, res: dict) -> None:
    try:
        m = reader.deserialize(raw, c.msgtype)
        ci = camera_info(m)
        st = int(m.header.stamp.sec) * 1_000_000_000 + int(m.header.stamp.nanosec)
    except Exception as exc:
        res["warnings"].append(f"unreadable CameraInfo message skipped: {explain_read_error(exc)}")
        return
    hdr["infos"].append((st or log_ns, ci["fx"], ci["width"], ci["height"]))
    hdr["first"].setdefault("info", ci)


def _read_image_header(reader, src, c, raw, log_ns: int, kind: str, hdr: dict, res: dict) -> None:
    try:
        st, fid = header_from_raw(raw, src.ros1)
    except FrameError as exc:
        res["warnings"].append(f"{c.topic}: message at {log_ns} skipped: {exc}")
        return
    if kind not in hdr["first"]:  # decode the first frame: unknown encodings fail here, once
        m = reader.deserialize(raw, c.msgtype)
        try:
            arr = decode_rgb(m, c.msgtype) if kind == "rgb" else decode_depth(m, c.msgtype)
        except FrameError as exc:
            raise BagError(f"{src.name}: {c.topic}: {exc}") from None
        enc = getattr(m, "encoding", None) or getattr(m, "format", "")
        hdr["first"][kind] = {
            "width": int(arr.shape[1]),
            "height": int(arr.shape[0]),
            "encoding": str(enc),
            "frame_id": fid,
        }
    hdr["lists"][kind].append((st, log_ns))
    hdr["frame_ids"][kind][fid] += 1


def _frame_stamps(hdr: dict, res: dict, labeled: bool, rgb_t: str, depth_t: str | None, name: str):
    """Deduplicated (stamp, log) lists of the RGB and depth frames; recording times stand in for
    header stamps that are all zero."""
    lists, counts = hdr["lists"], res["counts"]
    counts["rgb_read"] = len(lists["rgb"])
    counts["depth_read"] = len(lists["depth"])
    counts["camera_info_read"] = len(hdr["infos"])
    if not lists["rgb"]:
        raise BagError(f"{name}: no messages on the RGB topic {rgb_t}")
    if labeled and not lists["depth"]:
        raise BagError(f"{name}: no messages on the depth topic {depth_t}")
    stamp_source = {}
    for kind in ("rgb", "depth"):
        if lists[kind] and all(st == 0 for st, _ in lists[kind]):
            lists[kind] = [(log, log) for _, log in lists[kind]]
            stamp_source[kind] = "log"
            res["warnings"].append(f"{kind} header stamps are all zero: using the recording times instead")
    res["stamp_source"] = stamp_source
    rgb, counts["rgb_duplicate_stamps"] = _dedupe(lists["rgb"])
    depth, counts["depth_duplicate_stamps"] = _dedupe(lists["depth"])
    return rgb, depth


def _registration(
    hdr: dict, opts: ConvertOptions, res: dict, labeled: bool, rgb_t: str, depth_t: str | None, name: str
) -> dict:
    """The camera record (frame_id, size, encodings): depth must be registered to the RGB frames;
    the stored size is the smaller of the two (and at most ``--long-side``)."""
    first, frame_ids = hdr["first"], hdr["frame_ids"]
    rgb_fid = frame_ids["rgb"].most_common(1)[0][0]
    cam = {
        "frame_id": rgb_fid,
        "width": first["rgb"]["width"],
        "height": first["rgb"]["height"],
        "encoding": first["rgb"]["encoding"],
    }
    W, H = cam["width"], cam["height"]
    tw, th = W, H
    if labeled:
        d_fid = frame_ids["depth"].most_common(1)[0][0]
        if d_fid != rgb_fid and not opts.assume_registered:
            raise BagError(
                f"{name}: the depth frames ({depth_t}, frame_id {d_fid!r}) are not registered to the RGB frames "
                f"({rgb_t}, frame_id {rgb_fid!r}): record depth aligned to the colour camera (RealSense: "
                "align_depth.enable:=true -> /camera/aligned_depth_to_color/image_raw), or pass "
                "--assume-registered if it is registered despite the frame_id"
            )
        dw, dh = first["depth"]["width"], first["depth"]["height"]
        cam.update(depth_encoding=first["depth"]["encoding"], depth_frame_id=d_fid, depth_size=[dw, dh])
        if (dw, dh) != (W, H):
            _size_check(name, f"the depth ({depth_t})", dw, dh, W, H)
            if dw < W:  # registered depth at a lower resolution: the RGB is resized to it (fx with it)
                tw, th = dw, dh
            res["warnings"].append(
                f"depth {dw}x{dh} and RGB {W}x{H} differ in size: both are stored at the smaller size with fx rescaled"
            )
    if opts.long_side and max(tw, th) > opts.long_side:
        s = opts.long_side / max(tw, th)
        tw, th = max(1, round(tw * s)), max(1, round(th * s))
    res["stored_size"] = [tw, th]
    return cam


def _fx_lookup(hdr: dict, opts: ConvertOptions, cam: dict, rgb_t: str, info_t: str | None, name: str):
    """A function stamp (ns) -> fx (px at the RGB image's resolution): ``--fx``, else the nearest
    CameraInfo in time (rescaled when its size differs from the image's). Fills ``cam``."""
    W, H = cam["width"], cam["height"]
    infos = hdr["infos"]
    if opts.fx:
        cam["fx_source"] = "--fx"
        return lambda st: float(opts.fx)
    if not infos:
        raise BagError(f"{name}: no CameraInfo topic for {rgb_t} and no --fx: the focal length in pixels is needed")
    infos.sort()
    i_st = np.array([x[0] for x in infos], dtype=np.int64)
    ci = hdr["first"]["info"]
    if ci["fx"] <= 0 or ci["width"] <= 0 or ci["height"] <= 0:
        raise BagError(
            f"{name}: CameraInfo ({info_t}) has no calibration (K[0] = {ci['fx']}, "
            f"{ci['width']}x{ci['height']}): calibrate the camera or pass --fx"
        )
    _size_check(name, f"the CameraInfo ({info_t})", ci["width"], ci["height"], W, H)
    cam.update({k: ci[k] for k in ("fx", "fy", "cx", "cy", "distortion_model", "d")})
    cam["info_size"] = [ci["width"], ci["height"]]
    cam["fx_source"] = info_t

    def fx_of(st):
        j = int(np.clip(np.searchsorted(i_st, st), 0, len(i_st) - 1))
        if j > 0 and abs(i_st[j - 1] - st) <= abs(i_st[j] - st):
            j -= 1
        _, fx, iw, _ = infos[j]
        return float(fx) * W / iw if iw > 0 and fx > 0 else float(ci["fx"]) * W / ci["width"]

    return fx_of
