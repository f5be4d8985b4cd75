"""The three ways to install the package each give the layout that ``ros2 run`` and launch_ros use:
the ament index marker, ``share/depth_defocus_ros/`` (package.xml, launch, config, models, samples)
and an executable per entry point in ``lib/depth_defocus_ros/``; and that executable starts the node.

Checked without launch_ros or ros2cli (no registry has them): the package is found through the real
``ament_index_python`` (as ``ros2 run`` and ``launch_ros.substitutions.FindPackageShare`` do), its
executables are listed as ros2cli lists them (executable files in ``<prefix>/lib/<package>/``), and
the installed node is started from there and serves a camera over DDS.

- wheel: ``pip install .`` into a fresh prefix (a venv that sees this one's site-packages);
- editable: ``pip install -e .`` into such a prefix (what scripts/setup_env.sh does);
- colcon: ``setup.py install --single-version-externally-managed`` with setup.cfg, as
  ``colcon build`` runs it for an ament_python package.
"""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="needs the ROS 2 wheels (pip install -r requirements.txt)")
pytest.importorskip("ament_index_python", reason="comes with the ROS 2 wheels")

from ros_helpers import camera  # noqa: E402

from depth_defocus_ros.ros.harness import RosHarness, stop_process  # noqa: E402
from depth_defocus_ros.ros.pointcloud import Intrinsics  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "depth_defocus_ros"
EXECUTABLES = {"depth_defocus_node", "depth-defocus"}
SHARE_FILES = [
    "package.xml",
    "launch/depth_defocus.launch.py",
    "launch/record.launch.py",
    "config/depth_defocus.yaml",
    "config/depth_defocus.rviz",
    "models/README.md",
    "data/samples/camera.yaml",
]

pytestmark = pytest.mark.slow  # builds and installs the package three times, starts a node


