"""``depth-defocus demo``: camera player -> depth_defocus_node -> listener, in one process over DDS.

The player publishes the bundled sample sequence (data/samples: a real photograph with measured
depth, the Middlebury Motorcycle, re-focused at four lens settings; frame_NNN.png + camera.yaml) as
sensor_msgs/Image + CameraInfo; before each frame it sets the node's lens parameters to that
frame's (as a user refocusing the camera would with ``ros2 param set``). The node runs as it would
on a robot (same class, same parameters); the listener subscribes to the node's outputs and writes
what came back into ``--out``: ``depth_NNN.png`` and ``defocus_NNN.png`` (colour previews),
``depth_NNN_mm.png`` (uint16 depth in mm, 0 = not published, like the samples' ground truth),
``points.ply`` (the last point cloud), ``overview.png`` (per frame: input | depth | measured depth
| depth error | defocus, with the numbers) and ``summary.json`` (frames in/out, rate, latency, and
per frame the CoC MAE, AbsRel, delta < 1.25 and coverage against the measured depth).

The player and listener nodes are in :mod:`.demo_nodes`, imported only when the demo runs (the
``depth-defocus`` CLI imports this module, and must work without ROS).

Everything runs in the namespace ``/depth_defocus_demo`` with discovery kept on this machine
(``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` unless set), so it neither sees nor disturbs a robot.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from ..argtypes import positive

__all__ = ["add_demo_parser", "run_demo", "DEMO_NAMESPACE", "load_samples"]

DEMO_NAMESPACE = "/depth_defocus_demo"
OUTPUTS = ("depth/image", "depth/camera_info", "defocus/image", "depth/preview", "defocus/preview", "points")


def add_demo_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``demo`` subcommand to the ``depth-defocus`` CLI."""
    dm = subparsers.add_parser(
        "demo",
        help="ROS 2 demo: sample camera -> depth_defocus_node -> files (one process, real rclpy)",
        description=__doc__.split("\n\n")[1],
    )
    dm.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    dm.add_argument(
        "--model", default=None, help="checkpoint, or 'training-free' (default: the shipped default, models/README.md)"
    )
    dm.add_argument("--device", default="auto", help="auto | cuda | cpu (default: auto)")
    dm.add_argument(
        "--frames",
        type=positive("--frames", int),
        default=4,
        help="frames to publish; the samples repeat (default: 4, one pass)",
    )
    dm.add_argument(
        "--rate",
        type=positive("--rate"),
        default=None,
        help="publishing rate in Hz (default: rate_hz of the samples' camera.yaml)",
    )
    dm.add_argument("--samples", default=None, help="folder with frame_NNN.png and camera.yaml (default: bundled)")
    dm.add_argument("--uncertainty", action="store_true", help="also publish depth/uncertainty")
    dm.add_argument(
        "--max-depth",
        type=positive("--max-depth"),
        default=20.0,
        help="the node's max_depth_m, the far end of the working range (m; default 20)",
    )
    dm.add_argument("--timeout", type=positive("--timeout"), default=300.0, help="give up after this many seconds")
    dm.set_defaults(func=run_demo)
    return dm


def load_samples(folder=None):
    """(list of (name, HxWx3 uint8 RGB, HxW float32 ground-truth depth in m (NaN = unknown) or
    None, Lens), camera dict). The lens of frame i is ``camera.yaml``'s ``frames[i]``, else its
    top-level ``focal_length_mm``, ``f_number``, ``focus_distance_m``."""
    import cv2
    import yaml

    from ..paths import package_share_path

    folder = Path(folder) if folder else package_share_path("data", "samples")
    cam_file = folder / "camera.yaml"
    if not cam_file.is_file():
        raise FileNotFoundError(f"no camera.yaml in {folder} (the demo needs data/samples)")
    cam = yaml.safe_load(cam_file.read_text())
    from ..optics import Lens

    frames = []
    for i, p in enumerate(sorted(folder.glob("frame_[0-9][0-9][0-9].png"))):
        spec = (cam.get("frames") or [])[i] if i < len(cam.get("frames") or []) else cam
        lens = Lens.from_mm(spec["focal_length_mm"], spec["f_number"], spec["focus_distance_m"])
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            raise RuntimeError(f"cannot read {p}")
        gt = cv2.imread(str(p.with_name(p.stem + "_depth.png")), cv2.IMREAD_UNCHANGED)
        gt = None if gt is None else np.where(gt > 0, gt.astype(np.float32) / 1000.0, np.nan).astype(np.float32)
        frames.append((p.stem, np.ascontiguousarray(bgr[:, :, ::-1]), gt, lens))
    if not frames:
        raise FileNotFoundError(f"no frame_NNN.png in {folder}")
    return frames, cam


