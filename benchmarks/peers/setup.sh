#!/usr/bin/env bash
# The venv benchmarks/loader_vs_peers.py runs the other loaders in: FFCV 1.0.2, DALI 2.4.0 (CPU
# operators) and torchvision with stock Pillow, kept apart from .venv so that its pillow-simd, and
# its pins, stay as they are. Re-runnable: what is there already is kept, and the checks run again.
#
#   benchmarks/peers/setup.sh                      # after `make setup` (it reuses .venv's torch)
#   MAIN_VENV=/other/.venv benchmarks/peers/setup.sh
#
# torch and torchvision are not installed twice: a .pth file puts .venv's site-packages (by a path
# relative to this venv, so a moved checkout keeps working) after this venv's own, where stock
# Pillow, FFCV and DALI (and any numpy, numba, OpenCV they pin) come first. A peer that does not
# install or does not pass its check is skipped by the benchmark; peers.json says why.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PEERS="$ROOT/benchmarks/peers"
VENV="$PEERS/.venv"
MAIN_VENV=${MAIN_VENV:-$ROOT/.venv}
PY="$VENV/bin/python"
LOGS="$VENV/logs"
FFCV_VERSION=1.0.2
DALI_VERSION=2.4.0
APT_PACKAGES=(pkg-config libturbojpeg0-dev libopencv-dev)  # FFCV compiles against these

die() { echo "setup.sh: $*" >&2; exit 1; }
[[ -x "$MAIN_VENV/bin/python" ]] || die "no $MAIN_VENV/bin/python: run \`make setup\` first (or set MAIN_VENV)"

# The base interpreter of .venv: the .pth trick needs the same Python version (compiled wheels).
if [[ ! -x "$PY" ]]; then
    "$MAIN_VENV/bin/python" -m venv "$VENV" || die "python -m venv $VENV failed"
