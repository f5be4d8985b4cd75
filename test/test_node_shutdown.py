"""Ctrl-C as a ROS user gives it: the node as its own process gets SIGINT / SIGTERM in the
sequences a terminal and launch send (one, two or three signals in quick succession, to the node
alone or to its whole process group), idle or under a 30 Hz camera over real DDS. Every run must
end with exit status 0, no traceback, and no process left.

Each pattern runs ``DEPTH_DEFOCUS_SHUTDOWN_REPEAT`` times (default 2: CI time); the 20-repetition
run reported in the issue note is ``DEPTH_DEFOCUS_SHUTDOWN_REPEAT=20 pytest test/test_node_shutdown.py``.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy", reason="needs the ROS 2 wheels (pip install -r requirements.txt)")

import ros_helpers  # noqa: E402

from depth_defocus_ros.ros.harness import RosHarness  # noqa: E402
from depth_defocus_ros.ros.pointcloud import Intrinsics  # noqa: E402
from depth_defocus_ros.ros.signals import StopSignals  # noqa: E402

pytestmark = pytest.mark.slow  # each run starts a Python + torch process

ROOT = Path(__file__).resolve().parent.parent
REPEAT = int(os.environ.get("DEPTH_DEFOCUS_SHUTDOWN_REPEAT", "2"))
W, H = 320, 240
RGB = np.ascontiguousarray(cv2.resize(cv2.imread(str(ROOT / "data/samples/frame_001.png")), (W, H))[:, :, ::-1])
INTR = Intrinsics(300.0, 300.0, 160.0, 120.0)

# (delay before the signal in s, signal, "node" = to the node's pid, "group" = to its process group)
PATTERNS = {
    "sigint": [(0.0, signal.SIGINT, "node")],
    "sigterm": [(0.0, signal.SIGTERM, "node")],
    # a terminal's Ctrl-C reaches the whole group, then launch forwards its own SIGINT
    "terminal_then_launch": [(0.0, signal.SIGINT, "group"), (0.02, signal.SIGINT, "node")],
    "three_sigint_group": [
        (0.0, signal.SIGINT, "group"),
        (0.01, signal.SIGINT, "group"),
        (0.01, signal.SIGINT, "group"),
    ],
    # launch escalates SIGINT -> SIGTERM
    "sigint_then_sigterm": [(0.0, signal.SIGINT, "node"), (0.05, signal.SIGTERM, "node")],
}


def _domain() -> int:
    return 1 + (int(os.environ.get("ROS_DOMAIN_ID", "0")) + 53) % 100


def _start_node(dom: int) -> tuple[subprocess.Popen, list]:
    env = dict(
        os.environ,
        ROS_DOMAIN_ID=str(dom),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        PYTHONUNBUFFERED="1",
        PYTHONFAULTHANDLER="1",
    )
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    cmd = [sys.executable, "-m", "depth_defocus_ros.ros.node", "--ros-args", "-p", "model_path:=training-free"]
    # its own session: the process group a terminal would have, without this test in it
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    lines: list = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    return proc, lines


def _wait_ready(proc, lines, timeout=60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if any("ready:" in line for line in lines):
            return
        time.sleep(0.05)
    raise AssertionError("node did not start:\n" + "".join(lines)[-3000:])


def _wait_or_dump(proc, lines, timeout: float) -> int:
    """The node's exit status; a node still running after ``timeout`` s fails the test with every
    thread's stack (faulthandler, enabled in the node by PYTHONFAULTHANDLER, dumps them on SIGABRT)."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        try:
            proc.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            pass
        time.sleep(0.5)  # the reader thread collects the dump
        raise AssertionError(
            f"node still running {timeout:g} s after the signals; its stacks:\n" + "".join(lines)[-8000:]
        ) from None


@pytest.fixture(scope="module")
def harness():
    h = RosHarness(domain_id=_domain())
    yield h
    h.close()


@pytest.mark.parametrize("camera", [False, True], ids=["idle", "camera_30hz"])
@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_shutdown_is_clean_whatever_the_signals(harness, pattern, camera):
    cam = ros_helpers.camera(harness, name=f"cam_{pattern}_{int(camera)}") if camera else None
    for rep in range(REPEAT):
        proc, lines = _start_node(_domain())
        stop_camera = threading.Event()
        publisher = None
        try:
            _wait_ready(proc, lines)
            if cam is not None:

                def publish(stop_camera=stop_camera):
                    while not stop_camera.is_set():
                        cam.send(RGB, intr=INTR)
                        time.sleep(1 / 30)

                publisher = threading.Thread(target=publish, daemon=True)
                publisher.start()
                time.sleep(1.0)  # frames are flowing and being processed
            for delay, sig, target in PATTERNS[pattern]:
                time.sleep(delay)
                os.killpg(proc.pid, sig) if target == "group" else proc.send_signal(sig)
            rc = _wait_or_dump(proc, lines, timeout=30.0)
        finally:
            stop_camera.set()
            if publisher is not None:
                publisher.join(timeout=5.0)  # before the next run or the harness's teardown
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out = "".join(lines)
        assert rc == 0, f"{pattern} run {rep}: exit {rc}\n{out[-3000:]}"
        assert "Traceback" not in out and "KeyboardInterrupt" not in out, f"{pattern} run {rep}:\n{out[-3000:]}"
        # the lens and its source, once, and the warning that it is the params file's default
        assert out.count("lens: focal_length_mm=35 (default)") == 1 and "running on the default lens" in out
        # nothing left of the node's process group (no stray process)
        with pytest.raises(ProcessLookupError):
            os.killpg(proc.pid, 0)


def test_stop_handler_cannot_block():
    """A second signal's handler can run inside the first one (between any two bytecodes), so the
    handler must take no lock: a ``threading.Event`` there once left the node hanging forever after
    three quick SIGINTs. Checked by listing the C calls the handler makes."""
    calls = []

    def profile(frame, event, arg):
        if event == "c_call":
            calls.append(getattr(arg, "__qualname__", repr(arg)))

    stop = StopSignals()
    try:
        sys.setprofile(profile)
        for sig in (signal.SIGINT, signal.SIGINT, signal.SIGTERM):
            stop._handle(sig, None)
        sys.setprofile(None)
    finally:
        sys.setprofile(None)
        stop.restore()
    assert stop.requested and stop.count == 3
    blocking = [c for c in calls if "acquire" in c or "__enter__" in c or "wait" in c]
    assert not blocking, blocking
