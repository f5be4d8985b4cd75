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
