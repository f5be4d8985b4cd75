"""On-disk sample shards: write atomically, read as a streaming, rank-sharded dataset.

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
from pathlib import Path

import numpy as np
import torch

from .optics import Lens, signed_defocus_px

__all__ = ["write_shard", "shard_paths", "ShardDataset", "batch_from_arrays", "depth_metres", "FORMAT_VERSION",
           "DatasetError"]  # fmt: skip

FORMAT_VERSION = 2  # 1: float32 depth only; 2: optional uint16 depth + depth_scale, aif, stamp_ns, meta
SHARD_KEYS = ("image", "depth", "lens", "fx", "layout", "depth_scale")  # what training and eval read


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


def write_shard(path: str | os.PathLike, compress: bool = False, **arrays) -> None:
    """Write one shard atomically (``.partial`` then rename); ``compress``: zip-deflate (lossless)."""
    save = np.savez_compressed if compress else np.savez
    _atomic_write_bytes(Path(path), lambda fh: save(fh, **arrays))


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


def batch_from_arrays(image, depth, lens, fx, layout=None) -> dict:
    """numpy shard arrays -> the training batch dict of :mod:`.scenes` (defocus from optics)."""
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(0, 3, 1, 2).float() / 255.0
    d = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))[:, None]
    valid = torch.isfinite(d) & (d > 0)
    lens_t = torch.from_numpy(np.asarray(lens, dtype=np.float32))
    fx_t = torch.from_numpy(np.asarray(fx, dtype=np.float32))
    sd = torch.zeros_like(d)
    for i in range(d.shape[0]):
        ln = Lens(*[float(v) for v in lens_t[i]])
        sd[i] = torch.where(valid[i], signed_defocus_px(d[i].clamp_min(1e-6), ln, float(fx_t[i])), 0.0)
    lay = torch.full((d.shape[0],), -1, dtype=torch.int64) if layout is None else torch.as_tensor(layout)
    return {
        "image": img, "depth": torch.where(valid, d, torch.zeros_like(d)), "defocus": sd.abs(),
        "signed_defocus": sd, "valid": valid, "lens": lens_t, "fx": fx_t, "layout": lay,
    }  # fmt: skip


MAP_KEYS = ("image", "depth", "defocus", "signed_defocus", "valid")


def random_crop(batch: dict, size, rng: np.random.Generator) -> dict:
    """Same random (h, w) crop of every map in the batch; lens and fx are unchanged by crops."""
    h, w = batch["image"].shape[-2:]
    ch, cw = min(size[0], h), min(size[1], w)
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    out = dict(batch)
    for k in MAP_KEYS:
        if k in batch:
            out[k] = batch[k][..., y0 : y0 + ch, x0 : x0 + cw]
    return out


class ShardDataset(torch.utils.data.IterableDataset):
    """Streams batches from shards; rank ``r`` of ``world`` reads shards ``r, r+world, ...``.

    Args:
        root: dataset folder.
        batch_size: samples per batch.
        rank, world: DDP rank and world size (each rank streams its own shards).
        split: optional split name from the manifest.
        loop: repeat forever (training) or stop after one pass (evaluation).
        augment: random horizontal flips (CoC and depth are flip-invariant).
        seed: shuffling seed.
        crop: optional (h, w) random crop (px); crops keep the pixel scale, so fx and CoC hold.
    """

    def __init__(self, root, batch_size: int, rank: int = 0, world: int = 1, split=None,
                 loop: bool = True, augment: bool = True, seed: int = 0, crop=None):  # fmt: skip
        super().__init__()
        self.root, self.split = root, split
        self.paths = shard_paths(root, split)
        if not self.paths:
            raise FileNotFoundError(f"{root}: no shards (shard_*.npz) found")
        self.batch_size, self.rank, self.world = batch_size, rank, world
        self.loop, self.augment, self.seed, self.crop = loop, augment, seed, crop

    def __iter__(self):
        rng = np.random.default_rng(self.seed + self.rank)
        epoch = 0
        while True:
            yielded = False
            if epoch and self.split is None:  # a folder that is still being written grows
                self.paths = shard_paths(self.root) or self.paths
            mine = self.paths[self.rank :: self.world] or self.paths
            order = rng.permutation(len(mine)) if self.loop else range(len(mine))
            for j in order:
                with np.load(mine[j]) as z:
                    arrs = {k: z[k] for k in z.files if k in SHARD_KEYS}  # skip aif, meta: not needed
                if "depth_scale" in arrs or arrs["depth"].dtype.kind in "ui":
                    arrs["depth"] = depth_metres(arrs["depth"], arrs.get("depth_scale"))
                n = len(arrs["fx"])
                idx = rng.permutation(n) if self.loop else np.arange(n)
                for s in range(0, n, self.batch_size):
                    sel = idx[s : s + self.batch_size]
                    if self.loop and len(sel) < self.batch_size and n >= self.batch_size:
                        continue  # the tail of a reshuffled shard; a shard smaller than a batch is one batch
                    yielded = True
                    b = batch_from_arrays(arrs["image"][sel], arrs["depth"][sel], arrs["lens"][sel],
                                          arrs["fx"][sel], arrs.get("layout", [None])[sel]
                                          if "layout" in arrs else None)  # fmt: skip
                    if self.augment and rng.random() < 0.5:
                        for k in MAP_KEYS:
                            b[k] = b[k].flip(-1)
                    yield random_crop(b, self.crop, rng) if self.crop else b
            epoch += 1
            if not self.loop:
                return
            if not yielded:
                raise RuntimeError(f"{self.root}: the shards of rank {self.rank} hold no samples")


def render_shards(out: str | os.PathLike, scenes: int, seed: int, shard_size: int = 100,
                  config=None, progress: bool = True) -> Path:  # fmt: skip
    """Render ``scenes`` synthetic scenes into shards (resumable: existing shards are kept).

    Shard ``i`` is drawn from seed ``seed * 100003 + i``, so every shard is reproducible alone and
    a resumed run gives the same dataset as an uninterrupted one.
    """
    from tqdm import tqdm

    from .scenes import SceneConfig, SceneGenerator

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config or SceneConfig()
    n_shards = (scenes + shard_size - 1) // shard_size
    names = []
    bar = tqdm(total=scenes, desc=f"render {out.name}", unit="scene", disable=not progress)
    for i in range(n_shards):
        name = f"shard_{i:05d}.npz"
        names.append(name)
        count = min(shard_size, scenes - i * shard_size)
        if (out / name).exists():
            bar.update(count)
            continue
        gen = SceneGenerator(cfg, seed=seed * 100003 + i)
        parts = [gen.batch(min(25, count - k)) for k in range(0, count, 25)]
        b = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        write_shard(
            out / name,
            image=(b["image"].permute(0, 2, 3, 1) * 255).round().byte().numpy(),
            depth=b["depth"][:, 0].numpy(), lens=b["lens"].numpy(), fx=b["fx"].numpy(),
            layout=b["layout"].numpy(),
        )  # fmt: skip
        write_json_atomic(out / "manifest.json", {
            "format_version": FORMAT_VERSION, "source": "synthetic", "seed": seed,
            "scenes": scenes, "shard_size": shard_size, "shards": names,
            "complete": False, "scene_config": cfg.to_dict(),
        })  # fmt: skip
        bar.update(count)
    bar.close()
    write_json_atomic(out / "manifest.json", {
        "format_version": FORMAT_VERSION, "source": "synthetic", "seed": seed, "scenes": scenes,
        "shard_size": shard_size, "shards": names, "complete": True, "scene_config": cfg.to_dict(),
    })  # fmt: skip
    return out
