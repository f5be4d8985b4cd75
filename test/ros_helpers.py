"""ROS test helpers that only the tests use: parameter service clients (as ``ros2 param`` uses them)
and estimators with known output. The harness shared with the benchmarks is
:mod:`depth_defocus_ros.ros.harness`."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from rclpy.node import Node
from rclpy.parameter import Parameter

from depth_defocus_ros.estimate.estimator import Prediction
from depth_defocus_ros.ros.harness import wait_until
from depth_defocus_ros.ros.pointcloud import Intrinsics


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