def run_demo(args) -> int:
    """Run the demo (see module doc); the exit status: 0 when outputs came back before the timeout,
    1 when none came back or it timed out, 130 on Ctrl-C (what arrived is still written)."""
    frames, cam = load_samples(args.samples)
    rate = float(args.rate or cam.get("rate_hz", 5.0))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    from .demo_nodes import create_nodes, wait_for_discovery

    h, w = frames[0][1].shape[:2]
    intr, frame_id = _camera(cam, w, h)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=[])
    nodes = []
    try:
        node, player, listener = create_nodes(
            ctx, nodes, args, frames, cam, rate=rate, intr=intr, frame_id=frame_id, out=out
        )
        executor = SingleThreadedExecutor(context=ctx)
        for n in nodes:
            executor.add_node(n)
        print(
            f"depth-defocus demo: {args.frames} frames of {len(frames)} samples ({w}x{h}) at {rate:g} Hz -> "
            f"{node.get_namespace()}/... ; model {node.model_name} on {node.device} "
            f"({'fp16' if node.half else 'fp32'})",
            flush=True,
        )

        deadline = time.monotonic() + args.timeout
        wait_for_discovery(executor, player, listener)
        player.start()
        interrupted = False
        try:
            _spin_until_done(executor, args, node, player, listener, deadline)
            for _ in range(5):  # outputs still in flight
                executor.spin_once(timeout_sec=0.02)
        except (KeyboardInterrupt, ExternalShutdownException):
            interrupted = True  # Ctrl-C: still write what arrived
        timed_out = time.monotonic() >= deadline
        summary = _summary(args, rate, (w, h), node, player, listener, timed_out)
        summary["interrupted"] = interrupted
        _write_results(out, summary, args, node, listener)
        if interrupted:
            print("interrupted", file=sys.stderr)
            return 130
        return 0 if summary["frames_out"] > 0 and not timed_out else 1
    finally:
        for n in reversed(nodes):
            n.destroy_node()
        rclpy.try_shutdown(context=ctx)


def _camera(cam: dict, w: int, h: int):
    """(Intrinsics, frame_id) of the samples' camera.yaml (w x h px frames; cx, cy default to the centre)."""
    from .pointcloud import Intrinsics

    intr = Intrinsics(
        float(cam["fx"]), float(cam.get("fy", cam["fx"])), float(cam.get("cx", w / 2)), float(cam.get("cy", h / 2))
    )
    return intr, str(cam.get("frame_id", "camera_optical_frame"))


def _write_results(out: Path, summary: dict, args, node, listener) -> None:
    """points.ply (the last point cloud), overview.png and summary.json into ``out``, then the summary
    on stdout; adds ``ply_points`` and ``ply_frame`` to ``summary``."""
    from .conversions import pointcloud2_to_array
    from .pointcloud import unpack_rgb, write_ply

    if listener.last is not None:
        n, name, points_msg = listener.last
        arr = pointcloud2_to_array(points_msg)
        xyz = np.stack([arr["x"], arr["y"], arr["z"]], axis=-1)
        summary["ply_points"] = write_ply(out / "points.ply", xyz, unpack_rgb(arr["rgb"]))
        summary["ply_frame"] = n
    if listener.figures:
        from ..viz import save_overview

        kind = {"reader": "learned blur reader", "network": "multi-task network"}.get(
            node.estimator.kind, "training-free estimate"
        )
        if getattr(node.estimator, "learned_side", False):
            kind += " with its learned side"
        title = f"estimator: {kind} ({node.model_name})"
        save_overview(out / "overview.png", sorted(listener.figures, key=lambda f: f[0]), args.max_depth, title)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _print_summary(summary, out)


