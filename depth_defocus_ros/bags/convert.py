"""``depth-defocus bag2dataset BAG... --out DIR``: rosbags -> streamable dataset shards (the driver).

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

Modules: :mod:`.options` (options, progress), :mod:`.scan` (1), :mod:`.plan` (2, pure),
:mod:`.write` (3), this module (the driver: workers, resume, manifest, report) and :mod:`.args`
(the command line).

Exit status: 0 when every bag was converted, 1 when some bags failed (the others are usable),
2 when nothing usable was produced.
"""

from __future__ import annotations

import fcntl
import json
import math
import sys
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..synth.shards import write_json_atomic
from .options import FORMAT_VERSION, MODES, STATE_DIR, ConvertError, ConvertOptions, set_progress, worker_init
from .plan import bag_splits
from .scan import scan_bag
from .write import shard_done, write_task

__all__ = ["ConvertOptions", "ConvertError", "convert_bags", "format_report"]


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
            raise ConvertError(
                f"{out} was converted with other options ({k}: {old['options'].get(k)!r}, now "
                f"{opts.content()[k]!r}); re-run with the same options to continue, or use a new --out"
            )
        old_bags = [b["path"] for b in old.get("bags", [])]
        if old_bags != bag_paths:
            raise ConvertError(
                f"{out} was converted from other bags ({', '.join(old_bags)}); re-run with the same "
                "bags to continue, or use a new --out"
            )
    elif any(out.glob("shard_*.npz")):
        raise ConvertError(f"{out} holds shards but no bag2dataset manifest; use a new --out folder")


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


_BAG_KEYS = (
    "index",
    "name",
    "path",
    "kind",
    "topics",
    "msgtypes",
    "camera",
    "stored_size",
    "lens",
    "lens_source",
    "duration_s",
    "error",
    "warnings",
    "counts",
)


def _bag_entry(out: Path, s: dict, splits: dict, shards: list) -> tuple[dict, Counter]:
    """One bag's manifest entry from its scan and the shards on disk, and its skip counts.

    Appends the bag's written shards to ``splits`` ({split: [shard name]}) and ``shards``.
    """
    b = {k: s.get(k) for k in _BAG_KEYS}
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
    b["complete"] = s.get("error") is None and all(shard_done(out, sh["name"]) for sh in s.get("shards", []))
    return b, bskip


def _manifest_lens(opts: ConvertOptions, first: dict):
    """The manifest's lens: the first bag's (mm, f-number, m) or, in ``render`` mode, the rendered
    lens settings (fixed values or the ranges they are drawn from)."""
    if opts.mode != "render":
        return first.get("lens")
    return {
        "focal_length_mm": opts.focal_length_mm or 50.0,
        "f_number": opts.f_number or list(opts.f_number_range),
        "focus_distance_m": opts.focus_distance_m or (list(opts.focus_range) if opts.focus_range else "subject"),
        "renders_per_frame": opts.renders,
    }


def _manifest(out: Path, opts: ConvertOptions, scans: list, complete: bool, report: dict | None = None) -> dict:
    """``manifest.json``'s content from the bags' scans and the shards on disk."""
    bags, splits, shards = [], {}, []
    total = Counter()
    skipped = Counter()
    for s in scans:
        b, bskip = _bag_entry(out, s, splits, shards)
        total.update({k: v for k, v in (s.get("counts") or {}).items()})
        total["samples"] += b["samples"]
        skipped.update(bskip)
        bags.append(b)
    first = next((b for b in bags if b.get("camera")), {})
    topics = {json.dumps(b["topics"]) for b in bags if b.get("topics")}
    return {
        "format_version": FORMAT_VERSION,
        "source": "bag2dataset",
        "mode": opts.mode,
        "complete": complete,
        "labeled": opts.mode != "unlabeled",
        "options": opts.content(),
        "topics": json.loads(topics.pop()) if len(topics) == 1 else "per bag",
        "camera": first.get("camera"),
        "stored_size": first.get("stored_size"),
        "lens": _manifest_lens(opts, first),
        "counts": {**dict(total), "skipped": dict(skipped)},
        "samples": total["samples"],
        "splits": {k: sorted(v) for k, v in splits.items()},
        "split_samples": {k: sum(b["splits"].get(k, 0) for b in bags) for k in splits},
        "shards": sorted(shards),
        "bags": bags,
        "report": report or {},
    }


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

        def update(item):
            kind, n = item
            if kind in bars:
                bars[kind].update(n)

        if self.workers <= 1 or len(jobs) <= 1:
            set_progress(update)
            try:
                return [fn(*job) for job in jobs]
            finally:
                set_progress(None)
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        if self.pool is None:
            ctx = mp.get_context("spawn")  # no fork of a process that may hold OpenMP / torch threads
            self.queue = ctx.Queue()
            self.pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=ctx, initializer=worker_init, initargs=(self.queue, 1)
            )

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
    todo = [(s, [sh for sh in s["shards"] if not shard_done(out, sh["name"])]) for s in scans if not s["error"]]
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
        split_of = bag_splits(paths, opts)
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
    bars = {"frames": tqdm(total=n_frames, desc="convert", unit="frame", disable=not opts.progress, file=sys.stderr)}
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
    report = {
        "seconds": round(elapsed, 2),
        "scan_seconds": round(t_scan, 2),
        "write_seconds": round(t_write, 2),
        "frames_this_run": frames_done,
        "workers": workers,
        "frames_per_s": round(frames_done / elapsed, 2) if elapsed > 0 else None,
    }
    complete = all(not s.get("error") for s in scans)
    manifest = _manifest(out, opts, scans, complete=complete, report=report)
    try:
        write_json_atomic(out / "manifest.json", manifest)
    except OSError as exc:
        print(
            f"error: cannot write {out / 'manifest.json'}: {exc.strerror}; the shards are intact; free space "
            "and re-run the same command",
            file=sys.stderr,
        )
        return 2, manifest
    if manifest["samples"] == 0:
        return 2, manifest
    return (0 if complete else 1), manifest


def format_report(m: dict) -> str:
    lines = [
        f"bag2dataset ({m['mode']}): {len(m['bags'])} bag(s) -> {m['samples']} samples in {len(m['shards'])} shards"
    ]
    for b in m["bags"]:
        c = b.get("counts") or {}
        if b.get("error") and not b.get("samples"):
            lines.append(f"  {b['name']}: ERROR: {b['error']}")
            continue
        lines.append(
            f"  {b['name']}: read rgb {c.get('rgb_read', 0)}, depth {c.get('depth_read', 0)}, camera_info "
            f"{c.get('camera_info_read', 0)}; paired {c.get('paired', 0)} (unmatched rgb "
            f"{c.get('unmatched_rgb', 0)}, depth {c.get('unmatched_depth', 0)}); kept {c.get('planned', 0)} "
            f"(subsampled out {c.get('subsampled_out', 0)}, split guard {c.get('split_guard', 0)}); samples "
            f"{b['samples']} {b['splits']}"
        )
        if b.get("skipped"):
            lines.append(f"    skipped while writing: {b['skipped']}")
        for w in b.get("warnings") or []:
            lines.append(f"    warning: {w}")
        if b.get("error"):
            lines.append(f"    ERROR: {b['error']}")
    r = m.get("report") or {}
    lines.append(f"splits: {m['split_samples']}")
    if r:
        lines.append(
            f"time {r['seconds']} s (scan {r['scan_seconds']} s, write {r['write_seconds']} s, "
            f"{r['workers']} workers): {r['frames_this_run']} frames converted in this run, "
            f"{r['frames_per_s']} frames/s"
        )
    return "\n".join(lines)
