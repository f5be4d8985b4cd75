"""The harness of the ROS tests and the node benchmarks (``scripts/bench_node.py``,
``scripts/bench_transport.py``): a context with an executor thread, a 'camera' node that publishes
frames and collects a node's outputs, process stopping and diagnostics reading. Helpers that only the
tests use (parameter clients, estimators with known output) are in ``test/ros_helpers.py``.

Everything here talks real DDS (rclpy with the installed RMW); nothing is mocked.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections import defaultdict

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from .conversions import camera_info_from_intrinsics, numpy_to_image
from .node import OUTPUT_TOPICS
from .pointcloud import Intrinsics

__all__ = [
    "RosHarness",
    "Camera",
    "stamp_ns",
    "wait_until",
    "diag_values",
    "stop_process",
]

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def stamp_ns(header) -> int:
    return header.stamp.sec * 10**9 + header.stamp.nanosec


def diag_values(status) -> dict:
    return {kv.key: kv.value for kv in status.values}


class RosHarness:
    """An rclpy context (its own domain if given) spun by an executor on a background thread."""

    def __init__(self, domain_id: int | None = None):
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id, args=[])
        self.executor = SingleThreadedExecutor(context=self.context)
        self.nodes: list = []
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self):
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - shutting down
            pass

    def add(self, node):
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def camera(self, namespace: str = "", name: str = "test_camera", compressed: bool = False) -> Camera:
        return self.add(Camera(name, namespace, self.context, compressed))

    def close(self):
        self.executor.shutdown(timeout_sec=2.0)
        for n in reversed(self.nodes):
            n.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)


def stop_process(proc: subprocess.Popen, timeout: float = 20.0) -> int:
    """Stop a ROS process as Ctrl-C does (SIGINT), kill it after ``timeout`` s; its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def wait_until(pred, timeout: float = 10.0, period: float = 0.01) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(period)
    return bool(pred())


class Camera(Node):
    """Publishes Image / CompressedImage + CameraInfo like a driver; records every output of a
    depth_defocus_node in the same namespace, keyed by topic and input stamp."""

    def __init__(self, name: str, namespace: str, context, compressed: bool = False):
        super().__init__(name, namespace=namespace or None, context=context)
        self.pub_image = self.create_publisher(Image, "image", RELIABLE)
        self.pub_compressed = self.create_publisher(CompressedImage, "image/compressed", RELIABLE)
        self.pub_info = self.create_publisher(CameraInfo, "camera_info", RELIABLE)
        self._lock = threading.Lock()
        self.received: dict[str, dict[int, object]] = defaultdict(dict)  # topic -> stamp -> msg
        self.recv_time: dict[str, dict[int, float]] = defaultdict(dict)  # topic -> stamp -> ROS time (s)
        self.diagnostics: list = []
        self.subs = {}
        for topic, t in OUTPUT_TOPICS.items():
            self.subs[topic] = self.create_subscription(t, topic, lambda m, tp=topic: self._on(tp, m), RELIABLE)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, RELIABLE)
        self._last_stamp = 0

    def _on(self, topic, msg):
        t = self.get_clock().now().nanoseconds * 1e-9
        with self._lock:
            self.received[topic][stamp_ns(msg.header)] = msg
            self.recv_time[topic][stamp_ns(msg.header)] = t

    def _on_diag(self, msg):
        with self._lock:
            self.diagnostics.extend(msg.status)

    def connected(self, topics=("points",), node_count: int = 1) -> bool:
        ok = self.pub_image.get_subscription_count() + self.pub_compressed.get_subscription_count() >= node_count
        return ok and all(self.subs[t].get_publisher_count() >= node_count for t in topics)

    def wait_connected(self, timeout: float = 10.0, **kw) -> bool:
        return wait_until(lambda: self.connected(**kw), timeout)

    def next_stamp(self):
        """A fresh, strictly increasing stamp (now)."""
        now = self.get_clock().now().nanoseconds
        self._last_stamp = max(now, self._last_stamp + 1000)
        return Time(nanoseconds=self._last_stamp).to_msg()

    def send(
        self,
        rgb=None,
        frame_id="cam",
        intr: Intrinsics | None = None,
        info: CameraInfo | None = None,
        image: Image | CompressedImage | None = None,
        encoding: str = "rgb8",
    ) -> int:
        """Publish CameraInfo (``info``, or one from ``intr``; none if both are None) then the frame
        (``image`` as given, or ``rgb`` encoded); return the stamp (ns) both carry."""
        if image is None:
            image = numpy_to_image(rgb if encoding == "rgb8" else rgb[..., ::-1], encoding)
        stamp = self.next_stamp()
        image.header.stamp = stamp
        image.header.frame_id = frame_id
        if info is None and intr is not None:
            h, w = rgb.shape[:2] if rgb is not None else (image.height, image.width)
            info = camera_info_from_intrinsics(intr, w, h)
        if info is not None:
            info.header.stamp = stamp
            if not info.header.frame_id:
                info.header.frame_id = frame_id
            self.pub_info.publish(info)
            time.sleep(0.01)  # let the CameraInfo arrive first, as a driver's usually does
        (self.pub_compressed if isinstance(image, CompressedImage) else self.pub_image).publish(image)
        return stamp_ns(image.header)

    def get(self, topic: str, stamp: int):
        with self._lock:
            return self.received[topic].get(stamp)

    def wait_outputs(self, stamp: int, topics=("depth/image", "points"), timeout: float = 15.0) -> dict | None:
        ok = wait_until(lambda: all(self.get(t, stamp) is not None for t in topics), timeout)
        return {t: self.get(t, stamp) for t in topics} if ok else None

    def latest_diag(self, node_fqn: str) -> dict | None:
        with self._lock:
            for st in reversed(self.diagnostics):
                if st.name.startswith(node_fqn + ":"):
                    return diag_values(st)
        return None

    def wait_diag(self, node_fqn: str, pred, timeout: float = 10.0) -> dict | None:
        """The first /diagnostics values of ``node_fqn`` for which ``pred(values)`` holds."""
        found = {}

        def check():
            v = self.latest_diag(node_fqn)
            if v is not None and pred(v):
                found["v"] = v
                return True
            return False

        return found.get("v") if wait_until(check, timeout, 0.02) else None
