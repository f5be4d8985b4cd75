"""bag2dataset, stage 2 (pure: the same bags and options always give the same plan): pair RGB and
depth by approximate time (:mod:`.pairing`), subsample, deal frames to splits (time blocks with a
guard band, or whole bags), and cut a bag's frames into shards of consecutive frames of one split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .options import ConvertOptions
from .pairing import SPLITS, pair_nearest, seeded_rng, split_counts, subsample, time_block_splits
from .reader import BagError

__all__ = ["plan_frames", "group_shards", "bag_splits"]


def plan_frames(
    rgb: list, depth: list | None, fx_of, opts: ConvertOptions, split_of_bag: str | None, name: str
) -> tuple[list, dict]:
    """The frames to write and the counts of the planning.

    Args:
        rgb, depth: (stamp ns, log ns) of the deduplicated RGB and depth frames (depth None: unlabelled).
        fx_of: stamp (ns) -> fx (px).
        split_of_bag: the bag's split with ``--split-by bag``.
    Returns:
        ``[{"rgb": [log, stamp], "depth": [log, stamp] | None, "stamp", "fx", "split"}]`` and counts
        (paired, unmatched, subsampled out, split guard, planned).
    """
    counts = {}
    r_st = np.array([x[0] for x in rgb], dtype=np.int64)
    if depth is not None:
        d_st = np.array([x[0] for x in depth], dtype=np.int64)
        ia, ib = pair_nearest(r_st, d_st, int(round(opts.max_dt * 1e9)))
        counts.update(paired=len(ia), unmatched_rgb=len(rgb) - len(ia), unmatched_depth=len(depth) - len(ib))
        if not len(ia):
            raise BagError(
                f"{name}: no RGB frame has a depth frame within --max-dt {opts.max_dt} s "
                f"(RGB stamps {r_st[0]}..{r_st[-1]}, depth {d_st[0]}..{d_st[-1]} ns)"
            )
    else:
        ia, ib = np.arange(len(rgb)), None
        counts["paired"] = len(rgb)
    stamps = r_st[ia]
    keep = subsample(stamps, opts.every, int(round(opts.min_gap * 1e9)))
    counts["subsampled_out"] = int((~keep).sum())
    ia, stamps = ia[keep], stamps[keep]
    ib = ib[keep] if ib is not None else None
    ratios = dict(zip(SPLITS, opts.split_ratio))
    if opts.split_by == "time":
        splits, counts["split_guard"] = time_block_splits(
            stamps, opts.block_s, ratios, opts.guard_s, seeded_rng(opts.seed, "split:" + name)
        )
    else:
        splits = [split_of_bag or "train"] * len(stamps)
        counts["split_guard"] = 0
    frames = []
    for k in range(len(stamps)):
        if splits[k] is None:
            continue
        r = rgb[int(ia[k])]
        d = depth[int(ib[k])] if ib is not None else None
        frames.append(
            {
                "rgb": [int(r[1]), int(r[0])],
                "depth": [int(d[1]), int(d[0])] if d else None,
                "stamp": int(r[0]),
                "fx": fx_of(int(r[0])),
                "split": splits[k],
            }
        )
    counts["planned"] = len(frames)
    return frames, counts


def group_shards(frames: list, shard_size: int, bag_index: int) -> list:
    """Consecutive frames of one split, at most ``shard_size`` per shard, named
    ``shard_b<bag>_<k>.npz``."""
    shards, cur = [], None
    for fr in frames:
        if cur is None or cur["split"] != fr["split"] or len(cur["frames"]) >= shard_size:
            cur = {"name": f"shard_b{bag_index:03d}_{len(shards):05d}.npz", "split": fr["split"], "frames": []}
            shards.append(cur)
        cur["frames"].append(fr)
    return shards


def bag_splits(bags: list, opts: ConvertOptions) -> dict:
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