def clean_env(**extra) -> dict:
    """A user's shell environment: PATH, HOME, locale and ROS discovery settings, and no Python or
    ament paths of this process (``extra`` adds to it). The library path the ROS wheels' bootstrap
    gave this process stays: the test prefixes borrow this environment's packages, whose bootstrap
    looks for their libraries under its own ``sys.prefix`` only."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")
    keep += ("LD_LIBRARY_PATH", "_ROS_WHEELS_BOOTSTRAP_COMPLETE")
    return {**{k: os.environ[k] for k in keep if k in os.environ}, **extra}


def run(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{cmd}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


def fresh_prefix(path: Path) -> Path:
    """A venv at ``path`` whose Python also sees this environment's site-packages (rclpy, torch,
    pip, setuptools), so that installing into it needs no network; returns its python. Commands
    run in it get a clean environment (:func:`clean_env`): what works there works without this
    test process's library paths."""
    run([sys.executable, "-m", "venv", "--without-pip", path])
    python = path / "bin" / "python"
    site = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    # addsitedir, not a plain path line: the parent's own .pth files run too (the ROS wheels set up
    # their libraries there), as in a real environment; the prefix's own site-packages come first
    parent = sysconfig.get_paths()["purelib"]
    Path(site, "parent_env.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    return python


def pip_install(prefix: Path, *args) -> None:
    python = fresh_prefix(prefix)
    pip = [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--ignore-installed"]
    run([*pip, *args], cwd=ROOT)


def colcon_install(prefix: Path, work: Path) -> dict:
    """The package built as colcon's ament_python build type builds it; returns the environment
    colcon's setup script would give (PYTHONPATH to the install's site-packages)."""
    work.mkdir(parents=True, exist_ok=True)
    run(
        [
            sys.executable,
            "setup.py",
            "-q",
            "egg_info",
            "--egg-base",
            work,
            "build",
            "--build-base",
            work / "build",
            "install",
            "--prefix",
            prefix,
            "--single-version-externally-managed",
            "--record",
            work / "install_manifest.txt",
        ],
        cwd=ROOT,
    )
    vars = {"base": str(prefix), "platbase": str(prefix)}
    site = sysconfig.get_paths(vars=vars)["purelib"]
    return {"PYTHONPATH": site}


@pytest.fixture(scope="module", params=["wheel", "editable", "colcon"])
def installed(request, tmp_path_factory):
    """(layout, prefix, extra environment) for each way to install."""
    tmp = tmp_path_factory.mktemp(request.param)
    prefix = tmp / "prefix"
    env = {}
    if request.param == "wheel":
        pip_install(prefix, ".")
    elif request.param == "editable":
        pip_install(prefix, "-e", ".")
    else:
        env = colcon_install(prefix, tmp / "work")
    return request.param, prefix, env


def ament_lookup(prefix: Path, code: str) -> str:
    """Run ``code`` (which prints) with AMENT_PREFIX_PATH = ``prefix`` only, in a fresh process."""
    env = clean_env(AMENT_PREFIX_PATH=str(prefix))
    return run([sys.executable, "-c", code], env=env, cwd=prefix).stdout.strip()


def test_ament_index_finds_the_package_and_its_files(installed):
    layout, prefix, _ = installed
    code = (
        "from ament_index_python.packages import get_package_prefix, get_package_share_directory as s\n"
        f"print(get_package_prefix('{PACKAGE}')); print(s('{PACKAGE}'))"
    )
    found_prefix, share = ament_lookup(prefix, code).splitlines()
    assert Path(found_prefix) == prefix and Path(share) == prefix / "share" / PACKAGE, layout
    for rel in SHARE_FILES:
        assert (Path(share) / rel).is_file(), (layout, rel)


def test_executables_are_where_ros2_run_looks(installed):
    """ros2cli's ``ros2 pkg executables`` / ``ros2 run``: executable files in <prefix>/lib/<package>/."""
    layout, prefix, env = installed
    lib = prefix / "lib" / PACKAGE
    found = {p.name for p in lib.iterdir() if p.is_file() and os.access(p, os.X_OK)}
    assert found == EXECUTABLES, layout
    r = subprocess.run([lib / "depth-defocus", "--help"], capture_output=True, text=True, env=clean_env(**env))
    assert r.returncode == 0 and "predict" in r.stdout and r.stdout.startswith("usage: depth-defocus"), r.stderr


def test_installed_node_starts_from_lib_and_serves_a_camera(installed, tmp_path):
    """``ros2 run depth_defocus_ros depth_defocus_node --ros-args --params-file <share>/config/...``,
    as ros2 run executes it: the file under lib/, from another folder, with the installed params."""
    layout, prefix, extra = installed
    dom = 1 + (int(os.environ.get("ROS_DOMAIN_ID", "0")) + 53 + ["wheel", "editable", "colcon"].index(layout)) % 100
    env = clean_env(**extra, ROS_DOMAIN_ID=str(dom), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
    params = prefix / "share" / PACKAGE / "config" / "depth_defocus.yaml"
    cmd = [prefix / "lib" / PACKAGE / "depth_defocus_node", "--ros-args", "--params-file", params]
    with open(tmp_path / "node.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    h = RosHarness(domain_id=dom)
    try:
        cam = camera(h)
        assert cam.wait_connected(timeout=60.0), (tmp_path / "node.log").read_text()[-3000:]
        rgb = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
        out = None
        for _ in range(10):  # sensor-data QoS is best effort: a frame may be lost, send again
            stamp = cam.send(rgb, intr=Intrinsics(140.0, 140.0, 80.0, 60.0))
            out = cam.wait_outputs(stamp, ("depth/image", "defocus/image"), 5.0)
            if out is not None:
                break
        assert out is not None, (tmp_path / "node.log").read_text()[-3000:]
        assert (out["depth/image"].width, out["depth/image"].height) == (160, 120)
    finally:
        h.close()
        rc = stop_process(proc)
    text = (tmp_path / "node.log").read_text()
    assert rc == 0 and "ready:" in text and "Traceback" not in text, text[-3000:]


def test_installed_code_is_the_installed_copy(installed, tmp_path):
    """The wheel and colcon installs run their own copy of the code, not this checkout."""
    layout, prefix, extra = installed
    if layout == "editable":
        pytest.skip("an editable install runs the checkout by design")
    python = prefix / "bin" / "python" if layout == "wheel" else sys.executable
    env = clean_env(**extra)
    where = run([python, "-c", f"import {PACKAGE}; print({PACKAGE}.__file__)"], env=env, cwd=tmp_path).stdout
    assert Path(where.strip()).is_relative_to(prefix), where
