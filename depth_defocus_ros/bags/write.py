"""bag2dataset, stage 3 (shards grouped into time windows, one process per group): read the window,
decode the planned frames (:mod:`.messages`), resize, render (``render`` mode), and write each
shard atomically (``.partial`` then rename). A shard that exists is complete and is skipped."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

from ..synth.shards import write_json_atomic, write_shard
from .messages import DEPTH_SCALES, FrameError, decode_depth, decode_rgb, header_from_raw
from .options import FORMAT_VERSION, STATE_DIR, ConvertOptions, report_progress
from .pairing import seeded_rng
from .reader import BagError, explain_read_error, open_bag, resolve_bag

__all__ = ["write_task", "render_frame", "shard_done"]


def _fill_invalid(depth_m: np.ndarray) -> np.ndarray:
    """Invalid depth (0 / NaN) replaced by the nearest valid depth (for rendering only)."""
    import cv2

    valid = np.isfinite(depth_m) & (depth_m > 0)
    if valid.all() or not valid.any():
        return np.where(valid, depth_m, 1.0).astype(np.float32)
    _, labels = cv2.distanceTransformWithLabels(
        (~valid).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    ys, xs = np.nonzero(valid)
    lut = np.zeros(labels.max() + 1, np.float32)
    lut[labels[ys, xs]] = depth_m[ys, xs]
    return np.where(valid, depth_m, lut[labels]).astype(np.float32)


def render_frame(
    rgb: np.ndarray, depth_m: np.ndarray, fx: float, opts: ConvertOptions, rng: np.random.Generator, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """``opts.renders`` focused images (K, H, W, 3) uint8 and their lens settings (K, 3) from an
    all-in-focus frame and its depth, with the package's occlusion-aware renderer."""
    import torch

    from ..optics import Lens, signed_defocus_px
    from ..synth.render import linear_to_srgb, render_defocus, srgb_to_linear

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


def shard_done(out: Path, name: str) -> bool:
    return (out / name).is_file() or (out / STATE_DIR / (name + ".empty.json")).is_file()


def _prepared_frame(
    fr: dict, buf: dict, scan: dict, opts: ConvertOptions, rgb_t: str, depth_t: str | None, scale: float
):
    """A planned frame's (RGB at the stored size, depth as stored, fx at the stored size), or
    (the reason it is skipped, an example message or None)."""
    import cv2

    W, H = scan["camera"]["width"], scan["camera"]["height"]
    tw, th = scan["stored_size"]
    rgb = buf.pop((rgb_t, *fr["rgb"]), None)
    dep = buf.pop((depth_t, *fr["depth"]), None) if fr["depth"] else None
    if rgb is None or (fr["depth"] and dep is None):
        return "unreadable (bag ended or read error)", None
    bad = rgb if isinstance(rgb, FrameError) else dep if isinstance(dep, FrameError) else None
    if bad is not None:
        return "decode error", str(bad)
    if rgb.shape[:2] != (H, W):
        return "RGB size changed", None
    if (tw, th) != (W, H):
        rgb = cv2.resize(rgb, (tw, th), interpolation=cv2.INTER_AREA)
    if dep is None:
        return rgb, np.zeros((th, tw), np.uint16), fr["fx"] * tw / W
    dw, dh = scan["camera"]["depth_size"]
    if dep.shape != (dh, dw):
        return "depth size changed", None
    if dep.shape != (th, tw):
        dep = cv2.resize(dep, (tw, th), interpolation=cv2.INTER_NEAREST)
    d_m = dep.astype(np.float64) * scale
    if float((np.isfinite(d_m) & (d_m > 0)).mean()) < opts.min_valid:
        return "too little valid depth", None
    return rgb, dep, fr["fx"] * tw / W


def _build_shard(shard: dict, buf: dict, scan: dict, opts: ConvertOptions, rgb_t: str, depth_t: str | None):
    """Decoded frames -> shard arrays and its meta (counts of frames written and skipped)."""
    skipped, reasons = Counter(), {}
    imgs, depths, lenses, fxs, stamps, aifs = [], [], [], [], [], []
    enc = scan["camera"].get("depth_encoding")
    integer_depth = opts.mode == "unlabeled" or enc in ("16UC1", "mono16")
    scale = (opts.depth_scale or DEPTH_SCALES.get(enc, 0.001)) if integer_depth else 1.0
    for fr in shard["frames"]:
        got = _prepared_frame(fr, buf, scan, opts, rgb_t, depth_t, scale)
        if len(got) == 2:  # skipped: (reason, example)
            skipped[got[0]] += 1
            if got[1]:
                reasons.setdefault(got[0], got[1])
            continue
        rgb, dep, fx = got
        if opts.mode == "render":
            rng = seeded_rng(opts.seed, f"render:{scan['name']}:{fr['stamp']}")
            out, lens = render_frame(
                rgb, (dep.astype(np.float64) * scale).astype(np.float32), fx, opts, rng, opts.device
            )
            imgs += list(out)
            lenses += list(lens)
            aifs += [rgb] * len(out)
        else:
            imgs.append(rgb)
            lenses.append([scan["lens"][k] for k in ("focal_length_m", "f_number", "focus_distance_m")])
        n_new = len(imgs) - len(fxs)
        depths += [dep] * n_new
        fxs += [fx] * n_new
        stamps += [fr["stamp"]] * n_new
        report_progress("frames", 1)
    report_progress("frames", sum(skipped.values()))
    meta = {
        "format_version": FORMAT_VERSION,
        "bag": scan["name"],
        "bag_index": scan["index"],
        "split": shard["split"],
        "mode": opts.mode,
        "frames_planned": len(shard["frames"]),
        "frames_written": len(shard["frames"]) - sum(skipped.values()),
        "samples": len(imgs),
        "skipped": dict(skipped),
        "skip_examples": reasons,
    }
    if not imgs:
        return None, meta
    arrays = {
        "image": np.stack(imgs),
        "depth": np.stack(depths),
        "lens": np.asarray(lenses, np.float32),
        "fx": np.asarray(fxs, np.float32),
        "layout": np.full(len(imgs), -1, np.int64),
        "stamp_ns": np.asarray(stamps, np.int64),
        "depth_scale": np.float64(scale),
        "meta": np.array(json.dumps(meta)),
    }
    if aifs and opts.keep_aif:
        arrays["aif"] = np.stack(aifs)
    return arrays, meta


