"""ament_python package that also installs with plain pip (``pip install .`` or ``pip install -e .``).

colcon (``setup.py develop``/``install``, see setup.cfg) puts the console scripts in
``lib/depth_defocus_ros/``, where ``ros2 run`` and launch_ros look. A wheel (what pip builds, plain
or editable) can only put console scripts in ``bin/``, so wheel builds also install, as data files,
one small launcher per console script in ``lib/depth_defocus_ros/`` that runs it with the Python of
the install prefix. Together with the ament index marker and the ``share/`` files, a pip install into
a prefix on ``AMENT_PREFIX_PATH`` is found by ``ros2 run`` and ``ros2 launch`` like a colcon install.
"""

import os
import stat
from glob import glob

from setuptools import find_packages, setup
from setuptools.dist import Distribution

package_name = "depth_defocus_ros"
console_scripts = [
    "depth-defocus = depth_defocus_ros.cli:main",
    "depth_defocus_node = depth_defocus_ros.ros.node:main",
]

LAUNCHER = """#!/bin/sh
# `{name}` for ros2 run and launch_ros, written by a pip (wheel) install of {package}: runs
# {module}:{func} with the Python of this install prefix (<prefix>/lib/{package}/{name}).
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd -P)
prefix=$(dirname -- "$(dirname -- "$here")")
code='import sys; sys.argv[0] = "{name}"; from {module} import {func}; sys.exit({func}())'
for py in "$prefix/bin/python3" "$prefix/bin/python"; do
    if [ -x "$py" ]; then exec "$py" -c "$code" "$@"; fi
done
exec python3 -c "$code" "$@"
"""


def write_launchers(out_dir: str) -> list:
    """Write one launcher per console script into ``out_dir``; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for spec in console_scripts:
        name, target = (s.strip() for s in spec.split("="))
        module, func = target.split(":")
        path = os.path.join(out_dir, name)
        with open(path, "w") as f:
            f.write(LAUNCHER.format(name=name, package=package_name, module=module, func=func))
        os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        paths.append(path)
    return paths


def with_launchers(command):
    """``command`` (a wheel build) that also installs the ``lib/<package>/`` launchers."""

    class WheelWithLaunchers(command):
        def run(self):
            launchers = write_launchers(os.path.join("build", "ros_launchers"))
            self.distribution.data_files.append(("lib/" + package_name, launchers))
            super().run()

    return WheelWithLaunchers


class PackageDistribution(Distribution):
    # setuptools' editable_wheel installs data files only if the distribution answers has_data()
    # (other commands ask has_data_files()): without this, `pip install -e .` drops share/ and lib/
    def has_data(self):
        return self.has_data_files()


cmdclass = {}
try:  # setuptools >= 70.1 (pip's build); older ones (colcon on Humble) never build wheels here
    from setuptools.command.bdist_wheel import bdist_wheel

    cmdclass["bdist_wheel"] = with_launchers(bdist_wheel)
except ImportError:
    pass
try:  # setuptools >= 64
    from setuptools.command.editable_wheel import editable_wheel

    cmdclass["editable_wheel"] = with_launchers(editable_wheel)
except ImportError:
    pass

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")),
        ("share/" + package_name + "/models", glob("models/*.pt") + glob("models/*.md")),
        ("share/" + package_name + "/data/samples", glob("data/samples/*")),
    ],
    cmdclass=cmdclass,
    distclass=PackageDistribution,
    install_requires=["setuptools", "numpy", "opencv-python-headless", "pyyaml", "tqdm"],
    extras_require={"train": ["matplotlib", "scikit-image"], "bags": ["rosbags"], "test": ["pytest", "ruff"]},
    python_requires=">=3.10",
    zip_safe=True,
    maintainer="depth_defocus_ros developers",
    maintainer_email="dev@depth-defocus-ros.invalid",
    description="Metric depth, defocus and point clouds from one camera (ROS 2)",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={"console_scripts": console_scripts},
)
