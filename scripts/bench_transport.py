#!/usr/bin/env python3
"""How many frames reach depth_defocus_node, and how many of its outputs reach a subscriber, over
DDS between three processes: a camera, the node and a listener, as on a robot.

For each transport setting, image size and camera rate it starts the node, a listener and a camera
(each its own process), publishes rgb8 frames + CameraInfo for ``--duration`` seconds and reports:

* input loss: 1 - frames the node received (its diagnostics ``frames_in``) / frames the camera sent;
* output loss per output topic: 1 - messages a subscriber received / messages the node published
  (diagnostics ``frames_out``), for a best-effort subscriber (as ``ros2 topic hz`` and RViz's
  "Best Effort") and a reliable one (RViz's default);
* the rates: camera, node input, node output.

Settings:

* ``default``: Fast DDS as installed, the node's sensor-data QoS (best effort);
* ``reliable``: the node subscribes with ``reliable_qos:=true``;
* ``profile``: every process with ``FASTDDS_DEFAULT_PROFILES_FILE=config/fastdds_large_frames.xml``
  (what the launch argument ``large_frames:=true`` gives the node; the camera gets it from its
  environment);
* ``profile+reliable``: both;
* ``node-profile``: the profile for the node only (``large_frames:=true`` with a camera driver
  started without the file); ``node-profile+reliable``: and ``reliable_qos:=true``.

    python scripts/bench_transport.py --sizes 640x480,1280x720 --rates 15,30 --duration 10

DDS stays on this machine (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, a domain of its own).
The node runs the shipped default estimator; its processing rate bounds its output rate, not the
losses measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PROFILE = ROOT / "config" / "fastdds_large_frames.xml"
MEASURED_TOPICS = ("depth/image", "defocus/image", "points")
SETTINGS = {  # (who gets the profile file: nobody, the node only, every process; reliable_qos)
    "default": ("", False),
    "reliable": ("", True),
    "profile": ("all", False),
    "profile+reliable": ("all", True),
    "node-profile": ("node", False),
    "node-profile+reliable": ("node", True),
}


def camera(args) -> int:
    """Role ``camera``: wait for the node's subscription, publish for ``--duration`` s at
    ``--rate`` Hz, print {"sent": n}."""
    import numpy as np
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    from depth_defocus_ros.ros.conversions import camera_info_from_intrinsics, numpy_to_image
    from depth_defocus_ros.ros.pointcloud import Intrinsics

    w, h = (int(v) for v in args.size.split("x"))
    rclpy.init(args=[])
    node = rclpy.create_node("bench_camera")
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)  # as most drivers publish
    pub, pub_info = node.create_publisher(Image, "image", qos), node.create_publisher(CameraInfo, "camera_info", qos)
    t_wait = time.monotonic() + 120.0
    while pub.get_subscription_count() == 0 and time.monotonic() < t_wait:
        rclpy.spin_once(node, timeout_sec=0.1)
    time.sleep(1.0)  # let discovery settle (matched both ways)
    rng = np.random.default_rng(0)
    msgs = [numpy_to_image(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "rgb8") for _ in range(4)]
    info = camera_info_from_intrinsics(Intrinsics(0.9 * w, 0.9 * w, w / 2, h / 2), w, h)
    period, t0, k = 1.0 / args.rate, time.monotonic(), 0
    while time.monotonic() < t0 + args.duration:
        t_next = t0 + k * period
        if t_next > time.monotonic():
            time.sleep(t_next - time.monotonic())
        m = msgs[k % len(msgs)]
        m.header.stamp = node.get_clock().now().to_msg()
        m.header.frame_id = "camera_optical_frame"
        info.header = m.header
        pub_info.publish(info)
        pub.publish(m)
        k += 1
    print(json.dumps({"sent": k, "seconds": time.monotonic() - t0}), flush=True)
    time.sleep(1.0)  # reliable writers: let the last samples go out before the participant ends
    node.destroy_node()
    rclpy.shutdown()
    return 0


def listener(args) -> int:
    """Role ``listener``: count each output per QoS and keep the node's last diagnostics until
    SIGINT; then print them as JSON."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    from depth_defocus_ros.ros.harness import diag_values
    from depth_defocus_ros.ros.node import OUTPUT_TOPICS

    rclpy.init(args=[])
    node = rclpy.create_node("bench_listener")
    counts = {f"{q}:{t}": 0 for q in ("best_effort", "reliable") for t in MEASURED_TOPICS}
    diag = {}

    def count(key):
        def on(_msg):
            counts[key] += 1

        return on

    qos = {
        "best_effort": qos_profile_sensor_data,
        "reliable": QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE),
    }
    for key in counts:
        q, topic = key.split(":")
        node.create_subscription(OUTPUT_TOPICS[topic], topic, count(key), qos[q])

    def on_diag(msg):
        for st in msg.status:
            if st.name.startswith("/depth_defocus_node"):
                diag.update(diag_values(st))

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    print(json.dumps({"counts": counts, "diag": diag}), flush=True)
    return 0


