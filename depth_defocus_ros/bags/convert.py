"""``depth-defocus bag2dataset BAG... --out DIR``: rosbags -> streamable dataset shards.

Steps (the format of the result is in DATASET.md):

1. **scan** (one process per bag): choose the topics, read every RGB / depth / CameraInfo header
   (stamps and frame_ids, without decoding pixels), decode the first frame of each topic to check
   its encoding, check registration and sizes, find the lens settings.
2. **plan**: pair RGB and depth by approximate time (:mod:`.pairing`), subsample, deal frames to
   splits (time blocks with a guard band, or whole bags), and cut each bag's frames into shards of
   consecutive frames of one split, ``shard_b<bag>_<k>.npz``. The plan depends only on the bags
   and the options, so a re-run makes the same plan.
3. **write** (shards grouped into time windows, one process per group): read the window, decode
   the planned frames, resize, render (``render`` mode), write each shard atomically
   (``.partial`` then rename). A shard that exists is complete and is skipped: re-running the
   same command continues where an interrupted run stopped and gives the same dataset.
4. **manifest** and **report**: counts of frames read, paired, skipped and why, per bag and in
   total, the throughput (frames/s), and the splits.

Exit status: 0 when every bag was converted, 1 when some bags failed (the others are usable),
2 when nothing usable was produced.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import sys
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from ..argtypes import positive
from .messages import DEPTH_SCALES, FrameError, camera_info, decode_depth, decode_rgb, header_from_raw
from .pairing import SPLITS, pair_nearest, seeded_rng, split_counts, subsample, time_block_splits
from .reader import BagError, bag_custom_data, explain_read_error, open_bag, resolve_bag, select_topics

__all__ = ["ConvertOptions", "convert_bags", "add_bag2dataset_args", "run_bag2dataset", "ConvertError"]

MODES = ("real-defocus", "render", "unlabeled")
STATE_DIR = ".bag2dataset"
# options that only change how a conversion runs, not what it writes
RUN_ONLY = ("out", "workers", "progress", "device")


FORMAT_VERSION = 2  # of the shards and manifest (depth_defocus_ros.shards.FORMAT_VERSION; checked in the tests)


def write_shard(path, **kw):
    """:func:`depth_defocus_ros.shards.write_shard`."""
    from ..shards import write_shard as _write

    _write(path, **kw)


def write_json_atomic(path, obj):
    from ..shards import write_json_atomic as _write

    _write(path, obj)


class ConvertError(RuntimeError):
    """A problem with the whole conversion (output folder, options); one line for the user."""


@dataclass
class ConvertOptions:
    """Everything that decides a conversion (see ``depth-defocus bag2dataset --help``)."""

    out: str = "dataset"
    mode: str = "real-defocus"
    rgb_topic: str | None = None
    depth_topic: str | None = None
    info_topic: str | None = None
    focal_length_mm: float | None = None
    f_number: float | None = None
    focus_distance_m: float | None = None
    lens_file: str | None = None
    fx: float | None = None
    max_dt: float = 0.02
    every: int = 1
    min_gap: float = 0.0
    split_by: str = "time"
    split_ratio: tuple = (0.8, 0.1, 0.1)
    block_s: float = 20.0
    guard_s: float = 1.0
    bag_split: dict = field(default_factory=dict)
    seed: int = 0
    shard_size: int = 32
    long_side: int = 0
    depth_scale: float | None = None
    min_valid: float = 0.05
    assume_registered: bool = False
    renders: int = 1
    f_number_range: tuple = (1.4, 4.0)
    focus_range: tuple | None = None
    max_coc_frac: float = 0.1
    keep_aif: bool = True
    compress: str = "none"  # shard compression: none, deflate1, deflate6 (all lossless; shards.COMPRESSIONS)
    workers: int = 1
    progress: bool = True
    device: str = "cpu"

    def content(self) -> dict:
        """The options that decide what is written (compared when a conversion is resumed)."""
        d = asdict(self)
        for k in RUN_ONLY:
            d.pop(k)
        return json.loads(json.dumps(d))  # tuples -> lists, as in the manifest

    @classmethod
    def from_dict(cls, d: dict) -> ConvertOptions:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# ---------------------------------------------------------------------------------------- progress
_PROGRESS = None  # a callable(kind, n) in this process, or a multiprocessing queue's put in workers


def _report(kind: str, n: int) -> None:
    if _PROGRESS is not None and n:
        _PROGRESS((kind, n))


def _worker_init(queue, threads: int) -> None:
    global _PROGRESS
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    _PROGRESS = queue.put
    try:
        import cv2

        cv2.setNumThreads(threads)
    except Exception:
        pass


# ---------------------------------------------------------------------------------------- lens
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
    sources = [("flags", _lens_fields({"focal_length_mm": opts.focal_length_mm, "f_number": opts.f_number,
                                       "focus_distance_m": opts.focus_distance_m}))]  # fmt: skip
    if opts.lens_file:
        data = _read_yaml(Path(opts.lens_file))
        per_bag = data.get("bags") or {}
        for key in (src.name, Path(src.name).stem):
            if key in per_bag:
                sources.append((f"{opts.lens_file}[bags][{key}]", _lens_fields(per_bag[key] or {})))
                break
        sources.append((opts.lens_file, _lens_fields(data)))
    for cand in (src.path / "lens.yaml", src.path.with_name(src.path.name + ".lens.yaml"),
                 src.path.with_name(src.path.stem + ".lens.yaml")):  # fmt: skip
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
        raise BagError(f"{src.name}: no lens settings for {', '.join(missing)}: give --focal-length-mm, --f-number, "
                       "--focus-distance, or a --lens YAML file, or put lens.yaml in the bag (see DATASET.md). "
                       "For an all-in-focus RGB-D camera (RealSense, ZED, ...), use --mode render: it renders "
                       "focused images from the frames and their depth at drawn lens settings")
    from ..optics import Lens, LensError

    try:
        Lens(**lens)
    except LensError as exc:
        raise BagError(f"{src.name}: impossible lens settings: {exc}") from None
    return lens, ", ".join(dict.fromkeys(used))


# ---------------------------------------------------------------------------------------- scan
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
        raise BagError(f"{bag}: mismatched sizes: {what} is {w}x{h} but the RGB images are {ref_w}x{ref_h} "
                       "(a different aspect ratio: is it registered to this RGB camera?)")  # fmt: skip


def scan_bag(index: int, path: str, opts: ConvertOptions, split_of_bag: str | None) -> dict:
    """Read the headers of one bag and plan its shards. Never raises: problems go to ``error``."""
    t0 = time.time()
    res = {"index": index, "path": str(path), "name": Path(path).name, "error": None, "warnings": [],
           "counts": {}, "shards": []}  # fmt: skip
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
    rgb_t, depth_t, info_t = select_topics(topics, name, opts.rgb_topic, opts.depth_topic, opts.info_topic,
                                           need_depth=labeled)  # fmt: skip
    res["topics"] = {"rgb": rgb_t, "depth": depth_t, "camera_info": info_t}
    res["msgtypes"] = {k: topics[t] for k, t in res["topics"].items() if t}
    if opts.mode in ("real-defocus", "unlabeled"):
        res["lens"], res["lens_source"] = bag_lens(opts, src, bag_custom_data(reader))
    wanted = {t for t in (rgb_t, depth_t, info_t) if t}
    conns = [c for c in reader.connections if c.topic in wanted]
    total = sum(c.msgcount for c in conns)
    lists = {"rgb": [], "depth": []}
    frame_ids = {"rgb": Counter(), "depth": Counter()}
    first, infos = {}, []
    n = 0
    try:
        for c, log_ns, raw in reader.messages(connections=conns):
            n += 1
            if n % 256 == 0:
                _report("scan", 256)
            if c.topic == info_t:
                try:
                    m = reader.deserialize(raw, c.msgtype)
                    ci = camera_info(m)
                    st = int(m.header.stamp.sec) * 1_000_000_000 + int(m.header.stamp.nanosec)
                except Exception as exc:
                    res["warnings"].append(f"unreadable CameraInfo message skipped: {explain_read_error(exc)}")
                    continue
                infos.append((st or log_ns, ci["fx"], ci["width"], ci["height"]))
                first.setdefault("info", ci)
                continue
            kind = "rgb" if c.topic == rgb_t else "depth"
            try:
                st, fid = header_from_raw(raw, src.ros1)
            except FrameError as exc:
                res["warnings"].append(f"{c.topic}: message at {log_ns} skipped: {exc}")
                continue
            if kind not in first:  # decode the first frame: unknown encodings fail here, once
                m = reader.deserialize(raw, c.msgtype)
                try:
                    arr = decode_rgb(m, c.msgtype) if kind == "rgb" else decode_depth(m, c.msgtype)
                except FrameError as exc:
                    raise BagError(f"{name}: {c.topic}: {exc}") from None
                enc = getattr(m, "encoding", None) or getattr(m, "format", "")
                first[kind] = {"width": int(arr.shape[1]), "height": int(arr.shape[0]), "encoding": str(enc),
                               "frame_id": fid}  # fmt: skip
            lists[kind].append((st, log_ns))
            frame_ids[kind][fid] += 1
    except BagError:
        raise
    except Exception as exc:
        msg = f"reading stopped after {n} of {total} messages: {explain_read_error(exc)}"
        if not lists["rgb"]:
            raise BagError(f"{name}: {msg}") from None
        res["warnings"].append(msg + "; the frames read before are converted")
        res["truncated"] = True
    _report("scan", n % 256)
    counts = res["counts"]
    counts["rgb_read"] = len(lists["rgb"])
    counts["depth_read"] = len(lists["depth"])
    counts["camera_info_read"] = len(infos)
    if not lists["rgb"]:
        raise BagError(f"{name}: no messages on the RGB topic {rgb_t}")
    if labeled and not lists["depth"]:
        raise BagError(f"{name}: no messages on the depth topic {depth_t}")
    # header stamps of zero (some drivers): fall back to the recording time
    stamp_source = {}
    for kind in ("rgb", "depth"):
        if lists[kind] and all(st == 0 for st, _ in lists[kind]):
            lists[kind] = [(log, log) for _, log in lists[kind]]
            stamp_source[kind] = "log"
            res["warnings"].append(f"{kind} header stamps are all zero: using the recording times instead")
    res["stamp_source"] = stamp_source
    rgb, counts["rgb_duplicate_stamps"] = _dedupe(lists["rgb"])
    depth, counts["depth_duplicate_stamps"] = _dedupe(lists["depth"])
    # registration and sizes
    rgb_fid = frame_ids["rgb"].most_common(1)[0][0]
    cam = {"frame_id": rgb_fid, "width": first["rgb"]["width"], "height": first["rgb"]["height"],
           "encoding": first["rgb"]["encoding"]}  # fmt: skip
    W, H = cam["width"], cam["height"]
    tw, th = W, H
    if labeled:
        d_fid = frame_ids["depth"].most_common(1)[0][0]
        if d_fid != rgb_fid and not opts.assume_registered:
            raise BagError(
                f"{name}: the depth frames ({depth_t}, frame_id {d_fid!r}) are not registered to the RGB frames "
                f"({rgb_t}, frame_id {rgb_fid!r}): record depth aligned to the colour camera (RealSense: "
                "align_depth.enable:=true -> /camera/aligned_depth_to_color/image_raw), or pass "
                "--assume-registered if it is registered despite the frame_id")  # fmt: skip
        dw, dh = first["depth"]["width"], first["depth"]["height"]
        cam["depth_encoding"] = first["depth"]["encoding"]
        cam["depth_frame_id"] = d_fid
        cam["depth_size"] = [dw, dh]
        if (dw, dh) != (W, H):
            _size_check(name, f"the depth ({depth_t})", dw, dh, W, H)
            if dw < W:  # registered depth at a lower resolution: the RGB is resized to it (fx with it)
                tw, th = dw, dh
            res["warnings"].append(f"depth {dw}x{dh} and RGB {W}x{H} differ in size: both are stored at the "
                                   f"smaller size with fx rescaled")  # fmt: skip
    if opts.long_side and max(tw, th) > opts.long_side:
        s = opts.long_side / max(tw, th)
        tw, th = max(1, round(tw * s)), max(1, round(th * s))
    res["stored_size"] = [tw, th]
    # fx per frame at the RGB image's resolution
    if opts.fx:
        fx_of = lambda st: float(opts.fx)  # noqa: E731
        cam["fx_source"] = "--fx"
    elif infos:
        infos.sort()
        i_st = np.array([x[0] for x in infos], dtype=np.int64)
        ci = first["info"]
        if ci["fx"] <= 0 or ci["width"] <= 0 or ci["height"] <= 0:
            raise BagError(f"{name}: CameraInfo ({info_t}) has no calibration (K[0] = {ci['fx']}, "
                           f"{ci['width']}x{ci['height']}): calibrate the camera or pass --fx")  # fmt: skip
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
    else:
        raise BagError(f"{name}: no CameraInfo topic for {rgb_t} and no --fx: the focal length in pixels is needed")
    res["camera"] = cam
    # pairing
    r_st = np.array([x[0] for x in rgb], dtype=np.int64)
    if labeled:
        d_st = np.array([x[0] for x in depth], dtype=np.int64)
        ia, ib = pair_nearest(r_st, d_st, int(round(opts.max_dt * 1e9)))
        counts["paired"] = len(ia)
        counts["unmatched_rgb"] = len(rgb) - len(ia)
        counts["unmatched_depth"] = len(depth) - len(ib)
    else:
        ia, ib = np.arange(len(rgb)), None
        counts["paired"] = len(rgb)
    if labeled and not len(ia):
        raise BagError(f"{name}: no RGB frame has a depth frame within --max-dt {opts.max_dt} s "
                       f"(RGB stamps {r_st[0]}..{r_st[-1]}, depth {d_st[0]}..{d_st[-1]} ns)")  # fmt: skip
    stamps = r_st[ia]
    keep = subsample(stamps, opts.every, int(round(opts.min_gap * 1e9)))
    counts["subsampled_out"] = int((~keep).sum())
    ia = ia[keep]
    ib = ib[keep] if ib is not None else None
    stamps = stamps[keep]
    # splits
    ratios = dict(zip(SPLITS, opts.split_ratio))
    if opts.split_by == "time":
        splits, counts["split_guard"] = time_block_splits(stamps, opts.block_s, ratios, opts.guard_s,
                                                          seeded_rng(opts.seed, "split:" + name))  # fmt: skip
    else:
        splits = [split_of_bag or "train"] * len(stamps)
        counts["split_guard"] = 0
    # shards: consecutive frames of one split
    frames = []
    for k in range(len(stamps)):
        if splits[k] is None:
            continue
        r = rgb[int(ia[k])]
        d = depth[int(ib[k])] if ib is not None else None
        frames.append({"rgb": [int(r[1]), int(r[0])], "depth": [int(d[1]), int(d[0])] if d else None,
                       "stamp": int(r[0]), "fx": fx_of(int(r[0])), "split": splits[k]})  # fmt: skip
    counts["planned"] = len(frames)
    shards, cur = [], None
    for fr in frames:
        if cur is None or cur["split"] != fr["split"] or len(cur["frames"]) >= opts.shard_size:
            cur = {"name": f"shard_b{res['index']:03d}_{len(shards):05d}.npz", "split": fr["split"], "frames": []}
            shards.append(cur)
        cur["frames"].append(fr)
    res["shards"] = shards
    res["duration_s"] = round(float(r_st[-1] - r_st[0]) / 1e9, 3)


# ---------------------------------------------------------------------------------------- write
def _fill_invalid(depth_m: np.ndarray) -> np.ndarray:
    """Invalid depth (0 / NaN) replaced by the nearest valid depth (for rendering only)."""
    import cv2

    valid = np.isfinite(depth_m) & (depth_m > 0)
    if valid.all() or not valid.any():
        return np.where(valid, depth_m, 1.0).astype(np.float32)
    _, labels = cv2.distanceTransformWithLabels((~valid).astype(np.uint8), cv2.DIST_L2, 5,
                                                labelType=cv2.DIST_LABEL_PIXEL)  # fmt: skip
    ys, xs = np.nonzero(valid)
    lut = np.zeros(labels.max() + 1, np.float32)
    lut[labels[ys, xs]] = depth_m[ys, xs]
    return np.where(valid, depth_m, lut[labels]).astype(np.float32)


def render_frame(rgb: np.ndarray, depth_m: np.ndarray, fx: float, opts: ConvertOptions,
                 rng: np.random.Generator, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``opts.renders`` focused images (K, H, W, 3) uint8 and their lens settings (K, 3) from an
    all-in-focus frame and its depth, with the package's occlusion-aware renderer."""
    import torch

    from ..optics import Lens, signed_defocus_px
    from ..render import linear_to_srgb, render_defocus, srgb_to_linear

    filled = _fill_invalid(depth_m)
    valid = np.isfinite(depth_m) & (depth_m > 0)
    vals = depth_m[valid] if valid.any() else filled.ravel()
    f_m = (opts.focal_length_mm or 50.0) / 1000.0
    cap = max(1.0, opts.max_coc_frac * rgb.shape[1])
    d_t = torch.from_numpy(filled)
    lenses, sds = [], []
    for _ in range(max(1, opts.renders)):
        if opts.f_number:
            n = float(opts.f_number)
        else:
            lo, hi = opts.f_number_range
            n = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        if opts.focus_distance_m:
            d_f = float(opts.focus_distance_m)
        elif opts.focus_range:
            lo, hi = opts.focus_range
            d_f = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        else:  # autofocus on something in view: the depth of a random valid pixel
            d_f = float(vals[rng.integers(len(vals))]) * float(rng.uniform(0.95, 1.05))
        d_f = max(d_f, 1.2 * f_m)
        sd = signed_defocus_px(d_t, Lens(f_m, n, d_f), fx)
        peak = float(sd.abs().max())
        if peak > cap:  # stop down until the largest blur is within the cap (CoC ~ 1 / N)
            n *= peak / cap
            sd = signed_defocus_px(d_t, Lens(f_m, n, d_f), fx)
        lenses.append((f_m, n, d_f))
        sds.append(sd)
    img = srgb_to_linear(torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float()[None] / 255.0).to(device)
    sd = torch.stack(sds)[:, None].float().to(device)  # (K, 1, H, W)
    out = linear_to_srgb(render_defocus(img.expand(len(sds), -1, -1, -1), sd))
    out = (out.permute(0, 2, 3, 1).cpu() * 255.0).round().clamp(0, 255).byte().numpy()
    return out, np.asarray(lenses, dtype=np.float32)


