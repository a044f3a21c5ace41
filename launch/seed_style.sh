# launch/seed_style.sh: what the Ascend ModelZoo-style wrappers share (train_{full,performance}_{1p,8p}.sh,
# train_eval_1p.sh): their flags, their mapping onto launch/run.sh and the trainer, and their closing
# lines, read from the run's summary.json or eval's JSON line. Sourced by them, never run on its own.

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

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

# json_value FILE KEY [SPEC]: KEY of the JSON object in FILE (the whole file, as in the run's
# summary.json, else its last line, as `hrnet_fast eval --json` prints it), in Python's format SPEC;
# empty when the file, the object, the key or its value is missing.
json_value() {
    "$PY" - "$@" <<'PYTHON'
import json
import sys

path, key, spec = (sys.argv[1:] + [""])[:3]
try:
    with open(path) as file:
        text = file.read()
    try:
        value = json.loads(text).get(key)
    except ValueError:
        value = json.loads(text.splitlines()[-1]).get(key)
except (OSError, ValueError, IndexError, AttributeError):
    value = None
print("" if value is None else format(value, spec))
PYTHON
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
    resolve_python
    print_summary "$(json_value "$out/summary.json" fps .1f)" "$(json_value "$out/summary.json" last_acc1)" "$start"
}
