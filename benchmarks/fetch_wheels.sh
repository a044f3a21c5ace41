#!/usr/bin/env bash
# Download, where PyPI is reachable, the wheels benchmarks/gpu.sh installs on an offline GPU
# machine: hrnet-fast's runtime dependencies (ranges from pyproject.toml), webdataset's and
# pytest's (for tests/test_cuda.py), for
# CPython 3.10-3.12 on x86-64 Linux. torch, torchvision, numpy and Pillow come with the GPU
# machine's torch install, so they are left out (--no-deps keeps pip from pulling them in).
#
#   benchmarks/fetch_wheels.sh            # into benchmarks/wheels (git-ignored)
#   WHEELS_DIR=/some/dir PY_VERSIONS="3.11" benchmarks/fetch_wheels.sh
# Needs Python >= 3.11 here (tomllib reads pyproject.toml): .venv/bin/python when it exists.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${WHEELS_DIR:-benchmarks/wheels}
PY_VERSIONS=${PY_VERSIONS:-"3.10 3.11 3.12"}
PYTHON=${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}

# The requirement strings in pyproject.toml, less what the GPU machine already has.
mapfile -t PACKAGES < <("$PYTHON" - <<'PY'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
provided = {"torch", "torchvision", "numpy"}
# webdataset's own dependencies, and pytest's for tests/test_cuda.py
for dep in deps + ["braceexpand", "pyyaml", "pytest", "iniconfig", "pluggy", "packaging"]:
    if re.match(r"[A-Za-z0-9_.-]+", dep).group(0).lower() not in provided:
        print(dep)
PY
)
mkdir -p "$DEST"
for version in $PY_VERSIONS; do
    echo "Python $version: ${PACKAGES[*]}"
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --implementation cp \
        --python-version "$version" --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux_2_28_x86_64 -d "$DEST" "${PACKAGES[@]}"
done
ls -l "$DEST"
echo "copy $DEST next to the repo on the GPU machine (or set WHEELS_DIR there), then run benchmarks/gpu.sh"