def _shard_done(out: Path, name: str) -> bool:
    return (out / name).is_file() or (out / STATE_DIR / (name + ".empty.json")).is_file()


def _build_shard(shard: dict, buf: dict, scan: dict, opts: ConvertOptions, rgb_t: str, depth_t: str | None):
    """Decoded frames -> shard arrays and its meta (counts of frames written and skipped)."""
    import cv2

    W, H = scan["camera"]["width"], scan["camera"]["height"]
    tw, th = scan["stored_size"]
    skipped, reasons = Counter(), {}
    imgs, depths, lenses, fxs, stamps, aifs = [], [], [], [], [], []
    enc = scan["camera"].get("depth_encoding")
    integer_depth = opts.mode == "unlabeled" or enc in ("16UC1", "mono16")
    scale = (opts.depth_scale or DEPTH_SCALES.get(enc, 0.001)) if integer_depth else 1.0
    for fr in shard["frames"]:
        rgb = buf.pop((rgb_t, *fr["rgb"]), None)
        dep = buf.pop((depth_t, *fr["depth"]), None) if fr["depth"] else None
        if rgb is None or (fr["depth"] and dep is None):
            skipped["unreadable (bag ended or read error)"] += 1
            continue
        bad = rgb if isinstance(rgb, FrameError) else dep if isinstance(dep, FrameError) else None
        if bad is not None:
            skipped["decode error"] += 1
            reasons.setdefault("decode error", str(bad))
            continue
        if rgb.shape[:2] != (H, W):
            skipped["RGB size changed"] += 1
            continue
        if (tw, th) != (W, H):
            rgb = cv2.resize(rgb, (tw, th), interpolation=cv2.INTER_AREA)
        if dep is None:
            dep = np.zeros((th, tw), np.uint16)
        else:
            dw, dh = scan["camera"]["depth_size"]
            if dep.shape != (dh, dw):
                skipped["depth size changed"] += 1
                continue
            if dep.shape != (th, tw):
                dep = cv2.resize(dep, (tw, th), interpolation=cv2.INTER_NEAREST)
            d_m = dep.astype(np.float64) * scale
            if float((np.isfinite(d_m) & (d_m > 0)).mean()) < opts.min_valid:
                skipped["too little valid depth"] += 1
                continue
        fx = fr["fx"] * tw / W
        if opts.mode == "render":
            rng = seeded_rng(opts.seed, f"render:{scan['name']}:{fr['stamp']}")
            d_m = (dep.astype(np.float64) * scale).astype(np.float32)
            out, lens = render_frame(rgb, d_m, fx, opts, rng, opts.device)
            for k in range(len(out)):
                imgs.append(out[k])
                depths.append(dep)
                lenses.append(lens[k])
                fxs.append(fx)
                stamps.append(fr["stamp"])
                aifs.append(rgb)
        else:
            lens = scan["lens"]
            imgs.append(rgb)
            depths.append(dep)
            lenses.append([lens["focal_length_m"], lens["f_number"], lens["focus_distance_m"]])
            fxs.append(fx)
            stamps.append(fr["stamp"])
        _report("frames", 1)
    _report("frames", sum(skipped.values()))
    meta = {"format_version": FORMAT_VERSION, "bag": scan["name"], "bag_index": scan["index"],
            "split": shard["split"], "mode": opts.mode, "frames_planned": len(shard["frames"]),
            "frames_written": len(shard["frames"]) - sum(skipped.values()), "samples": len(imgs),
            "skipped": dict(skipped), "skip_examples": reasons}  # fmt: skip
    if not imgs:
        return None, meta
    arrays = {
        "image": np.stack(imgs), "depth": np.stack(depths), "lens": np.asarray(lenses, np.float32),
        "fx": np.asarray(fxs, np.float32), "layout": np.full(len(imgs), -1, np.int64),
        "stamp_ns": np.asarray(stamps, np.int64), "depth_scale": np.float64(scale),
        "meta": np.array(json.dumps(meta)),
    }  # fmt: skip
    if aifs and opts.keep_aif:
        arrays["aif"] = np.stack(aifs)
    return arrays, meta


