"""Dataset shard files on disk (numpy only, no torch): write atomically, find, read depth.

A dataset folder holds ``manifest.json`` and shards ``shard_NNNNN.npz``, each with

* ``image``   (N, H, W, 3) uint8, focused sRGB
* ``depth``   (N, H, W) float32, z-depth in metres (0 or NaN = invalid), lossless
* ``lens``    (N, 3) float32: focal length (m), f-number, focus distance (m)
* ``fx``      (N,) float32 focal length in px at this resolution
* ``layout``  (N,) int64 (optional; synthetic layout id, -1 for real data)

Format version 2 (``depth-defocus bag2dataset``, see DATASET.md) adds, all optional:

* ``depth`` may be (N, H, W) uint16 as recorded (e.g. 16UC1 millimetres, 0 = invalid) with
  ``depth_scale`` (scalar float64, metres per unit): depth in metres is ``depth * depth_scale``
* ``aif``      (N, H, W, 3) uint8 all-in-focus sRGB (frames rendered with the ``render`` mode)
* ``stamp_ns`` (N,) int64 header stamps of the source frames
* ``meta``     a JSON string: source bag, split, counts of frames planned / written / skipped

The defocus ground truth is not stored: it follows from depth, lens and fx through the optics.
A shard is written to a temporary name and renamed when complete, so a half-written shard never
looks complete; the manifest is rewritten (atomically) after every shard, so an interrupted
writer resumes at the next missing shard.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

__all__ = [
    "write_shard",
    "write_json_atomic",
    "shard_paths",
    "depth_metres",
    "FORMAT_VERSION",
    "SHARD_KEYS",
    "COMPRESSIONS",
    "DatasetError",
]

FORMAT_VERSION = 2  # 1: float32 depth only; 2: optional uint16 depth + depth_scale, aif, stamp_ns, meta
SHARD_KEYS = ("image", "depth", "lens", "fx", "layout", "depth_scale")  # what training and eval read
COMPRESSIONS = {"none": None, "deflate1": 1, "deflate6": 6}  # shard compression -> zip deflate level


class DatasetError(ValueError, RuntimeError):
    """A dataset folder that cannot serve the request (e.g. no such split); one line for the user."""


def _atomic_write_bytes(path: Path, write_fn) -> None:
    tmp = path.with_name(path.name + ".partial")
    try:
        with open(tmp, "wb") as fh:
            write_fn(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        # a failed write (disk full, interrupt) leaves no half file behind; the target is untouched
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def write_json_atomic(path: Path, obj) -> None:
    _atomic_write_bytes(Path(path), lambda fh: fh.write(json.dumps(obj, indent=2).encode()))


def write_shard(path: str | os.PathLike, compression: str = "none", **arrays) -> None:
    """Write one shard atomically (``.partial`` then rename) as a NumPy ``.npz`` (any ``np.load``
    reads it). ``compression`` (all lossless): ``none`` (stored: the fastest, 1.5 MB per 640x480 RGB
    + 16-bit depth frame), ``deflate1`` or ``deflate6`` (zip deflate at level 1 or 6: smaller,
    slower; scripts/bench_bag2dataset.py and DATASET.md give the numbers)."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}")
    level = COMPRESSIONS[compression]

    def write(fh):
        method = zipfile.ZIP_STORED if level is None else zipfile.ZIP_DEFLATED
        with zipfile.ZipFile(fh, "w", method, compresslevel=level, allowZip64=True) as zf:
            for name, arr in arrays.items():
                with zf.open(name + ".npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asanyarray(arr), allow_pickle=False)

    _atomic_write_bytes(Path(path), write)


def depth_metres(depth, scale=None) -> np.ndarray:
    """Stored depth -> float32 metres: integer depth (e.g. 16UC1 mm) times ``depth_scale``."""
    depth = np.asarray(depth)
    if depth.dtype.kind in "ui":
        s = 0.001 if scale is None else float(np.asarray(scale))
        return (depth.astype(np.float64) * s).astype(np.float32)
    return depth.astype(np.float32, copy=False)


def shard_paths(root: str | os.PathLike, split: str | None = None) -> list[Path]:
    root = Path(root)
    if split:
        if not (root / "manifest.json").is_file():
            raise FileNotFoundError(f"{root}: no manifest.json, so no split {split!r} (is it a dataset folder?)")
        manifest = json.loads((root / "manifest.json").read_text())
        names = manifest.get("splits", {}).get(split)
        if names is None:
            have = sorted(manifest.get("splits", {}))
            raise DatasetError(f"{root}: manifest has no split {split!r} (it has: {have})")
        return [root / n for n in names]
    return sorted(root.glob("shard_*.npz"))