fi
mkdir -p "$LOGS"
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$PY" - "$MAIN_VENV" <<'PY' || die "cannot link $MAIN_VENV's site-packages"
import os, sys, sysconfig, subprocess
main = subprocess.run([os.path.join(sys.argv[1], "bin", "python"), "-c",
                       "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                      capture_output=True, text=True, check=True).stdout.strip()
own = sysconfig.get_paths()["purelib"]
# A relative line in a .pth file is joined to the site-packages folder holding it.
with open(os.path.join(own, "_main_venv.pth"), "w") as f:
    f.write(os.path.relpath(main, own) + "\n")
PY

# peers.json: {"python", "pillow", "ffcv": {"ok", "version" | "reason"}, "dali": {...}}
record() {  # NAME OK VERSION-OR-REASON
    "$PY" - "$VENV/peers.json" "$@" <<'PY'
import json, sys
path, name, ok, detail = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
try:
    data = json.load(open(path))
except (OSError, ValueError):
    data = {}
data[name] = {"ok": ok, ("version" if ok else "reason"): detail}
json.dump(data, open(path, "w"), indent=2)
PY
}

# The one line of a failed command's log that says why: the last error-looking line that is not
# pip's own boilerplate, else the last line.
reason() {  # LOG
    local line
    line=$(grep -E '(Error|error|ERROR)[: ]' "$1" | grep -vE 'subprocess-exited-with-error|originates from a subprocess|^\s*(×|│|╰)|See above' | tail -n 1)
    [[ -n "$line" ]] || line=$(grep -v '^\s*$' "$1" | tail -n 1)
    echo "$line" | sed -E 's/^\s+//' | cut -c1-300
}

pip_install() {  # LOG ARGS...
    local log=$1; shift
    "$PY" -m pip install --disable-pip-version-check "$@" >"$log" 2>&1
}

# Stock Pillow of pillow-simd's release (pillow-simd 12.1.1.post0 -> Pillow 12.1.1), so the two
# torchvision columns differ by SIMD only; ahead of .venv's pillow-simd. pip sees .venv's Pillow
# through the .pth file, hence --ignore-installed.
pil_version() { "$1" -c 'import PIL; print(PIL.__version__)' 2>/dev/null; }
STOCK_PILLOW=$(pil_version "$MAIN_VENV/bin/python" | sed -E 's/\.post[0-9]+$//')
if [[ "$(pil_version "$PY")" != "${STOCK_PILLOW:-none}" ]]; then
    echo "installing stock Pillow ${STOCK_PILLOW:-(latest)} into $VENV"
    # Another release of ours first (--ignore-installed would leave its metadata behind); pip
    # uninstalls nothing outside this venv.
    if compgen -G "$SITE/pillow-*.dist-info" >/dev/null; then
        "$PY" -m pip uninstall -y pillow >"$LOGS/pillow.log" 2>&1
    fi
    pip_install "$LOGS/pillow.log" --ignore-installed --no-deps "pillow${STOCK_PILLOW:+==$STOCK_PILLOW}" \
        || pip_install "$LOGS/pillow.log" --ignore-installed --no-deps pillow \
        || die "pip install pillow: $(reason "$LOGS/pillow.log")"
fi
[[ "$(pil_version "$PY")" != *post* ]] || die "PIL in $VENV is still pillow-simd ($(pil_version "$PY"))"
"$PY" -c 'import torch, torchvision' 2>"$LOGS/torch.log" || die "torch from $MAIN_VENV does not import here: $(reason "$LOGS/torch.log")"
"$PY" - "$VENV/peers.json" "$(pil_version "$PY")" <<'PY'
import json, platform, sys, torch, torchvision
try:
    data = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    data = {}
data.update(python=platform.python_version(), pillow=sys.argv[2], torch=torch.__version__,
            torchvision=torchvision.__version__)
json.dump(data, open(sys.argv[1], "w"), indent=2)
PY
echo "python $("$PY" -c 'import platform; print(platform.python_version())'), Pillow $(pil_version "$PY") (stock), torch from $MAIN_VENV"

# FFCV builds a C extension against OpenCV and libjpeg-turbo found through pkg-config.
missing=()
for package in "${APT_PACKAGES[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if (( ${#missing[@]} )); then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "apt-get install ${missing[*]} (for FFCV's build)"
        { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"; } \
            >"$LOGS/apt.log" 2>&1 || echo "apt-get failed: $(reason "$LOGS/apt.log")"
    else
        echo "FFCV needs ${missing[*]}: install them (e.g. sudo apt-get install ${missing[*]}) and re-run"
    fi
fi

check_peer() {  # NAME: a real, tiny run of the benchmark's own pipeline on a few generated photos
    local name=$1 version
    if ! version=$("$PY" "$PEERS/run_peer.py" --check --peer "$name" 2>"$LOGS/$name-check.log"); then
        record "$name" 0 "installed but its check failed: $(reason "$LOGS/$name-check.log")"
        echo "  $name: check failed: $(reason "$LOGS/$name-check.log") (log: $LOGS/$name-check.log)"
        return
    fi
    record "$name" 1 "$version"
    echo "  $name $version: ok"
}

install_peer() {  # NAME PIP-REQUIREMENT
    local name=$1 requirement=$2
    echo "installing $requirement"
    if ! pip_install "$LOGS/$name.log" "$requirement"; then
        record "$name" 0 "pip install $requirement: $(reason "$LOGS/$name.log")"
        echo "  $name: not installed: $(reason "$LOGS/$name.log") (log: $LOGS/$name.log)"
        return
    fi
    check_peer "$name"
}

echo "checking torchvision with stock Pillow"
check_peer torchvision
install_peer ffcv "ffcv==$FFCV_VERSION"
install_peer dali "nvidia-dali-cuda120==$DALI_VERSION"
echo "wrote $VENV/peers.json:"
cat "$VENV/peers.json"
