import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# keep any DDS traffic on this machine and away from parallel runs
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))  # ROS's safe range is 0-101


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds (run with -m slow)")


@pytest.fixture(scope="session")
def root():
    return ROOT