def write_task(scan: dict, shard_names: list, opts: ConvertOptions) -> dict:
    """Write the given shards of one bag (those not yet on disk). Never raises: errors are returned."""
    out = Path(opts.out)
    res = {"index": scan["index"], "name": scan["name"], "written": [], "frames": 0, "error": None, "warnings": []}
    todo = [s for s in scan["shards"] if s["name"] in shard_names and not _shard_done(out, s["name"])]
    if not todo:
        return res
    rgb_t, depth_t = scan["topics"]["rgb"], scan["topics"]["depth"]
    stamp_src = scan.get("stamp_source", {})
    need = set()
    for s in todo:
        for fr in s["frames"]:
            need.add((rgb_t, *fr["rgb"]))
            if fr["depth"]:
                need.add((depth_t, *fr["depth"]))
    start = min(k[1] for k in need)
    stop = max(k[1] for k in need) + 1
    buf = {}
    pending = list(todo)

    def flush(force=False):
        while pending and (force or all((rgb_t, *fr["rgb"]) in buf and (not fr["depth"] or (depth_t, *fr["depth"])
                                                                           in buf) for fr in pending[0]["frames"])):
            shard = pending.pop(0)
            arrays, meta = _build_shard(shard, buf, scan, opts, rgb_t, depth_t)
            _save(out, shard["name"], arrays, meta, opts, scan["name"], len(res["written"]))
            res["written"].append(shard["name"])
            res["frames"] += len(shard["frames"])  # fmt: skip

    try:
        src = resolve_bag(scan["path"])
        with open_bag(src) as reader:
            conns = [c for c in reader.connections if c.topic in (rgb_t, depth_t)]
            try:
                for c, log_ns, raw in reader.messages(connections=conns, start=start, stop=stop):
                    kind = "rgb" if c.topic == rgb_t else "depth"
                    try:
                        st = log_ns if stamp_src.get(kind) == "log" else header_from_raw(raw, src.ros1)[0]
                    except FrameError:
                        continue
                    key = (c.topic, log_ns, st)
                    if key not in need or key in buf:
                        continue
                    try:
                        m = reader.deserialize(raw, c.msgtype)
                        buf[key] = decode_rgb(m, c.msgtype) if kind == "rgb" else decode_depth(m, c.msgtype)
                    except FrameError as exc:
                        buf[key] = exc
                    except Exception as exc:  # a corrupt message: that frame is skipped
                        buf[key] = FrameError(explain_read_error(exc))
                    flush()
                    if not pending:
                        break
            except (BagError, OSError) as exc:
                raise exc
            except Exception as exc:
                res["warnings"].append(f"reading stopped early: {explain_read_error(exc)}")
            flush(force=True)
    except (BagError, OSError) as exc:
        res["error"] = str(exc)
    except Exception as exc:  # a bug or a library error must still name the bag, and spare the other bags
        res["error"] = f"{scan['name']}: unexpected error while writing: {type(exc).__name__}: {exc}"
    return res


