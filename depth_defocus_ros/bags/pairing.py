"""RGB/depth pairing by approximate time, frame subsampling and leak-free splits (pure numpy).

Pairing (like message_filters' ApproximateTime for two topics, with a bound): an RGB frame and
a depth frame form a pair when each is the other's nearest neighbour in time and their stamps
differ by at most ``max_dt``. Every message is used at most once, pairs keep the time order, and
a frame whose partner was dropped stays unmatched (counted), instead of being paired with a
neighbour's partner.

Splits by time blocks: the recording is cut into blocks of ``block_s`` seconds, blocks are dealt
to the splits in the given proportions (shuffled with the seed), and frames closer than
``guard_s`` to a boundary between blocks of different splits are dropped, so that no test frame
has a training frame as its temporal neighbour.
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["pair_nearest", "subsample", "split_counts", "time_block_splits", "SPLITS"]

SPLITS = ("train", "val", "test")


def _nearest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Index into sorted ``b`` of the nearest value for every ``a`` (ties: the earlier one)."""
    pos = np.searchsorted(b, a)
    left = np.clip(pos - 1, 0, len(b) - 1)
    right = np.clip(pos, 0, len(b) - 1)
    return np.where(np.abs(a - b[left]) <= np.abs(b[right] - a), left, right)


def pair_nearest(t_a: np.ndarray, t_b: np.ndarray, max_dt_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (ia, ib) of mutual-nearest pairs within ``max_dt_ns``; inputs sorted ascending (int64 ns)."""
    t_a = np.asarray(t_a, dtype=np.int64)
    t_b = np.asarray(t_b, dtype=np.int64)
    if not len(t_a) or not len(t_b):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a2b = _nearest(t_a, t_b)
    b2a = _nearest(t_b, t_a)
    ia = np.arange(len(t_a))
    ok = (b2a[a2b] == ia) & (np.abs(t_a - t_b[a2b]) <= max_dt_ns)
    return ia[ok], a2b[ok]


def subsample(stamps_ns: np.ndarray, every: int = 1, min_gap_ns: int = 0) -> np.ndarray:
    """Boolean mask: every ``every``-th frame, then at least ``min_gap_ns`` after the last kept one."""
    n = len(stamps_ns)
    keep = np.zeros(n, bool)
    keep[:: max(1, int(every))] = True
    if min_gap_ns > 0:
        last = None
        for i in np.flatnonzero(keep):
            if last is not None and stamps_ns[i] - last < min_gap_ns:
                keep[i] = False
            else:
                last = stamps_ns[i]
    return keep


def split_counts(n: int, ratios: dict) -> dict:
    """Whole numbers of items per split, proportional to ``ratios`` (largest remainder); every split
    with a positive ratio gets at least one item when there are enough items."""
    names = [k for k, v in ratios.items() if v > 0]
    total = sum(ratios[k] for k in names)
    exact = {k: n * ratios[k] / total for k in names}
    counts = {k: int(np.floor(v)) for k, v in exact.items()}
    for k in sorted(names, key=lambda k: exact[k] - counts[k], reverse=True)[: n - sum(counts.values())]:
        counts[k] += 1
    if n >= len(names):
        for k in names:
            if counts[k] == 0:
                donor = max(counts, key=counts.get)
                counts[donor] -= 1
                counts[k] += 1
    return counts


def seeded_rng(seed: int, key: str) -> np.random.Generator:
    """A generator that depends on the seed and a string key only (stable across runs and machines)."""
    return np.random.default_rng([int(seed), zlib.crc32(key.encode())])


def time_block_splits(
    stamps_ns: np.ndarray, block_s: float, ratios: dict, guard_s: float, rng: np.random.Generator
) -> tuple[list, int]:
    """Split name per frame (None: dropped by the guard band) and the number of guard drops.

    ``stamps_ns`` sorted ascending.
    """
    n = len(stamps_ns)
    if not n:
        return [], 0
    t = (np.asarray(stamps_ns, dtype=np.int64) - int(stamps_ns[0])) / 1e9
    block = np.floor(t / block_s).astype(np.int64)
    n_blocks = int(block[-1]) + 1
    counts = split_counts(n_blocks, ratios)
    names = [k for k, c in counts.items() for _ in range(c)]
    names = [names[i] for i in rng.permutation(len(names))]
    out, dropped = [], 0
    for i in range(n):
        b = int(block[i])
        lo, hi = b * block_s, (b + 1) * block_s
        near_lo = b > 0 and t[i] - lo < guard_s and names[b - 1] != names[b]
        near_hi = b + 1 < n_blocks and hi - t[i] < guard_s and names[b + 1] != names[b]
        if near_lo or near_hi:
            out.append(None)
            dropped += 1
        else:
            out.append(names[b])
    return out, dropped
