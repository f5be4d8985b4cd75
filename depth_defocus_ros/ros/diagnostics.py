"""What ``depth_defocus_node`` reports on ``/diagnostics``: the DiagnosticStatus built from a
:meth:`.stats.Stats.snapshot` (rates in Hz, latencies and stage times in ms, counters).

The level is ERROR when frames failed in processing since the last report, WARN on bad input,
dropped frames or no input for 5 s, else OK; the message names the problems, or gives the rates.
"""

from __future__ import annotations

from collections import Counter

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from .stats import STAGES

__all__ = ["BAD_INPUT_KINDS", "count_changes", "diagnostic_status"]

# the kinds of bad input counted (and reported as bad_<kind>); "processing_error" is reported apart
BAD_INPUT_KINDS = (
    "unsupported_encoding",
    "bad_data_length",
    "zero_size",
    "corrupt_compressed",
    "camera_info_invalid",
    "camera_info_mismatch",
    "frame_id_changed",
)


def count_changes(snapshot: dict, last: Counter) -> tuple[Counter, Counter]:
    """(the counters of ``snapshot``, how much each grew since ``last``)."""
    counts = Counter({k: v for k, v in snapshot.items() if isinstance(v, int)})
    return counts, counts - last


def _level_and_problems(s: dict, new: Counter, image_topic: str) -> tuple:
    level, problems = DiagnosticStatus.OK, []
    if new["processing_error"]:
        level = DiagnosticStatus.ERROR
        problems.append(f"{new['processing_error']} processing errors")
    bad = {k: new[k] for k in BAD_INPUT_KINDS if new[k]}
    if bad:
        level = max(level, DiagnosticStatus.WARN)
        problems.append("bad input: " + ", ".join(f"{k} {v}" for k, v in bad.items()))
    if new["frames_dropped"]:
        level = max(level, DiagnosticStatus.WARN)
        problems.append(f"{new['frames_dropped']} frames dropped (model slower than the camera)")
    if s["last_input_s_ago"] > 5.0:
        level = max(level, DiagnosticStatus.WARN)
        problems.append(f"no frames on {image_topic} for 5 s")
    return level, problems


def diagnostic_status(
    s: dict,
    counts: Counter,
    new: Counter,
    *,
    name: str,
    image_topic: str,
    device: str,
    precision: str,
    model: str,
    intrinsics_from: str,
    frame_id: str,
) -> DiagnosticStatus:
    """The status for snapshot ``s`` (``counts`` its counters, ``new`` their growth since the last report)."""
    level, problems = _level_and_problems(s, new, image_topic)
    summary = f"{s['output_rate_hz']:.1f} Hz out of {s['input_rate_hz']:.1f} Hz in"
    st = DiagnosticStatus(level=level, name=name, hardware_id=device, message="; ".join(problems) or summary)
    vals = {
        "input_rate_hz": f"{s['input_rate_hz']:.2f}",
        "output_rate_hz": f"{s['output_rate_hz']:.2f}",
        "latency_ms_mean": f"{s['latency_ms_mean']:.1f}",
        "latency_ms_p95": f"{s['latency_ms_p95']:.1f}",
        "age_ms_mean": f"{s['age_ms_mean']:.1f}",
        **{f"stage_ms_{stage}": f"{s[f'stage_ms_{stage}']:.1f}" for stage in STAGES},
        "frames_in": str(counts["frames_in"]),
        "frames_out": str(counts["frames_out"]),
        "frames_dropped": str(counts["frames_dropped"]),
        "bad_input_total": str(counts["bad_input_total"]),
        **{f"bad_{k}": str(counts[k]) for k in BAD_INPUT_KINDS},
        "processing_errors": str(counts["processing_error"]),
        "device": device,
        "precision": precision,
        "model": model,
        "intrinsics_from": intrinsics_from,
        "frame_id": frame_id,
    }
    st.values = [KeyValue(key=k, value=v) for k, v in vals.items()]
    return st