def _needed_keys(todo: list, rgb_t: str, depth_t: str | None) -> set:
    """``(topic, log time ns, header stamp ns)`` of every message the shards in ``todo`` use."""
    need = set()
    for s in todo:
        for fr in s["frames"]:
            need.add((rgb_t, *fr["rgb"]))
            if fr["depth"]:
                need.add((depth_t, *fr["depth"]))
    return need


def _shard_ready(shard: dict, buf: dict, rgb_t: str, depth_t: str | None) -> bool:
    """Whether every message of the shard's frames has been read into ``buf``."""
    return all(
        (rgb_t, *fr["rgb"]) in buf and (not fr["depth"] or (depth_t, *fr["depth"]) in buf) for fr in shard["frames"]
    )


def _decode(reader, raw, msgtype: str, kind: str):
    """A message's image (``kind`` ``rgb`` or ``depth``), or the :class:`FrameError` why not."""
    try:
        m = reader.deserialize(raw, msgtype)
        return decode_rgb(m, msgtype) if kind == "rgb" else decode_depth(m, msgtype)
    except FrameError as exc:
        return exc
    except Exception as exc:  # a corrupt message: that frame is skipped
        return FrameError(explain_read_error(exc))


def _read_needed(reader, src, conns: list, window: tuple, scan: dict, need: set, buf: dict, on_decoded) -> None:
    """Decode the needed messages of ``conns`` within ``window`` (start, stop ns of log time) into
    ``buf``, calling ``on_decoded()`` after each; stop when it returns True (nothing left to write)."""
    rgb_t = scan["topics"]["rgb"]
    stamp_src = scan.get("stamp_source", {})
    for c, log_ns, raw in reader.messages(connections=conns, start=window[0], stop=window[1]):
        kind = "rgb" if c.topic == rgb_t else "depth"
        try:
            st = log_ns if stamp_src.get(kind) == "log" else header_from_raw(raw, src.ros1)[0]
        except FrameError:
            continue
        key = (c.topic, log_ns, st)
        if key not in need or key in buf:
            continue
        buf[key] = _decode(reader, raw, c.msgtype, kind)
        if on_decoded():
            break


def write_task(scan: dict, shard_names: list, opts: ConvertOptions) -> dict:
    """Write the given shards of one bag (those not yet on disk). Never raises: errors are returned."""
    out = Path(opts.out)
    res = {"index": scan["index"], "name": scan["name"], "written": [], "frames": 0, "error": None, "warnings": []}
    todo = [s for s in scan["shards"] if s["name"] in shard_names and not shard_done(out, s["name"])]
    if not todo:
        return res
    rgb_t, depth_t = scan["topics"]["rgb"], scan["topics"]["depth"]
    need = _needed_keys(todo, rgb_t, depth_t)
    window = (min(k[1] for k in need), max(k[1] for k in need) + 1)
    buf = {}
    pending = list(todo)

    def flush(force=False) -> bool:
        """Build and save the leading pending shards whose messages are all read (all: ``force``);
        True when none is left."""
        while pending and (force or _shard_ready(pending[0], buf, rgb_t, depth_t)):
            shard = pending.pop(0)
            arrays, meta = _build_shard(shard, buf, scan, opts, rgb_t, depth_t)
            _save(out, shard["name"], arrays, meta, opts, scan["name"], len(res["written"]))
            res["written"].append(shard["name"])
            res["frames"] += len(shard["frames"])
        return not pending

    try:
        src = resolve_bag(scan["path"])
        with open_bag(src) as reader:
            conns = [c for c in reader.connections if c.topic in (rgb_t, depth_t)]
            try:
                _read_needed(reader, src, conns, window, scan, need, buf, flush)
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
        raise OSError(
            exc.errno,
            f"{bag}: cannot write {out / name}: {what}; the shards written before are "
            "intact; free space and re-run the same command to continue",
        ) from None
