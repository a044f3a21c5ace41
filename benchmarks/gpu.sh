#!/usr/bin/env bash
# The GPU checks in under 9 minutes on one GPU of an offline machine that has torch, torchvision
# and timm: first the CUDA tests (tests/test_cuda.py, 2 minutes at most), then the GPU half of the
# benchmark suite (7 minutes at most). hrnet-fast's other dependencies and pytest are installed
# from wheels carried along (benchmarks/fetch_wheels.sh makes them), only those not importable;
# the repo runs from PYTHONPATH, no install. Results land in ${OUT:-benchmarks/out}:
# cuda_tests.log, results.json, report.md, report.png (if matplotlib is there; else
# `run_all.py --report-only`).
#
#   [OUT=DIR] [WHEELS_DIR=DIR] [PYTHON=python3] benchmarks/gpu.sh [extra run_all.py flags]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}
WHEELS_DIR=${WHEELS_DIR:-benchmarks/wheels}
OUT=${OUT:-benchmarks/out}

for module in torch torchvision timm; do
    if ! "$PYTHON" -c "import $module" 2>/dev/null; then
        echo "gpu.sh: $PYTHON cannot import $module; it must come with the machine" >&2
        exit 1
    fi
done
missing=()
for pair in webdataset:webdataset simplejpeg:simplejpeg braceexpand:braceexpand click:click tqdm:tqdm yaml:pyyaml \
            pytest:pytest; do
    "$PYTHON" -c "import ${pair%%:*}" 2>/dev/null || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
    if [[ ! -d $WHEELS_DIR ]]; then
        echo "gpu.sh: ${missing[*]} missing and no $WHEELS_DIR: run benchmarks/fetch_wheels.sh where" \
             "PyPI is reachable and bring the folder along" >&2
        exit 1
    fi
    echo "installing ${missing[*]} from $WHEELS_DIR"
    "$PYTHON" -m pip install --quiet --no-index --find-links "$WHEELS_DIR" "${missing[@]}"
fi

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" -c "import sys, torch
if not torch.cuda.is_available():
    sys.exit('gpu.sh: torch sees no CUDA GPU (check CUDA_VISIBLE_DEVICES and the torch build)')
print('GPU:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"
mkdir -p "$OUT"
echo "CUDA tests -> $OUT/cuda_tests.log"
timeout 120 "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_cuda.py >"$OUT/cuda_tests.log" 2>&1 \
    || echo "gpu.sh: CUDA tests failed or timed out (exit $?); see $OUT/cuda_tests.log" >&2
tail -n 3 "$OUT/cuda_tests.log"
# --quick: the CPU-bound data comparisons stay small (with every core as workers); on CUDA the
# model comparisons run at batch 256, 224 px, amp (step: 2 x 20 timed steps each; end-to-end: 50).
# GPU comparisons first; reports are rewritten after every comparison, so the 7-minute cap
# still leaves what finished.
exec timeout 420 "$PYTHON" benchmarks/run_all.py --quick --device cuda --workers "$(nproc)" --timeout 240 \
    --only step,step_graph,step_compiled,end_to_end,loader,pack --out "$OUT" "$@"
