"""Torch datasets and streams over shards and synthetic scenes: :class:`ShardDataset` (rank-sharded
streaming from shard files), :class:`SceneStream` (the infinite synthetic stream), and the batch
helpers (:func:`batch_from_arrays`, :func:`random_crop`). The batch dict is the one documented in
:mod:`.scenes`.
"""

from __future__ import annotations

import numpy as np
import torch

from ..optics import Lens, signed_defocus_px
from ..synth.scenes import SceneConfig, SceneGenerator
from ..synth.shards import SHARD_KEYS, depth_metres, shard_paths

__all__ = ["ShardDataset", "SceneStream", "batch_from_arrays", "random_crop", "MAP_KEYS"]


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
        "image": img,
        "depth": torch.where(valid, d, torch.zeros_like(d)),
        "defocus": sd.abs(),
        "signed_defocus": sd,
        "valid": valid,
        "lens": lens_t,
        "fx": fx_t,
        "layout": lay,
    }


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

    def __init__(
        self,
        root,
        batch_size: int,
        rank: int = 0,
        world: int = 1,
        split=None,
        loop: bool = True,
        augment: bool = True,
        seed: int = 0,
        crop=None,
    ):
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
                    b = batch_from_arrays(
                        arrs["image"][sel],
                        arrs["depth"][sel],
                        arrs["lens"][sel],
                        arrs["fx"][sel],
                        arrs.get("layout", [None])[sel] if "layout" in arrs else None,
                    )
                    if self.augment and rng.random() < 0.5:
                        for k in MAP_KEYS:
                            b[k] = b[k].flip(-1)
                    yield random_crop(b, self.crop, rng) if self.crop else b
            epoch += 1
            if not self.loop:
                return
            if not yielded:
                raise RuntimeError(f"{self.root}: the shards of rank {self.rank} hold no samples")


class SceneStream(torch.utils.data.IterableDataset):
    """Infinite, seeded stream of rendered batches; a fixed seed gives the same scenes.

    Each DDP rank and DataLoader worker draws from its own seed (``seed + 1000 * rank + worker``)
    so that no two processes train on the same scenes.

    With ``reuse > 1`` every rendered batch is used for that many steps, each with its own random
    crop (``crop`` = (h, w) px) and flip: rendering is the costly part on a CPU.
    """

    def __init__(self, config: SceneConfig, batch_size: int, seed: int = 0, rank: int = 0, reuse: int = 1, crop=None):
        super().__init__()
        self.config, self.batch_size, self.seed, self.rank = config, batch_size, seed, rank
        self.reuse, self.crop = reuse, crop

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker = info.id if info else 0
        seed = self.seed + 1000 * self.rank + 100_003 * worker
        gen = SceneGenerator(self.config, seed=seed)
        rng = np.random.default_rng(seed)
        while True:
            batch = gen.batch(self.batch_size)
            for _ in range(self.reuse):
                b = dict(batch)
                if self.reuse > 1 and rng.random() < 0.5:
                    b.update({k: batch[k].flip(-1) for k in MAP_KEYS})
                yield random_crop(b, self.crop, rng) if self.crop else b