def run_case(setting: str, size: str, rate: float, args, domain: int, logdir: Path) -> dict:
    from depth_defocus_ros.ros.harness import stop_process  # no DDS participant in this process

    profile_for, reliable = SETTINGS[setting]
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    node_env = dict(env, FASTDDS_DEFAULT_PROFILES_FILE=str(PROFILE)) if profile_for else env
    if profile_for == "all":
        env = node_env
    tag = f"{setting}_{size}_{rate:g}".replace("+", "_")
    me = [sys.executable, str(Path(__file__).resolve())]
    node_cmd = [sys.executable, "-m", "depth_defocus_ros.ros.node", "--ros-args", "-p", "diagnostics_period_s:=0.5"]
    node_cmd += ["-p", f"reliable_qos:={'true' if reliable else 'false'}"]
    if args.model:
        node_cmd += ["-p", f"model_path:={args.model}"]
    procs = []
    try:
        with open(logdir / f"node_{tag}.log", "w") as log:
            node = subprocess.Popen(node_cmd, env=node_env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        procs.append(node)
        lis = subprocess.Popen([*me, "--role", "listener"], env=env, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        procs.append(lis)
        cam_cmd = [*me, "--role", "camera", "--size", size, "--rate", str(rate), "--duration", str(args.duration)]
        cam = subprocess.run(cam_cmd, env=env, capture_output=True, text=True, cwd=ROOT, timeout=args.duration + 200)
        if cam.returncode != 0:
            raise RuntimeError(f"camera failed: {cam.stderr[-2000:]}")
        sent = json.loads(cam.stdout.strip().splitlines()[-1])
        time.sleep(3.0)  # the node finishes its last frame; two diagnostics periods pass
        lis.send_signal(signal.SIGINT)
        got = json.loads(lis.communicate(timeout=30)[0].strip().splitlines()[-1])
    finally:
        for p in procs:
            stop_process(p)
    d = got["diag"]
    frames_in, frames_out = int(d.get("frames_in", 0)), int(d.get("frames_out", 0))
    res = {
        "setting": setting,
        "size": size,
        "camera_hz": rate,
        "sent": sent["sent"],
        "node_in": frames_in,
        "node_out": frames_out,
        "input_loss": 1.0 - frames_in / max(sent["sent"], 1),
        "node_in_hz": frames_in / sent["seconds"],
        "node_out_hz": frames_out / sent["seconds"],
    }
    for key, n in got["counts"].items():
        res[f"loss {key}"] = 1.0 - n / frames_out if frames_out else None
    return res


def pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.0f} %"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--role", choices=["bench", "camera", "listener"], default="bench", help=argparse.SUPPRESS)
    p.add_argument("--size", default="640x480", help=argparse.SUPPRESS)
    p.add_argument("--rate", type=float, default=15.0, help=argparse.SUPPRESS)
    p.add_argument("--sizes", default="640x480,1280x720")
    p.add_argument("--rates", default="15,30", help="camera rates (Hz)")
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"comma list of {', '.join(SETTINGS)}")
    p.add_argument("--duration", type=float, default=10.0, help="seconds the camera publishes per case")
    p.add_argument("--model", default=None, help="node model_path (default: the shipped default)")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.role == "camera":
        return camera(args)
    if args.role == "listener":
        return listener(args)

    logdir = Path(tempfile.mkdtemp(prefix="bench_transport_"))
    domain = 1 + (int(os.environ.get("ROS_DOMAIN_ID", "0")) + 71) % 100
    print(f"logs in {logdir}; domain {domain}", flush=True)
    results = []
    for setting in args.settings.split(","):
        for size in args.sizes.split(","):
            for rate in (float(r) for r in args.rates.split(",")):
                r = run_case(setting, size, rate, args, domain, logdir)
                results.append(r)
                print(
                    f"{setting:17s} {size:>9s} {rate:4.0f} Hz: sent {r['sent']}, node in {r['node_in']} "
                    f"({r['node_in_hz']:.1f} Hz, loss {pct(r['input_loss'])}), out {r['node_out']} "
                    f"({r['node_out_hz']:.1f} Hz); output loss best effort / reliable: "
                    + ", ".join(
                        f"{t} {pct(r[f'loss best_effort:{t}'])} / {pct(r[f'loss reliable:{t}'])}"
                        for t in MEASURED_TOPICS
                    ),
                    flush=True,
                )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    head = "| setting | size | camera | node input | input loss | node output | " + " | ".join(
        f"{t} loss (best effort / reliable)" for t in MEASURED_TOPICS
    )
    print("\n" + head + " |\n" + "|" + " --- |" * (6 + len(MEASURED_TOPICS)))
    for r in results:
        print(
            f"| {r['setting']} | {r['size']} | {r['camera_hz']:.0f} Hz | {r['node_in_hz']:.1f} Hz | "
            f"{pct(r['input_loss'])} | {r['node_out_hz']:.1f} Hz | "
            + " | ".join(f"{pct(r[f'loss best_effort:{t}'])} / {pct(r[f'loss reliable:{t}'])}" for t in MEASURED_TOPICS)
            + " |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