def _spin_until_done(executor, args, node, player, listener, deadline) -> None:
    """Spin until every frame is published, processed and its outputs received (or lost), or the deadline."""
    settled_since = None
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
        now = time.monotonic()
        c = node.stats.counts
        all_sent = len(player.sent) >= args.frames and player.t_last is not None
        all_in = c["frames_in"] >= len(player.sent) or (all_sent and now - player.t_last > 2.0)
        if all_sent and all_in and node.idle():
            if len(listener.done) >= c["frames_out"] and not listener.pending:
                return
            settled_since = settled_since or now
            if now - settled_since > 3.0:  # some outputs were lost on the way
                return
        else:
            settled_since = None


def _summary(args, rate, size, node, player, listener, timed_out) -> dict:
    s = node.stats.snapshot()
    done = sorted(listener.done, key=lambda r: r["frame"])
    lat = np.array([r["latency_ms"] for r in done])
    t = sorted(r["t_recv"] for r in done)
    fps = (len(t) - 1) / (t[-1] - t[0]) if len(t) >= 2 and t[-1] > t[0] else math.nan
    abs_rel = [r["abs_rel"] for r in done if "abs_rel" in r]
    for r in done:
        r.pop("t_recv", None)
    return {
        "frames_published": len(player.sent),
        "frames_in": s.get("frames_in", 0),
        "frames_processed": s.get("frames_out", 0),
        "frames_dropped": s.get("frames_dropped", 0),
        "bad_input": s.get("bad_input_total", 0),
        "frames_out": len(done),
        "rate_hz": rate,
        "size": list(size),
        "output_fps": fps,
        "latency_ms_mean": float(lat.mean()) if lat.size else math.nan,
        "latency_ms_p95": float(np.percentile(lat, 95)) if lat.size else math.nan,
        "latency_ms_max": float(lat.max()) if lat.size else math.nan,
        "node_processing_ms_mean": s.get("latency_ms_mean", math.nan),
        "abs_rel_mean": float(np.mean(abs_rel)) if abs_rel else None,
        "coc_mae_mean": float(np.mean(cocs)) if (cocs := [r["coc_mae"] for r in done if "coc_mae" in r]) else None,
        "coverage_mean": float(np.mean([r["coverage"] for r in done if "coverage" in r])) if done else None,
        "model": node.model_name,
        "estimator": node.estimator.kind,
        "learned_side": bool(getattr(node.estimator, "learned_side", False)),
        "device": node.device,
        "precision": "fp16" if node.half else "fp32",
        "timed_out": timed_out,
        "frames": done,
    }


def _print_summary(s: dict, out: Path) -> None:
    print(
        f"frames: published {s['frames_published']}, received by the node {s['frames_in']}, processed "
        f"{s['frames_processed']}, dropped {s['frames_dropped']} (latest frame wins), bad {s['bad_input']}; "
        f"outputs received {s['frames_out']}"
    )
    print(
        f"rate: {s['output_fps']:.2f} fps out at {s['rate_hz']:g} Hz in; latency camera stamp -> points received: "
        f"mean {s['latency_ms_mean']:.0f} ms, p95 {s['latency_ms_p95']:.0f} ms "
        f"(node processing {s['node_processing_ms_mean']:.0f} ms)"
    )
    if s["coc_mae_mean"] is not None:
        absrel = "-" if s["abs_rel_mean"] is None else f"{s['abs_rel_mean']:.3f}"
        print(
            f"against the measured depth: CoC MAE {s['coc_mae_mean']:.2f} px; AbsRel {absrel} on the published "
            f"pixels ({s['coverage_mean']:.0%} of the valid pixels on average)"
        )
    if s["timed_out"]:
        print("warning: timed out before all outputs arrived", file=sys.stderr)
    ply = f" ({s['ply_points']} points)" if s.get("ply_points") else ""
    print(
        f"wrote {out}/: depth_NNN.png, depth_NNN_mm.png, defocus_NNN.png, points.ply{ply}, overview.png, summary.json"
    )
