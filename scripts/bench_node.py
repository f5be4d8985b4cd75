#!/usr/bin/env python3
"""End-to-end benchmark of depth_defocus_node with real DDS between processes.

The node runs as its own process (``python -m depth_defocus_ros.ros.node``); this process is the
camera (publishes Image rgb8 + CameraInfo at ``--rate`` Hz, the bundled samples resized to each
size) and the consumer (subscribes to ``points``, and with ``--all-outputs`` to every output).
For each device and size it reports, over ``--duration`` seconds after a warm-up:

* latency: camera stamp (set just before publishing) -> ``points`` received here, mean / p50 / p95 / max
* sustained output rate (``points`` messages per second) and dropped frames (latest frame wins)

    python scripts/bench_node.py                      # CPU (and CUDA when present), 320x240 and 640x480
    python scripts/bench_node.py --devices cuda --sizes 640x480 --rate 30 --duration 20

Without ``--model`` it uses the shipped default estimator (a checkpoint, or the training-free
estimator; models/README.md). The node's diagnostics say where a frame's time goes: decode,
estimate (``Estimator.predict``) and publish (conversions, point cloud, DDS), mean ms per frame.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# Fast DDS sends a sample that does not fit its shared-memory segment (default 0.5 MB) over UDP in
# fragments, and a best-effort reader loses most of a 640x480 rgb8 frame's fragments. The camera
# process uses the shipped large-frames profile (as docs/ros_node.md tells a camera driver to), so
# that this benchmark measures the node, not the transport (scripts/bench_transport.py does that).
CAMERA_PROFILE = ROOT / "config" / "fastdds_large_frames.xml"


def run_one(model: str, device: str, size: tuple, args, domain: int, logdir: Path) -> dict:
    import rclpy  # noqa: F401 - fail early without the ROS 2 wheels
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from depth_defocus_ros.ros.conversions import camera_info_from_intrinsics, numpy_to_image
    from depth_defocus_ros.ros.demo import load_samples
    from depth_defocus_ros.ros.harness import RosHarness, diag_values, stop_process, wait_until
    from depth_defocus_ros.ros.node import OUTPUT_TOPICS
    from depth_defocus_ros.ros.pointcloud import Intrinsics

    w, h = size
    frames, cam = load_samples()
    import cv2

    imgs = [np.ascontiguousarray(cv2.resize(f[1], (w, h), interpolation=cv2.INTER_AREA)) for f in frames]
    scale = w / frames[0][1].shape[1]
    intr = Intrinsics(cam["fx"] * scale, cam["fy"] * scale, w / 2, h / 2)

    env = dict(
        os.environ,
        ROS_DOMAIN_ID=str(domain),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)  # the node runs with the default transports
    log_path = logdir / f"node_{device}_{w}x{h}.log"
    log = open(log_path, "w")  # closed below
    lens = frames[0][3]
    cmd = [
        sys.executable,
        "-m",
        "depth_defocus_ros.ros.node",
        "--ros-args",
        "-p",
        f"model_path:={model}",
        "-p",
        f"device:={device}",
        "-p",
        f"focal_length_mm:={lens.focal_length_m * 1000.0}",
        "-p",
        f"f_number:={lens.f_number}",
        "-p",
        f"focus_distance_m:={lens.focus_distance_m}",
        "-p",
        f"publish_points:={'false' if args.no_points else 'true'}",
        "-p",
        f"reliable_qos:={'true' if args.reliable else 'false'}",
        "-p",
        "diagnostics_period_s:=0.5",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    harness = RosHarness(domain_id=domain)
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    lock = threading.Lock()
    recv: dict[int, float] = {}
    diags: list = []
    out_topic = "depth/image" if args.no_points else "points"

    class Bench(Node):
        def __init__(self):
            super().__init__("bench_camera", context=harness.context)
            self.pub_image = self.create_publisher(Image, "image", reliable)
            self.pub_info = self.create_publisher(CameraInfo, "camera_info", reliable)
            topics = OUTPUT_TOPICS if args.all_outputs else {out_topic: OUTPUT_TOPICS[out_topic]}
            self.subs = [
                self.create_subscription(t, name, (self.on_out if name == out_topic else lambda m: None), reliable)
                for name, t in topics.items()
            ]
            self.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diags.extend(m.status), 10)

        def on_out(self, msg: PointCloud2):
            t = self.get_clock().now().nanoseconds
            with lock:
                recv[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = t

    try:
        bench = harness.add(Bench())
        if not wait_until(
            lambda: (
                bench.pub_image.get_subscription_count() > 0 and all(s.get_publisher_count() > 0 for s in bench.subs)
            ),
            120.0,
        ):
            raise RuntimeError(f"node did not come up; see {log_path}")
        msgs = [numpy_to_image(im, "rgb8") for im in imgs]
        info = camera_info_from_intrinsics(intr, w, h)
        period = 1.0 / args.rate
        sent: list[tuple[int, bool]] = []  # (stamp ns, measured)
        t0 = time.monotonic()
        t_end_warm = t0 + args.warmup
        t_end = t_end_warm + args.duration
        k = 0
        while True:
            now = time.monotonic()
            if now >= t_end:
                break
            t_next = t0 + k * period
            if t_next > now:
                time.sleep(t_next - now)
            m = msgs[k % len(msgs)]
            stamp = bench.get_clock().now().to_msg()
            m.header.stamp = stamp
            m.header.frame_id = "camera_optical_frame"
            info.header = m.header
            bench.pub_info.publish(info)
            bench.pub_image.publish(m)
            sent.append((stamp.sec * 10**9 + stamp.nanosec, t_next >= t_end_warm))
            k += 1
        time.sleep(max(2.0, 3 * period))  # let the last outputs arrive
        measured = [s for s, m in sent if m]
        with lock:
            lat = np.array([(recv[s] - s) * 1e-6 for s in measured if s in recv])  # ms
        node_diag = next((diag_values(st) for st in reversed(diags) if st.name.startswith("/depth_defocus_node")), {})
        n_in = len(measured)
        node_in = int(node_diag.get("frames_in", -1))
        res = {
            "device": device,
            "size": f"{w}x{h}",
            "input_hz": args.rate,
            "duration_s": args.duration,
            "frames_published": n_in,
            "frames_out": int(lat.size),
            "frames_dropped": n_in - int(lat.size),
            "output_hz": lat.size / args.duration,
            "latency_ms_mean": float(lat.mean()) if lat.size else None,
            "latency_ms_p50": float(np.percentile(lat, 50)) if lat.size else None,
            "latency_ms_p95": float(np.percentile(lat, 95)) if lat.size else None,
            "latency_ms_max": float(lat.max()) if lat.size else None,
            "node_precision": node_diag.get("precision"),
            "node_device": node_diag.get("device"),
            "all_frames_published": len(sent),
            "all_frames_received_by_node": node_in,
            "node_qos": "reliable" if args.reliable else "sensor-data (best effort)",
            "camera_shm_profile": not args.no_camera_profile,
            "outputs": "all" if args.all_outputs else out_topic,
            **{k: float(v) for k, v in node_diag.items() if k.startswith("stage_ms_")},
        }
        return res
    finally:
        harness.close()
        stop_process(proc, 30.0)
        log.close()


def main(argv=None) -> int:
    from depth_defocus_ros.ros.stats import STAGES

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="checkpoint or 'training-free' (default: the shipped default)")
    p.add_argument("--devices", default=None, help="comma list (default: cpu, and cuda when present)")
    p.add_argument("--sizes", default="320x240,640x480")
    p.add_argument("--rate", type=float, default=30.0, help="camera rate (Hz)")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds published before measuring")
    p.add_argument("--all-outputs", action="store_true", help="also subscribe to every other output")
    p.add_argument("--no-points", action="store_true", help="publish_points=false; latency to depth/image")
    p.add_argument("--reliable", action="store_true", help="node subscribes with reliable_qos=true")
    p.add_argument(
        "--no-camera-profile",
        action="store_true",
        help="camera with Fast DDS's default transports (large best-effort frames get lost)",
    )
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    tmp = Path(tempfile.mkdtemp(prefix="bench_node_"))
    if not args.no_camera_profile:  # before rclpy creates this process' participant
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(CAMERA_PROFILE)
    import torch

    from depth_defocus_ros.paths import default_model_path

    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    model = model_note = str(args.model or default_model_path())
    print(f"model: {model_note}; logs in {tmp}", flush=True)
    domain = 1 + (int(os.environ.get("ROS_DOMAIN_ID", "0")) + 53) % 100
    results = []
    for dev in devices:
        for size in sizes:
            r = run_one(model, dev, size, args, domain, tmp)
            r["model"] = model_note
            results.append(r)
            lat = (
                "n/a"
                if r["latency_ms_mean"] is None
                else (
                    f"mean {r['latency_ms_mean']:.0f} / p50 {r['latency_ms_p50']:.0f} / "
                    f"p95 {r['latency_ms_p95']:.0f} / max {r['latency_ms_max']:.0f} ms"
                )
            )
            print(
                f"{dev:5s} {r['size']:>8s} in {r['input_hz']:.0f} Hz: out {r['output_hz']:5.2f} Hz, dropped "
                f"{r['frames_dropped']}/{r['frames_published']}, latency {lat}; node received "
                f"{r['all_frames_received_by_node']} of {r['all_frames_published']} frames; per frame: "
                + ", ".join(f"{k} {r.get(f'stage_ms_{k}', float('nan')):.0f} ms" for k in STAGES),
                flush=True,
            )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(
        "\n| device | size | input | output rate | not processed | latency mean | p50 | p95 | max | reached node "
        "| decode | read blur | depth | publish |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        f = lambda k, r=r: "n/a" if r[k] is None else f"{r[k]:.0f} ms"
        print(
            f"| {r['device']} ({r['node_precision']}) | {r['size']} | {r['input_hz']:.0f} Hz | "
            f"{r['output_hz']:.2f} Hz | {r['frames_dropped']}/{r['frames_published']} | {f('latency_ms_mean')} | "
            f"{f('latency_ms_p50')} | {f('latency_ms_p95')} | {f('latency_ms_max')} | "
            f"{r['all_frames_received_by_node']}/{r['all_frames_published']} | "
            + " | ".join(f"{r.get(f'stage_ms_{k}', float('nan')):.0f} ms" for k in STAGES)
            + " |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
