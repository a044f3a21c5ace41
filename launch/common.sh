# launch/common.sh: helpers the launch scripts share (flag parsing, python choice, the device
# environment). Sourced by them, never run on its own; the CPU policy is hrnet_fast.host's.
# Callers define `usage`; PROG, the name in messages, is the script's file name.

PROG=$(basename "$0")
LAUNCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$LAUNCH_DIR")

# ---- messages and flags ----------------------------------------------------------------------

die_usage() {  # a user mistake: one-line error, then the usage, exit 2
    echo "$PROG: error: $*" >&2
    usage >&2
    exit 2
}

die() {  # the run cannot go on (not a flag mistake): one line, exit 1
    echo "$PROG: error: $*" >&2
    exit 1
}

note() { echo "$PROG: $*" >&2; }

# take_value "$@": the value of a `--flag VALUE` or `--flag=VALUE` at $1, into VALUE; SHIFT says
# how many words it used. A missing or empty value is a usage error.
take_value() {
    if [[ $1 == *=* ]]; then
        VALUE=${1#*=}
        SHIFT=1
    else
        [[ $# -ge 2 && $2 != --* ]] || die_usage "${1%%=*} needs a value"
        VALUE=$2
        SHIFT=2
    fi
    [[ -n $VALUE ]] || die_usage "${1%%=*} needs a value"
}

require_int() {  # require_int FLAG VALUE MIN [MAX]
    local flag=$1 value=$2 min=$3 max=${4:-}
    if [[ $value =~ ^[0-9]{1,9}$ ]] && ((10#$value >= min && 10#$value <= ${max:-999999999})); then
        return 0
    fi
    die_usage "$flag must be a whole number ≥ $min${max:+ and ≤ $max}, got '$value'"
}

# has_flag NAME ARGS...: whether ARGS contain `NAME` or `NAME=…`.
has_flag() {
    local name=$1 arg
    shift
    for arg in "$@"; do
        [[ $arg == "$name" || $arg == "$name="* ]] && return 0
    done
    return 1
}

shell_quote() {  # the words as one copy-pastable line; quoted only where the shell needs it
    local word quoted line=""
    for word in "$@"; do
        if [[ $word =~ ^[A-Za-z0-9_./:,=+@%-]+$ ]]; then
            line+="$word "
        else
            printf -v quoted '%q' "$word"
            line+="$quoted "
        fi
    done
    echo "${line% }"
}

is_local_path() {  # shard specs with `://`, `pipe:` or braces are URLs / patterns, not directories
    [[ $1 != *://* && $1 != pipe:* && $1 != *'{'* ]]
}

# ---- python ------------------------------------------------------------------------------------

# The interpreter for torchrun and the trainer: $PYTHON if set; else `python` of the active
# virtualenv / conda env; else this repo's .venv; else python3. The repo root goes on PYTHONPATH so
# the ranks run this checkout's hrnet_fast even when it is not pip-installed (once: rank.sh resolves
# again under run.sh).
resolve_python() {
    if [[ -n ${PYTHON:-} ]]; then
        PY=$PYTHON
    elif [[ -n ${VIRTUAL_ENV:-}${CONDA_PREFIX:-} ]]; then
        PY=python
    elif [[ -x $REPO_ROOT/.venv/bin/python ]]; then
        PY=$REPO_ROOT/.venv/bin/python
    else
        PY=python3
    fi
    command -v "$PY" >/dev/null || die "python '$PY' not found; set PYTHON=/path/to/python"
    [[ ${PYTHONPATH:-} == "$REPO_ROOT" || ${PYTHONPATH:-} == "$REPO_ROOT:"* ]] ||
        export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
}

# ---- device environment ------------------------------------------------------------------------

# detect_device: npu if torch_npu imports and sees a device, else cuda if torch sees a GPU, else
# cpu; hrnet_fast.device decides, in one python call. The CANN environment is sourced in the
# subshell first, since torch_npu only imports with it.
detect_device() {
    local kind
    kind=$(
        source "$LAUNCH_DIR/env_npu.sh" 2>/dev/null
        "$PY" -c 'from hrnet_fast.device import detect_kind; print(detect_kind())'
    ) || die "could not detect the device with $PY (is torch installed?); pass --device npu|cuda|cpu"
    echo "$kind"
}

# resolve_device REQUESTED DEVICES: DEVICE (npu|cuda|cpu) and DEVICE_SOURCE from --device (empty or
# auto, the trainer's word: auto-detect) and --devices (ids, which only NPUs and GPUs have). Needs
# resolve_python first.
resolve_device() {
    case $1 in
        npu | cuda | cpu) DEVICE=$1 DEVICE_SOURCE=--device ;;
        "" | auto) DEVICE=$(detect_device) DEVICE_SOURCE=auto-detected ;;
        *) die_usage "--device must be npu, cuda, cpu or auto, got '$1'" ;;
    esac
    if [[ $DEVICE == cpu && -n $2 ]]; then
        die_usage "--devices selects NPUs or GPUs, but the device is cpu ($DEVICE_SOURCE)"
    fi
}

check_device_ids() {  # --devices / --device_id: comma-separated ids
    [[ $1 =~ ^[0-9]+(,[0-9]+)*$ ]] || die_usage "device ids must look like 0 or 0,1,2,3, got '$1'"
}

check_shards() {  # a local shard directory must exist; URLs and patterns are the loader's to check
    if is_local_path "$1" && [[ ! -d $1 ]]; then
        die_usage "shard directory '$1' not found; pack one with: python -m pack imagenet --out $1"
    fi
}

# apply_device_env KIND DEVICES NPROC: export what the ranks of one node need. Values the user
# already exported win; see env_npu.sh / env_cuda.sh for each setting and why.
apply_device_env() {
    local kind=$1 devices=$2 nproc=$3 share
    case $kind in
        npu) HRNET_DEVICES=$devices source "$LAUNCH_DIR/env_npu.sh" ;;
        cuda) HRNET_DEVICES=$devices source "$LAUNCH_DIR/env_cuda.sh" ;;
    esac
    share=$("$PY" -m hrnet_fast.host share --local-world-size "$nproc")
    # Every rank's equal share of this node's CPUs: a rank bound to its slice sees only the slice,
    # and the trainer sizes its default loader workers from the share (hrnet_fast.host).
    export HRNET_CPUS_PER_RANK=$share
    # One rank's share of the cores: more threads than cores only thrash (torchrun would use 1).
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$share}
    # Ranks write to pipes and log files: unbuffered, so logs are live and nothing is lost on a crash.
    export PYTHONUNBUFFERED=1
    # Loader workers pass batches through file descriptors; lift the soft open-files limit to the
    # hard one (no root needed), as the Ascend scripts' `ulimit -SHn` does.
    ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
}

print_env_changes() {  # print_env_changes BEFORE: `export` lines for what differs from `env | sort` BEFORE
    comm -13 <(echo "$1") <(env | sort) | while IFS='=' read -r name value; do
        echo "export $name=$(shell_quote "$value")"
    done
}