def _save(out: Path, name: str, arrays, meta: dict, opts: ConvertOptions, bag: str, n_before: int) -> None:
    try:
        if arrays is None:
            write_json_atomic(out / STATE_DIR / (name + ".empty.json"), meta)
        else:
            write_shard(out / name, compression=opts.compress, **arrays)
    except OSError as exc:
        what = "disk full" if exc.errno == 28 else (exc.strerror or str(exc))
        raise OSError(exc.errno, f"{bag}: cannot write {out / name}: {what}; the shards written before are "
                                 "intact; free space and re-run the same command to continue") from None


# ---------------------------------------------------------------------------------------- driver
@contextmanager
def _locked(out: Path):
    (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
    fh = open(out / STATE_DIR / "lock", "w")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConvertError(f"{out}: another bag2dataset run is writing this folder") from None
        yield
    finally:
        fh.close()


def _check_out(out: Path, opts: ConvertOptions, bag_paths: list) -> None:
    man = out / "manifest.json"
    if man.is_file():
        try:
            old = json.loads(man.read_text())
        except (OSError, ValueError):
            raise ConvertError(f"{man} is unreadable; use a new --out folder") from None
        if old.get("source") != "bag2dataset":
            raise ConvertError(f"{out} holds another dataset ({old.get('source')!r}); use a new --out folder")
        diff = [k for k, v in opts.content().items() if old.get("options", {}).get(k) != v]
        if diff:
            k = diff[0]
            raise ConvertError(f"{out} was converted with other options ({k}: {old['options'].get(k)!r}, now "
                               f"{opts.content()[k]!r}); re-run with the same options to continue, or use a new --out")
        old_bags = [b["path"] for b in old.get("bags", [])]
        if old_bags != bag_paths:
            raise ConvertError(f"{out} was converted from other bags ({', '.join(old_bags)}); re-run with the same "
                               "bags to continue, or use a new --out")  # fmt: skip
    elif any(out.glob("shard_*.npz")):
        raise ConvertError(f"{out} holds shards but no bag2dataset manifest; use a new --out folder")


def _bag_splits(bags: list, opts: ConvertOptions) -> dict:
    """split per bag for ``--split-by bag``: explicit ``--bag-split`` first, the rest by the ratios."""
    if opts.split_by != "bag":
        return {}
    names = [Path(b).name for b in bags]
    out = {}
    for n in names:
        for key in (n, Path(n).stem):
            if key in opts.bag_split:
                out[n] = opts.bag_split[key]
    rest = [n for n in names if n not in out]
    counts = split_counts(len(rest), dict(zip(SPLITS, opts.split_ratio)))
    order = [rest[i] for i in seeded_rng(opts.seed, "bags").permutation(len(rest))]
    k = 0
    for split in SPLITS:
        for _ in range(counts.get(split, 0)):
            out[order[k]] = split
            k += 1
    return out


def _shard_meta(out: Path, name: str) -> dict | None:
    p = out / name
    if p.is_file():
        try:
            with np.load(p) as z:
                return json.loads(str(z["meta"]))
        except Exception:
            return None
    m = out / STATE_DIR / (name + ".empty.json")
    if m.is_file():
        return json.loads(m.read_text())
    return None


def _manifest(out: Path, opts: ConvertOptions, scans: list, complete: bool, report: dict | None = None) -> dict:
    bags, splits, shards = [], {}, []
    total = Counter()
    skipped = Counter()
    for s in scans:
        b = {k: s.get(k) for k in ("index", "name", "path", "kind", "topics", "msgtypes", "camera", "stored_size",
                                   "lens", "lens_source", "duration_s", "error", "warnings", "counts")}  # fmt: skip
        b["shards"], b["splits"], b["samples"] = [], Counter(), 0
        bskip = Counter()
        for sh in s.get("shards", []):
            meta = _shard_meta(out, sh["name"])
            if meta is None:
                continue
            bskip.update(meta.get("skipped", {}))
            if (out / sh["name"]).is_file():
                b["shards"].append(sh["name"])
                splits.setdefault(sh["split"], []).append(sh["name"])
                shards.append(sh["name"])
                b["splits"][sh["split"]] += meta["samples"]
                b["samples"] += meta["samples"]
        b["splits"] = dict(b["splits"])
        b["skipped"] = dict(bskip)
        b["shards_planned"] = len(s.get("shards", []))
        b["complete"] = s.get("error") is None and all(_shard_done(out, sh["name"]) for sh in s.get("shards", []))
        total.update({k: v for k, v in (s.get("counts") or {}).items()})
        total["samples"] += b["samples"]
        skipped.update(bskip)
        bags.append(b)
    first = next((b for b in bags if b.get("camera")), {})
    topics = {json.dumps(b["topics"]) for b in bags if b.get("topics")}
    return {
        "format_version": FORMAT_VERSION, "source": "bag2dataset", "mode": opts.mode, "complete": complete,
        "labeled": opts.mode != "unlabeled", "options": opts.content(),
        "topics": json.loads(topics.pop()) if len(topics) == 1 else "per bag",
        "camera": first.get("camera"), "stored_size": first.get("stored_size"),
        "lens": first.get("lens") if opts.mode != "render" else {
            "focal_length_mm": opts.focal_length_mm or 50.0, "f_number": opts.f_number or list(opts.f_number_range),
            "focus_distance_m": opts.focus_distance_m or (list(opts.focus_range) if opts.focus_range else "subject"),
            "renders_per_frame": opts.renders},
        "counts": {**dict(total), "skipped": dict(skipped)},
        "samples": total["samples"],
        "splits": {k: sorted(v) for k, v in splits.items()},
        "split_samples": {k: sum(b["splits"].get(k, 0) for b in bags) for k in splits},
        "shards": sorted(shards), "bags": bags, "report": report or {},
    }  # fmt: skip


class _Runner:
    """Runs jobs in this process (``workers <= 1``) or in one pool of spawned processes shared by the
    scan and write phases, feeding the progress bars from the workers' reports."""

    def __init__(self, workers: int):
        self.workers, self.pool, self.queue = workers, None, None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        return False

    def run(self, fn, jobs: list, bars: dict) -> list:
        """``fn(*job)`` for every job; results in job order."""
        global _PROGRESS

        def update(item):
            kind, n = item
            if kind in bars:
                bars[kind].update(n)

        if self.workers <= 1 or len(jobs) <= 1:
            _PROGRESS = update
            try:
                return [fn(*job) for job in jobs]
            finally:
                _PROGRESS = None
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        if self.pool is None:
            ctx = mp.get_context("spawn")  # no fork of a process that may hold OpenMP / torch threads
            self.queue = ctx.Queue()
            self.pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=_worker_init,
                                            initargs=(self.queue, 1))  # fmt: skip

        def drain():
            while True:
                try:
                    update(self.queue.get_nowait())
                except Exception:  # queue.Empty
                    return

        futs = [self.pool.submit(fn, *job) for job in jobs]
        pending = set(futs)
        while pending:
            _, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            drain()
        time.sleep(0.05)  # reports still in the queue's pipe
        drain()
        return [f.result() for f in futs]


