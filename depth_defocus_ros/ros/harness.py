"""The harness shared by the ROS tests and the node benchmarks (``scripts/bench_node.py``,
``scripts/bench_transport.py``): an rclpy context spun by an executor thread, stopping a ROS process
as Ctrl-C does, waiting for a condition, reading diagnostics. What only the tests use (the test
camera, parameter clients, estimators with known output) is in ``test/ros_helpers.py``.

Everything here talks real DDS (rclpy with the installed RMW); nothing is mocked.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy

__all__ = [
    "RosHarness",
    "wait_until",
    "diag_values",
    "stop_process",
]

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


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
