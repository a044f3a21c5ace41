# launch/common.sh: helpers the launch scripts share (flag parsing, python choice, CPU slices,
# the device environment, the seed-style summary). Sourced by them, never run on its own.
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
# the ranks run this checkout's hrnet_fast even when it is not pip-installed.
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
    export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
}

# ---- CPU cores ---------------------------------------------------------------------------------

# allowed_cpus: the logical CPUs this process may run on (its affinity mask), one per word.
allowed_cpus() {
    local key list="" part cpu
    local -a out=()
    while read -r key list; do
        [[ $key == Cpus_allowed_list: ]] && break
        list=""
    done 2>/dev/null </proc/self/status
    [[ -n $list ]] || list="0-$(($(nproc --all) - 1))"  # no /proc: assume every CPU
    for part in ${list//,/ }; do
        for ((cpu = ${part%-*}; cpu <= ${part#*-}; cpu++)); do
            out+=("$cpu")
        done
    done
    echo "${out[*]}"
}

# topology_order CPU...: the CPUs NUMA node by node and, within a node, physical core by physical
# core with its hyper-threads side by side; core_slice's contiguous slices of that order give each
# rank whole cores of one node. (Two-socket x86 servers usually number every core's second thread
# after all the first ones: in plain order rank 4 of 8 would get the siblings of rank 0's cores,
# on the wrong socket.) Read from sysfs (HRNET_SYSFS_CPU points elsewhere, for tests); CPUs it
# cannot place go last, in their given order.
topology_order() {
    local root=${HRNET_SYSFS_CPU:-/sys/devices/system/cpu} cpu node package core position=0 dir
    local -a keyed=()
    for cpu in "$@"; do
        dir=$root/cpu$cpu node=999999 package=999999 core=999999
        for node in "$dir"/node[0-9]*; do node=${node##*node}; break; done
        [[ $node =~ ^[0-9]+$ ]] || node=999999
        { read -r package <"$dir/topology/physical_package_id"; } 2>/dev/null || package=999999
        { read -r core <"$dir/topology/core_id"; } 2>/dev/null || core=999999
        keyed+=("$node $package $core $((position++)) $cpu")
    done
    ((${#keyed[@]})) || return 0
    printf '%s\n' "${keyed[@]}" | sort -n -k1,1 -k2,2 -k3,3 -k4,4 | awk '{printf "%s%s", sep, $5; sep=" "} END {print ""}'
}

# core_slice RANK NRANKS CPU...: the CPUs of local rank RANK when NRANKS ranks split CPU... into
# contiguous, disjoint slices (the first `count % NRANKS` ranks get one extra). With fewer CPUs
# than ranks, rank r gets CPU r mod count. Printed as a taskset list, e.g. `0-23` or `0,2`.
core_slice() {
    local rank=$1 nranks=$2
    shift 2
    local -a cpus=("$@")
    local count=${#cpus[@]} per extra start size
    per=$((count / nranks))
    extra=$((count % nranks))
    if ((per == 0)); then
        echo "${cpus[rank % count]}"
        return
    fi
    start=$((rank * per + (rank < extra ? rank : extra)))
    size=$((per + (rank < extra ? 1 : 0)))
    # shellcheck disable=SC2046  # one CPU number per word
    compress_cpus $(printf '%s\n' "${cpus[@]:start:size}" | sort -n)
}

compress_cpus() {  # compress_cpus 0 1 2 5 → 0-2,5
    local out="" first=$1 last=$1 cpu
    shift
    for cpu in "$@" ""; do
        if [[ -n $cpu ]] && ((cpu == last + 1)); then
            last=$cpu
            continue
        fi
        if ((last > first)); then
            out+="${out:+,}$first-$last"
        else
            out+="${out:+,}$first"
        fi
        first=$cpu
        last=$cpu
    done
    echo "$out"
}

omp_threads() {  # omp_threads CORES NPROC → max(1, CORES / NPROC)
    local n=$(($1 / $2))
    echo $((n > 1 ? n : 1))
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
    local kind=$1 devices=$2 nproc=$3
    local -a cores
    case $kind in
        npu) HRNET_DEVICES=$devices source "$LAUNCH_DIR/env_npu.sh" ;;
        cuda) HRNET_DEVICES=$devices source "$LAUNCH_DIR/env_cuda.sh" ;;
    esac
    read -ra cores <<<"$(allowed_cpus)"
    # One rank's slice of the cores: more threads than cores only thrash (torchrun would use 1).
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(omp_threads "${#cores[@]}" "$nproc")}
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

# ---- seed-style wrappers (train_*_Np.sh, train_eval_1p.sh) -----------------------------------

# parse_seed_flags ALLOWED "$@": the Ascend ModelZoo script flags (`--name=value` or `--name value`)
# named in ALLOWED (space-separated, without dashes) into SEED_<name> variables; `--dry-run` into
# SEED_dry_run; words after `--` into SEED_extra (passed on to the trainer).
parse_seed_flags() {
    local allowed=" $1 " name
    shift
    SEED_dry_run=0
    SEED_extra=()
    while (($#)); do
        name=${1%%=*}
        case $1 in
            -h | --help) usage; exit 0 ;;
            --dry-run) SEED_dry_run=1; shift; continue ;;
            --) shift; SEED_extra=("$@"); break ;;
        esac
        name=${name#--}
        [[ $1 == --* && $allowed == *" $name "* ]] || die_usage "unknown flag: ${1%%=*}"
        take_value "$@"
        printf -v "SEED_$name" '%s' "$VALUE"
        shift "$SHIFT"
    done
}

# per_device_batch GLOBAL WORLD: the Ascend scripts' batch is global (256 × 8 = 2048 at 8p).
per_device_batch() {
    require_int --bs "$1" 1
    (($1 % $2 == 0)) || die_usage "--bs $1 does not split over $2 devices; give a multiple of $2"
    echo $(($1 / $2))
}

# precision_flag MODE: our --precision for an Ascend --precision_mode (ours pass through).
precision_flag() {
    case $1 in
        fp32 | amp | bf16 | o2) echo "$1" ;;
        must_keep_origin_dtype) echo fp32 ;;
        allow_mix_precision) echo o2 ;;  # what the port ran: apex O2
        *) die_usage "--precision_mode must be fp32, amp, bf16, o2, allow_mix_precision or must_keep_origin_dtype, got '$1'" ;;
    esac
}

last_number() {  # last_number REGEX FILE: the number captured after REGEX's last match
    grep -oE "$1 *[-+0-9.eE]+" "$2" 2>/dev/null | tail -n 1 | sed -E "s/^$1 *//"
}

# print_summary FPS ACC START: the closing lines the Ascend scripts print (NA when unknown).
print_summary() {
    echo "Final Performance images/sec : ${1:-NA}"
    echo "Final Train Accuracy : ${2:-NA}"
    echo "E2E Training Duration sec : $((SECONDS - $3))"
}

seed_train_usage() {  # seed_train_usage NPROC MODE
    local nproc=$1 mode=$2 devices="1 device" device_id="ID          the NPU / GPU to use [0]"
    local what mode_usage mode_flag example="--data_path=/data/imagenet_shards"
    if ((nproc > 1)); then
        devices="$nproc devices"
        device_id="LIST        the $nproc NPUs / GPUs to use, e.g. 0,1,2,3,4,5,6,7 [all]"
    else
        example+=" --device_id=0"
    fi
    if [[ $mode == full ]]; then
        what="Full training on $devices: the ascend recipe (256 images/device, lr 0.1 × devices)
for --train_epochs [100] epochs in runs/train_full_${nproc}p; run it again to resume there."
        mode_usage="[--train_epochs=N]"
        mode_flag="--train_epochs=N        epochs [100]"
    else
        what="Performance run on $devices: the ascend recipe for one epoch, stopped after
--stop_step [1000] steps, in a fresh runs/train_performance_${nproc}p-<time>/."
        mode_usage="[--stop_step=N]"
        mode_flag="--stop_step=N           steps to run [1000]"
    fi
    cat <<EOF
usage: launch/$PROG [--data_path=DIR] [--device_id=ID] [--bs=N] [--lr=LR]
         $mode_usage [--precision_mode=MODE] [--device=KIND] [--dry-run] [-- TRAIN ARGS]

$what
Ends with the Ascend scripts' lines: Final Performance images/sec, Final Train Accuracy,
E2E Training Duration sec. Flags take --name=value or --name value.

  --data_path=DIR         shard directory [./shards]
  --device_id=$device_id
  --bs=N, --batch_size=N  global batch over all devices, as in the Ascend scripts [256 × devices]
  --lr=LR                 peak learning rate [0.1 × devices]
  $mode_flag
  --precision_mode=MODE   fp32 | amp | bf16 | o2, or allow_mix_precision (= o2) /
                          must_keep_origin_dtype (= fp32) [o2 on NPU, bf16 on CUDA, fp32 on CPU]
  --device=KIND           npu | cuda | cpu [auto-detected]
  --dry-run               print what launch/run.sh would start, start nothing
  -- TRAIN ARGS           more flags for \`python -m hrnet_fast train\`

example:
  launch/$PROG $example
EOF
}

# seed_train NPROC MODE "$@": all of train_{full,performance}_{1p,8p}.sh (see seed_train_usage).
seed_train() {
    local nproc=$1 mode=$2
    shift 2
    SEED_NPROC=$nproc SEED_MODE=$mode
    usage() { seed_train_usage "$SEED_NPROC" "$SEED_MODE"; }
    local allowed="data_path device_id device bs batch_size lr precision_mode"
    local -a run=(--nproc "$nproc") train=(--recipe ascend)
    local out
    if [[ $mode == full ]]; then
        parse_seed_flags "$allowed train_epochs" "$@"
        out=runs/train_full_${nproc}p
        train+=(--epochs "${SEED_train_epochs:-100}")
    else
        parse_seed_flags "$allowed stop_step" "$@"
        out=runs/train_performance_${nproc}p-$(date +%Y%m%d-%H%M%S)
        train+=(--epochs 1 --stop-step "${SEED_stop_step:-1000}")
    fi
    run+=(--shards "${SEED_data_path:-./shards}" --out "$out")
    [[ -z ${SEED_device_id:-} ]] || run+=(--devices "$SEED_device_id")
    [[ -z ${SEED_device:-} ]] || run+=(--device "$SEED_device")
    local batch=${SEED_bs:-${SEED_batch_size:-}} value  # value=$(…) alone, so a usage error stops us
    if [[ -n $batch ]]; then
        value=$(per_device_batch "$batch" "$nproc")
        train+=(--batch-size "$value")
    fi
    if [[ -n ${SEED_precision_mode:-} ]]; then
        value=$(precision_flag "$SEED_precision_mode")
        train+=(--precision "$value")
    fi
    [[ -z ${SEED_lr:-} ]] || train+=(--lr "$SEED_lr")
    if ((SEED_dry_run)); then
        exec "$LAUNCH_DIR/run.sh" --dry-run "${run[@]}" -- "${train[@]}" "${SEED_extra[@]}"
    fi
    local start=$SECONDS status=0
    "$LAUNCH_DIR/run.sh" "${run[@]}" -- "${train[@]}" "${SEED_extra[@]}" || status=$?
    if ((status != 0)); then
        note "training failed (exit $status); see $out/logs/rank0.log"
        exit "$status"
    fi
    print_summary "$(last_number FPS "$out/logs/rank0.log")" "$(last_number '"acc1":' "$out/metrics.jsonl")" "$start"
}
