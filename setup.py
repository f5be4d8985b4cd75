"""ament_python package that also installs with plain pip (``pip install .``)."""

from glob import glob

from setuptools import find_packages, setup

package_name = "depth_defocus_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.rviz")),
        ("share/" + package_name + "/models", glob("models/*.pt") + glob("models/*.md")),
        ("share/" + package_name + "/data/samples", glob("data/samples/*")),
    ],
    install_requires=["setuptools", "numpy", "opencv-python-headless", "pyyaml", "tqdm"],
    extras_require={"train": ["matplotlib", "scikit-image"], "bags": ["rosbags"], "test": ["pytest", "ruff"]},
    python_requires=">=3.10",
    zip_safe=True,
    maintainer="depth_defocus_ros developers",
    maintainer_email="dev@depth-defocus-ros.invalid",
    description="Metric depth, defocus and point clouds from one camera (ROS 2)",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "depth-defocus = depth_defocus_ros.cli:main",
            "depth_defocus_node = depth_defocus_ros.ros.node:main",
        ],
    },
)