def _write_jobs(scans: list, opts: ConvertOptions, workers: int, out: Path) -> list:
    """Groups of consecutive shards per bag: about two groups per worker over all bags."""
    todo = [(s, [sh for sh in s["shards"] if not _shard_done(out, sh["name"])]) for s in scans if not s["error"]]
    n_total = sum(len(t) for _, t in todo)
    jobs = []
    for s, shards in todo:
        if not shards:
            continue
        groups = max(1, min(len(shards), round(2 * max(1, workers) * len(shards) / max(1, n_total))))
        per = math.ceil(len(shards) / groups)
        light = {k: v for k, v in s.items() if k != "shards"}
        for g in range(0, len(shards), per):
            part = shards[g : g + per]
            jobs.append(({**light, "shards": part}, [sh["name"] for sh in part], opts))
    return jobs


def convert_bags(bags: list, opts: ConvertOptions) -> tuple[int, dict]:
    """Convert ``bags`` into ``opts.out``; returns (exit status, manifest). Prints the report."""
    t0 = time.time()
    if opts.mode not in MODES:
        raise ConvertError(f"unknown --mode {opts.mode!r} (choose from {', '.join(MODES)})")
    out = Path(opts.out).expanduser().resolve()
    paths = []
    for b in bags:
        p = Path(b).expanduser()
        paths.append(str(p.resolve()) if p.exists() else str(p))
    if len(set(paths)) != len(paths):
        raise ConvertError("the same bag is given twice")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConvertError(f"cannot create {out}: {exc.strerror}") from None
    with _locked(out):
        _check_out(out, opts, paths)
        for junk in list(out.glob("*.partial")) + list((out / STATE_DIR).glob("*.partial")):
            junk.unlink()  # left by an interrupted run; never complete
        split_of = _bag_splits(paths, opts)
        placeholder = [{"index": i, "path": p, "name": Path(p).name, "error": None} for i, p in enumerate(paths)]
        write_json_atomic(out / "manifest.json", _manifest(out, opts, placeholder, complete=False))
        workers = max(0, int(opts.workers))
        with _Runner(workers) as runner:
            status, manifest = _convert(out, paths, opts, split_of, runner, workers, t0)
    print(format_report(manifest))
    return status, manifest


