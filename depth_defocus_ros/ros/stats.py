"""``Stats``: the node's counters, input / output rates (Hz), latencies and per-stage times (ms).

Thread-safe: the subscription callbacks, the worker and the diagnostics timer all write or read it.
:meth:`Stats.snapshot` is what ``/diagnostics`` reports (:mod:`.diagnostics`). Plain Python and
numpy, usable without a ROS install.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque

import numpy as np

__all__ = ["Stats", "STAGES"]

# where a frame's time goes (diagnostics stage_ms_*): message -> RGB, reading the blur (the reader
# or the training-free estimate), side + validity + depth, conversions + point cloud + publishing
STAGES = ("decode", "read", "depth", "publish")


class Stats:
    """Counters, rates and latencies for diagnostics (thread-safe)."""

    def __init__(self, window_s: float = 5.0):
        self.window_s = window_s
        self._lock = threading.Lock()
        self.counts: Counter = Counter()
        self._t_in: deque = deque(maxlen=2000)
        self._t_out: deque = deque(maxlen=2000)
        self._latency: deque = deque(maxlen=500)  # s, receive -> published
        self._age: deque = deque(maxlen=500)  # s, header stamp -> published (ROS clock)
        self._stages: dict = {name: deque(maxlen=200) for name in STAGES}  # s per frame and stage

    def frame_in(self, t: float) -> None:
        with self._lock:
            self.counts["frames_in"] += 1
            self._t_in.append(t)

    def frame_out(self, t: float, latency_s: float, age_s: float | None) -> None:
        with self._lock:
            self.counts["frames_out"] += 1
            self._t_out.append(t)
            self._latency.append(latency_s)
            if age_s is not None:
                self._age.append(age_s)

    def stage(self, name: str, seconds: float) -> None:
        with self._lock:
            self._stages[name].append(seconds)

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def _rate(self, times, now: float) -> float:
        ts = [t for t in times if t >= now - self.window_s]
        if len(ts) < 2:
            return 0.0
        return (len(ts) - 1) / max(ts[-1] - ts[0], 1e-9)

    def snapshot(self, now: float | None = None) -> dict:
        now = time.monotonic() if now is None else now
        with self._lock:
            lat = np.array(self._latency) * 1000.0
            age = np.array(self._age) * 1000.0
            out = dict(self.counts)
            out["input_rate_hz"] = self._rate(self._t_in, now)
            out["output_rate_hz"] = self._rate(self._t_out, now)
            out["last_input_s_ago"] = now - self._t_in[-1] if self._t_in else math.inf
            for name, d in self._stages.items():
                out[f"stage_ms_{name}"] = float(np.mean(d)) * 1000.0 if d else math.nan
        for name, a in (("latency_ms", lat), ("age_ms", age)):
            out[name + "_mean"] = float(a.mean()) if a.size else math.nan
            out[name + "_p95"] = float(np.percentile(a, 95)) if a.size else math.nan
        return out
