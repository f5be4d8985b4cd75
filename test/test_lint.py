"""The code passes the linter (ruff, configured in pyproject.toml)."""

import shutil
import subprocess
import sys

import pytest


def test_ruff_clean(root):
    exe = shutil.which("ruff")
    if exe is None:
        pytest.fail("ruff is not installed: pip install -r requirements.txt")
    r = subprocess.run([exe, "check", str(root)], capture_output=True, text=True, cwd=root)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_ruff_format_is_the_one_formatting_rule(root):
    """Every file is as ``ruff format`` writes it (no per-line exceptions: run ``ruff format``)."""
    exe = shutil.which("ruff")
    if exe is None:
        pytest.fail("ruff is not installed: pip install -r requirements.txt")
    r = subprocess.run([exe, "format", "--check", str(root)], capture_output=True, text=True, cwd=root)
    assert r.returncode == 0, "run 'ruff format' on: " + r.stdout[-4000:] + r.stderr[-2000:]
    skips = subprocess.run(
        ["git", "grep", "-n", "fmt: " + "skip", "--", "*.py"], capture_output=True, text=True, cwd=root
    )
    assert not skips.stdout, skips.stdout[:2000]


def test_core_imports_no_ros(root):
    """The core must work on a training machine without ROS: importing it pulls in no rclpy."""
    code = (
        "import sys; import depth_defocus_ros.estimator, depth_defocus_ros.train, depth_defocus_ros.cli; "
        "bad = [m for m in sys.modules if m.startswith(('rclpy', 'sensor_msgs'))]; assert not bad, bad"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert r.returncode == 0, r.stderr[-2000:]