def _convert(out: Path, paths: list, opts: ConvertOptions, split_of: dict, runner, workers: int, t0: float):
    """Scan, plan, write, manifest (the output folder is locked by the caller)."""
    from tqdm import tqdm

    bars = {"scan": tqdm(desc="scan", unit="msg", disable=not opts.progress, file=sys.stderr)}
    jobs = [(i, p, opts, split_of.get(Path(p).name)) for i, p in enumerate(paths)]
    scans = runner.run(scan_bag, jobs, bars)
    bars["scan"].close()
    t_scan = time.time() - t0
    write_json_atomic(out / "manifest.json", _manifest(out, opts, scans, complete=False))
    jobs = _write_jobs(scans, opts, workers, out)
    n_frames = sum(sum(len(sh["frames"]) for sh in j[0]["shards"]) for j in jobs)
    bars = {"frames": tqdm(total=n_frames, desc="convert", unit="frame", disable=not opts.progress,
                           file=sys.stderr)}  # fmt: skip
    t1 = time.time()
    results = runner.run(write_task, jobs, bars) if jobs else []
    bars["frames"].close()
    t_write = time.time() - t1
    for r in results:
        s = scans[r["index"]]
        s.setdefault("warnings", []).extend(r["warnings"])
        if r["error"] and not s.get("error"):
            s["error"] = r["error"]
    frames_done = sum(r["frames"] for r in results)
    elapsed = time.time() - t0
    report = {"seconds": round(elapsed, 2), "scan_seconds": round(t_scan, 2), "write_seconds": round(t_write, 2),
              "frames_this_run": frames_done, "workers": workers,
              "frames_per_s": round(frames_done / elapsed, 2) if elapsed > 0 else None}  # fmt: skip
    complete = all(not s.get("error") for s in scans)
    manifest = _manifest(out, opts, scans, complete=complete, report=report)
    try:
        write_json_atomic(out / "manifest.json", manifest)
    except OSError as exc:
        print(f"error: cannot write {out / 'manifest.json'}: {exc.strerror}; the shards are intact; free space "
              "and re-run the same command", file=sys.stderr)  # fmt: skip
        return 2, manifest
    if manifest["samples"] == 0:
        return 2, manifest
    return (0 if complete else 1), manifest


