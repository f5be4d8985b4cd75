"""bag2dataset's options, errors and progress reporting: what every stage (scan, plan, write, the
driver) shares. No torch, no ROS."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields

__all__ = [
    "ConvertOptions",
    "ConvertError",
    "MODES",
    "STATE_DIR",
    "FORMAT_VERSION",
    "report_progress",
    "worker_init",
    "set_progress",
]

MODES = ("real-defocus", "render", "unlabeled")

STATE_DIR = ".bag2dataset"

RUN_ONLY = ("out", "workers", "progress", "device")

FORMAT_VERSION = 2  # of the shards and manifest (depth_defocus_ros.synth.shards.FORMAT_VERSION; checked in the tests)


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
_PROGRESS = None  # a callable(item) in this process, or a multiprocessing queue's put in workers


def set_progress(fn) -> None:
    """Where progress goes in this process: a callable taking ``(kind, n)``, or None."""
    global _PROGRESS
    _PROGRESS = fn


def report_progress(kind: str, n: int) -> None:
    if _PROGRESS is not None and n:
        _PROGRESS((kind, n))


def worker_init(queue, threads: int) -> None:
    """Initializer of a worker process: progress to the parent's queue, ``threads`` threads."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    set_progress(queue.put)
    try:
        import cv2

        cv2.setNumThreads(threads)
    except Exception:
        pass
