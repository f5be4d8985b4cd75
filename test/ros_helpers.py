"""ROS test helpers that only the tests use: a camera node that publishes frames like a driver and
records a node's outputs, parameter service clients (as ``ros2 param`` uses them) and estimators with
known output. The harness shared with the benchmarks is :mod:`depth_defocus_ros.ros.harness`."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from depth_defocus_ros.estimate.estimator import Prediction
from depth_defocus_ros.ros.conversions import camera_info_from_intrinsics, numpy_to_image
from depth_defocus_ros.ros.harness import RELIABLE, diag_values, wait_until
from depth_defocus_ros.ros.node import OUTPUT_TOPICS
from depth_defocus_ros.ros.pointcloud import Intrinsics


def stamp_ns(header) -> int:
    return header.stamp.sec * 10**9 + header.stamp.nanosec


def camera(harness, namespace: str = "", name: str = "test_camera", compressed: bool = False):
    """A :class:`Camera` added to ``harness`` (spun by its executor)."""
    return harness.add(Camera(name, namespace, harness.context, compressed))


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


def _param_client(node: Node, target: str, timeout: float):
    """One AsyncParameterClient per (node, target), kept on the node (clients live as long as it)."""
    from rclpy.parameter_client import AsyncParameterClient

    clients = node.__dict__.setdefault("_test_param_clients", {})
    if target not in clients:
        clients[target] = AsyncParameterClient(node, target)
    client = clients[target]
    if not client.wait_for_services(timeout):
        raise TimeoutError(f"parameter services of {target} not available")
    return client


def _result(fut, what: str, timeout: float):
    if not wait_until(fut.done, timeout):
        raise TimeoutError(f"{what} timed out")
    return fut.result()


def set_parameters(node: Node, target: str, timeout: float = 10.0, **values):
    """Set parameters of the node ``target`` (fully qualified name) one by one through its
    SetParameters service, as ``ros2 param set`` does; return the list of SetParametersResult."""
    client = _param_client(node, target, timeout)
    fut = client.set_parameters([Parameter(k, value=v) for k, v in values.items()])
    return list(_result(fut, f"set_parameters on {target}", timeout).results)


def get_parameters(node: Node, target: str, names, timeout: float = 10.0) -> dict:
    """``{name: python value}`` read through the node's GetParameters service."""
    from rclpy.parameter import parameter_value_to_python

    names = list(names)
    fut = _param_client(node, target, timeout).get_parameters(names)
    values = _result(fut, f"get_parameters on {target}", timeout).values
    return {n: parameter_value_to_python(v) for n, v in zip(names, values)}


def list_parameters(node: Node, target: str, timeout: float = 10.0) -> list[str]:
    fut = _param_client(node, target, timeout).list_parameters()
    return list(_result(fut, f"list_parameters on {target}", timeout).result.names)


@dataclass
class PlaneEstimator:
    """An estimator whose depth is the plane ``normal . X = distance`` seen through ``intr``
    (at the resolution it was built for): the point cloud of it must lie on that plane."""

    intr: Intrinsics
    normal: tuple = (0.0, 0.0, 1.0)
    distance: float = 2.0
    device: str = "cpu"
    half: bool = False
    path: str = "plane"
    max_depth_m: float = 100.0

    def depth(self, h: int, w: int) -> np.ndarray:
        n = np.asarray(self.normal, float) / np.linalg.norm(self.normal)
        u, v = np.meshgrid(np.arange(w), np.arange(h))
        ray = np.stack([(u - self.intr.cx) / self.intr.fx, (v - self.intr.cy) / self.intr.fy, np.ones((h, w))], -1)
        return (self.distance / (ray @ n)).astype(np.float32)

    def predict(self, rgb, lens, fx, uncertainty=False, **depth_options):
        self.last_options = depth_options
        h, w = rgb.shape[:2]
        d = self.depth(h, w)
        return Prediction(depth=d, defocus=np.ones_like(d), uncertainty=np.full_like(d, 0.01) if uncertainty else None)


@dataclass
class SlowEstimator:
    """Constant depth after ``delay_s`` (a model slower than the camera)."""

    delay_s: float = 0.3
    device: str = "cpu"
    half: bool = False
    path: str = "slow"
    calls: int = 0

    def predict(self, rgb, lens, fx, uncertainty=False, **depth_options):
        self.calls += 1
        time.sleep(self.delay_s)
        d = np.full(rgb.shape[:2], 1.5, np.float32)
        return Prediction(depth=d, defocus=np.zeros_like(d), uncertainty=None)