def format_report(m: dict) -> str:
    lines = [f"bag2dataset ({m['mode']}): {len(m['bags'])} bag(s) -> {m['samples']} samples in "
             f"{len(m['shards'])} shards"]  # fmt: skip
    for b in m["bags"]:
        c = b.get("counts") or {}
        if b.get("error") and not b.get("samples"):
            lines.append(f"  {b['name']}: ERROR: {b['error']}")
            continue
        lines.append(f"  {b['name']}: read rgb {c.get('rgb_read', 0)}, depth {c.get('depth_read', 0)}, camera_info "
                     f"{c.get('camera_info_read', 0)}; paired {c.get('paired', 0)} (unmatched rgb "
                     f"{c.get('unmatched_rgb', 0)}, depth {c.get('unmatched_depth', 0)}); kept {c.get('planned', 0)} "
                     f"(subsampled out {c.get('subsampled_out', 0)}, split guard {c.get('split_guard', 0)}); samples "
                     f"{b['samples']} {b['splits']}")  # fmt: skip
        if b.get("skipped"):
            lines.append(f"    skipped while writing: {b['skipped']}")
        for w in b.get("warnings") or []:
            lines.append(f"    warning: {w}")
        if b.get("error"):
            lines.append(f"    ERROR: {b['error']}")
    r = m.get("report") or {}
    lines.append(f"splits: {m['split_samples']}")
    if r:
        lines.append(f"time {r['seconds']} s (scan {r['scan_seconds']} s, write {r['write_seconds']} s, "
                     f"{r['workers']} workers): {r['frames_this_run']} frames converted in this run, "
                     f"{r['frames_per_s']} frames/s")  # fmt: skip
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- CLI
def _pair(name):
    def conv(v):
        try:
            a, b = (float(x) for x in v.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be two numbers LO,HI, got {v!r}") from None
        if not (0 < a <= b):
            raise argparse.ArgumentTypeError(f"{name} needs 0 < LO <= HI, got {v!r}")
        return (a, b)

    return conv


def _ratios(v):
    try:
        r = tuple(float(x) for x in v.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--split-ratio must be TRAIN,VAL,TEST, got {v!r}") from None
    if len(r) != 3 or min(r) < 0 or sum(r) <= 0:
        raise argparse.ArgumentTypeError(f"--split-ratio needs three non-negative numbers, got {v!r}")
    return r


def add_bag2dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bags", nargs="+", help="rosbag2 folders (sqlite3 or MCAP), .mcap/.db3 files, ROS 1 .bag files")
    p.add_argument("--out", required=True, help="dataset folder (re-run the same command to continue)")
    p.add_argument("--mode", choices=MODES, default="real-defocus",
                   help="real-defocus: RGB frames are the focused images, lens from flags/YAML; render: RGB "
                        "frames are all-in-focus, focused images are rendered; unlabeled: frames without depth "
                        "(for --domain-data)")  # fmt: skip
    g = p.add_argument_group("topics (auto-detected when there is one obvious choice)")
    g.add_argument("--rgb-topic")
    g.add_argument("--depth-topic", help="registered to the RGB camera (e.g. aligned_depth_to_color)")
    g.add_argument("--info-topic", help="CameraInfo of the RGB camera (fx = K[0])")
    g = p.add_argument_group("lens (real-defocus, unlabeled: the recording lens; render: the rendered lens)")
    g.add_argument("--focal-length-mm", type=positive("--focal-length-mm"))
    g.add_argument("--f-number", type=positive("--f-number"))
    g.add_argument("--focus-distance", dest="focus_distance_m", type=positive("--focus-distance"), help="m")
    g.add_argument("--lens", dest="lens_file", help="YAML with focal_length_mm, f_number, focus_distance_m and "
                                                    "optional per-bag entries under 'bags:'")  # fmt: skip
    g.add_argument("--fx", type=positive("--fx"), help="focal length in px of the RGB images (default: CameraInfo)")
    g = p.add_argument_group("pairing and subsampling")
    g.add_argument("--max-dt", type=positive("--max-dt"), default=0.02,
                   help="largest RGB-depth stamp gap (s, default 0.02)")
    g.add_argument("--every", type=positive("--every", int), default=1, help="keep every N-th pair")
    g.add_argument("--min-gap", type=float, default=0.0, help="at least this long (s) between kept frames (default 0)")
    g.add_argument("--min-valid", type=float, default=0.05,
                   help="skip frames with a smaller valid-depth fraction (default 0.05)")
    g.add_argument("--assume-registered", action="store_true",
                   help="accept depth whose frame_id differs from the RGB frame_id")  # fmt: skip
    g.add_argument("--depth-scale", type=positive("--depth-scale"), help="m per unit of 16-bit depth (0.001)")
    g = p.add_argument_group("splits")
    g.add_argument("--split-by", choices=["time", "bag", "none"], default="time")
    g.add_argument("--split-ratio", type=_ratios, default=(0.8, 0.1, 0.1), help="TRAIN,VAL,TEST (default 0.8,0.1,0.1)")
    g.add_argument("--block-s", type=positive("--block-s"), default=20.0, help="time block length (s, default 20)")
    g.add_argument("--guard-s", type=float, default=1.0,
                   help="frames this close (s) to another split's block are dropped (default 1)")
    g.add_argument("--bag-split", action="append", default=[], metavar="BAG=SPLIT",
                   help="with --split-by bag: put BAG (its name) into SPLIT")  # fmt: skip
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("render mode")
    g.add_argument("--renders", type=positive("--renders", int), default=1,
                   help="focused images per frame (default 1)")
    g.add_argument("--f-number-range", type=_pair("--f-number-range"), default=(1.4, 4.0),
                   help="LO,HI (default 1.4,4), unless --f-number")
    g.add_argument("--focus-range", type=_pair("--focus-range"), default=None,
                   help="LO,HI m (default: focus on the depth of a random visible point)")  # fmt: skip
    g.add_argument("--max-coc-frac", type=positive("--max-coc-frac"), default=0.1,
                   help="stop down until the largest CoC is at most this fraction of the width")  # fmt: skip
    g.add_argument("--no-aif", dest="keep_aif", action="store_false", help="do not store the all-in-focus images")
    g.add_argument("--device", default="cpu", help="device for rendering (cpu, cuda)")
    g = p.add_argument_group("output")
    g.add_argument("--shard-size", type=positive("--shard-size", int), default=32,
                   help="frames per shard (default 32)")
    g.add_argument("--long-side", type=int, default=0, help="downscale so the long side is at most PX (fx with it)")
    g.add_argument("--compress", choices=("none", "deflate1", "deflate6"), default="none",
                   help="shard compression, all lossless: none (default: fastest; about 140 frames/s at 640x480 on "
                        "one core), deflate1, deflate6 (smaller, 3-5x slower); see DATASET.md")  # fmt: skip
    g.add_argument("--no-compress", dest="compress", action="store_const", const="none",
                   help="same as --compress none (kept for old command lines)")
    g.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="parallel processes (0: convert in this process)")  # fmt: skip
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def options_from_args(args) -> ConvertOptions:
    bag_split = {}
    for item in args.bag_split:
        if "=" not in item or item.split("=", 1)[1] not in SPLITS:
            raise ConvertError(f"--bag-split wants BAG=SPLIT with SPLIT in {', '.join(SPLITS)}, got {item!r}")
        k, v = item.split("=", 1)
        bag_split[k] = v
    d = {k: v for k, v in vars(args).items() if k in {f.name for f in fields(ConvertOptions)}}
    d.update(bag_split=bag_split, progress=not args.quiet)
    return ConvertOptions.from_dict(d)


def run_bag2dataset(args) -> int:
    try:
        opts = options_from_args(args)
        status, _ = convert_bags(args.bags, opts)
    except ConvertError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return status
