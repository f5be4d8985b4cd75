#!/usr/bin/env bash
# Create .venv with the pinned requirements and the package (editable). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
# a .venv copied from another checkout points at that checkout (its scripts and the editable
# install would land there): rebuild it
if [ -f .venv/bin/activate ] && ! grep -qxF -e "VIRTUAL_ENV=\"$(pwd)/.venv\"" -e "VIRTUAL_ENV='$(pwd)/.venv'" \
        .venv/bin/activate; then
    echo "setup_env: .venv belongs to another path; rebuilding it" >&2
    rm -rf .venv
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -r requirements.txt
python -m pip install -q --no-deps --no-build-isolation -e .
# ros2 run / ros2 launch look for packages on AMENT_PREFIX_PATH: an activated .venv adds itself
# (the package's ament marker, share/ files and lib/depth_defocus_ros/ launchers are installed here)
if ! grep -q "depth_defocus_ros: AMENT_PREFIX_PATH" .venv/bin/activate; then
    cat >> .venv/bin/activate <<'ACTIVATE'
# depth_defocus_ros: AMENT_PREFIX_PATH (ros2 run / ros2 launch find the packages installed here)
case ":${AMENT_PREFIX_PATH:-}:" in
    *":$VIRTUAL_ENV:"*) ;;
    *) export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;;
esac
ACTIVATE
fi
