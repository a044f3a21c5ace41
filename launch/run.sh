#!/usr/bin/env bash
# launch/run.sh: start `hrnet_fast train` on 1, 8 or N×8 devices through torchrun, with the
# device environment (env_npu.sh / env_cuda.sh), per-rank CPU binding and one log per rank.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<'EOF'
usage: launch/run.sh --nproc N --shards DIR [--nnodes N --node-rank R --addr HOST --port P]
                     [--device npu|cuda|cpu|auto] [--devices 0,1,...] [--out RUN_DIR]
                     [--max-restarts K] [--no-bind] [--dry-run] [-- TRAIN ARGS]

Starts N ranks of `python -m hrnet_fast train` on this node through torchrun
(python -m torch.distributed.run, by way of hrnet_fast.torchrun).

  --nproc N          ranks on this node, one per device [the number of --devices, else 1]
  --shards DIR       shard directory, or a WebDataset URL / brace pattern [./shards]
  --nnodes N         nodes in the job [1]; with N > 1 also give --node-rank and --addr
  --node-rank R      this node's index, 0 … N-1 [0]
  --addr HOST        address of node 0 (static rendezvous); with --port on one node too
  --port P           port on node 0 [29500]; one node without --addr/--port picks a free port
  --device KIND      npu | cuda | cpu, or auto: npu if torch_npu sees a device, else cuda if
                     torch sees a GPU, else cpu [auto]
  --devices LIST     device ids for the ranks, e.g. 4,5,6,7 (ASCEND_RT_VISIBLE_DEVICES /
                     CUDA_VISIBLE_DEVICES); as many as --nproc [all]
  --out RUN_DIR      run directory [runs/MODEL-<ranks>p]; logs go to RUN_DIR/logs/rank<R>.log
  --max-restarts K   times torchrun restarts the ranks after a failure [0]; they resume from
                     RUN_DIR/checkpoints/last.pt
  --no-bind          do not pin each rank to its slice of the CPU cores (whole cores of one
                     NUMA node where the counts allow; on CUDA torchrun's --numa-binding
                     exclusive where torch and numactl have it)
  --dry-run          print the environment and the torchrun command, start nothing
  -- TRAIN ARGS      passed to `hrnet_fast train` (see `python -m hrnet_fast train --help`);
                     --resume auto is added unless they contain --resume. --shards, --out
                     and --device may stand here instead, as in a trainer command line;
                     given on both sides of --, their values must agree

Stopping: SIGTERM or SIGINT (Ctrl-C), to run.sh or to its whole process group as Slurm's
scancel and Kubernetes send it, makes the ranks save RUN_DIR/checkpoints/last.pt and
RUN_DIR/summary.json at their next sync point and exit; run.sh then says so in one line.
TORCH_ELASTIC_SHUTDOWN_TIMEOUT: seconds the ranks get for that before torchrun kills them [300].

Environment: PYTHON picks the interpreter [the active venv's python, else this repo's
.venv/bin/python, else python3]. Variables you export (OMP_NUM_THREADS, HCCL_*, NCCL_*, …)
keep your values. Exit status: torchrun's; after a stop signal 0 when the ranks saved, else
128 + the signal's number.

examples:
  launch/run.sh --nproc 1 --shards shards/                     # 1 device
  launch/run.sh --nproc 8 --shards shards/                     # 8 devices
  launch/run.sh --nproc 8 --shards shards/ -- --recipe ascend --epochs 100
  launch/run.sh --nproc 1 -- --shards shards/ --out runs/try --device cpu   # trainer's flags
  # two nodes × 8 devices (the same line on both, with --node-rank 0 and 1):
  launch/run.sh --nproc 8 --nnodes 2 --node-rank 0 --addr 10.0.0.1 --port 29500 --shards shards/
EOF
}

NPROC="" SHARDS="" NNODES=1 NODE_RANK=0 ADDR="" PORT="" DEVICE="" DEVICES="" OUT=""
MAX_RESTARTS=0 BIND=1 DRY_RUN=0 TRAIN_ARGS=()
while (($#)); do
    SHIFT=1
    case $1 in
        -h | --help) usage; exit 0 ;;
        --dry-run) DRY_RUN=1 ;;
        --no-bind) BIND=0 ;;
        --) shift; TRAIN_ARGS=("$@"); break ;;
        --nproc | --nproc=*) take_value "$@"; NPROC=$VALUE ;;
        --shards | --shards=*) take_value "$@"; SHARDS=$VALUE ;;
        --nnodes | --nnodes=*) take_value "$@"; NNODES=$VALUE ;;
        --node-rank | --node-rank=*) take_value "$@"; NODE_RANK=$VALUE ;;
        --addr | --addr=*) take_value "$@"; ADDR=$VALUE ;;
        --port | --port=*) take_value "$@"; PORT=$VALUE ;;
        --device | --device=*) take_value "$@"; DEVICE=$VALUE ;;
        --devices | --devices=*) take_value "$@"; DEVICES=$VALUE ;;
        --out | --out=*) take_value "$@"; OUT=$VALUE ;;
        --max-restarts | --max-restarts=*) take_value "$@"; MAX_RESTARTS=$VALUE ;;
        --*) die_usage "unknown flag: ${1%%=*}" ;;
        *) die_usage "unexpected argument: $1 (trainer flags go after --)" ;;
    esac
    shift "$SHIFT"
done

# take_from_train_args FLAG NAME: FLAG's value from TRAIN_ARGS (which lose it) into the variable
# NAME, unless NAME already holds another value: users paste trainer command lines after --, and the
# trainer has --shards, --out and --device too. Two different values are a usage error.
take_from_train_args() {
    local flag=$1 name=$2 i=0 where="(before --)"
    local -a kept=()
    while ((i < ${#TRAIN_ARGS[@]})); do
        if [[ ${TRAIN_ARGS[i]} == "$flag" || ${TRAIN_ARGS[i]} == "$flag="* ]]; then
            take_value "${TRAIN_ARGS[@]:i}"
            if [[ -n ${!name} && ${!name} != "$VALUE" ]]; then
                die_usage "$flag is given twice with different values, '${!name}' $where and '$VALUE' (after --): keep one"
            fi
            printf -v "$name" '%s' "$VALUE"
            where="(after --)"
            i=$((i + SHIFT))
        else
            kept+=("${TRAIN_ARGS[i]}")
            i=$((i + 1))
        fi
    done
    TRAIN_ARGS=("${kept[@]}")
}
take_from_train_args --shards SHARDS
take_from_train_args --out OUT
take_from_train_args --device DEVICE
SHARDS=${SHARDS:-./shards}

# ---- check the flags -------------------------------------------------------------------------
if [[ -n $DEVICES ]]; then
    check_device_ids "$DEVICES"
    IFS=, read -ra device_ids <<<"$DEVICES"
    NPROC=${NPROC:-${#device_ids[@]}}
fi
NPROC=${NPROC:-1}
require_int --nproc "$NPROC" 1
require_int --nnodes "$NNODES" 1
require_int --node-rank "$NODE_RANK" 0 $((NNODES - 1))
require_int --max-restarts "$MAX_RESTARTS" 0
[[ -z $PORT ]] || require_int --port "$PORT" 1 65535
if ((NNODES > 1)); then
    [[ -n $ADDR ]] || die_usage "--nnodes $NNODES needs --addr (the address of node 0)"
fi
if [[ -n $DEVICES ]] && ((${#device_ids[@]} != NPROC)); then
    die_usage "--devices lists ${#device_ids[@]} devices but --nproc is $NPROC"
fi
check_shards "$SHARDS"

# ---- resolve what was left to us ----------------------------------------------------------------
env_before=$(env | sort)  # --dry-run shows what changes from here on
resolve_python
resolve_device "$DEVICE" "$DEVICES"
if [[ -z $OUT ]]; then
    model=hrnet_w18
    for ((i = 0; i < ${#TRAIN_ARGS[@]}; i++)); do
        case ${TRAIN_ARGS[i]} in
            --model=*) model=${TRAIN_ARGS[i]#--model=} ;;
            --model) model=${TRAIN_ARGS[i + 1]:-$model} ;;
        esac
    done
    OUT=runs/$model-$((NPROC * NNODES))p
fi
has_flag --resume "${TRAIN_ARGS[@]}" || TRAIN_ARGS=(--resume auto "${TRAIN_ARGS[@]}")
apply_device_env "$DEVICE" "$DEVICES" "$NPROC"
# Seconds torchrun gives the ranks after a stop signal, to reach a sync point and save, before it
# kills them (its default, 30, is short for a big checkpoint); a scheduler's grace period still rules.
export TORCH_ELASTIC_SHUTDOWN_TIMEOUT=${TORCH_ELASTIC_SHUTDOWN_TIMEOUT:-300}

if ((NNODES == 1)) && [[ -z $ADDR$PORT ]]; then
    rendezvous=(--standalone)  # a free port of its own: two 1-node jobs on one host do not clash
else
    rendezvous=(--nnodes "$NNODES" --node-rank "$NODE_RANK" --master-addr "${ADDR:-127.0.0.1}"
        --master-port "${PORT:-29500}")
fi
# torchrun_binds_numa: whether torchrun can bind each rank to CPUs of its GPU's NUMA node itself
# (--numa-binding, in newer torch; it runs numactl and finds the node from the GPU's PCI address).
torchrun_binds_numa() {
    command -v numactl >/dev/null && [[ $("$PY" -m torch.distributed.run --help 2>/dev/null) == *--numa-binding* ]]
}

rank_flags=(--log-dir "$OUT/logs") numa_flags=()
if ((!BIND)); then
    rank_flags+=(--no-bind)
elif [[ $DEVICE == cuda ]] && torchrun_binds_numa; then
    numa_flags=(--numa-binding exclusive)  # disjoint cores of each GPU's node, as our slices are
    rank_flags+=(--no-bind)
fi
# hrnet_fast.torchrun is torchrun (python -m torch.distributed.run) that reports a stop signal in
# one line, exit status 0 when the ranks saved, instead of torchrun's SignalException traceback.
command=("$PY" -m hrnet_fast.torchrun "$OUT" --nproc-per-node "$NPROC" "${rendezvous[@]}"
    --max-restarts "$MAX_RESTARTS" "${numa_flags[@]}" --no-python "$LAUNCH_DIR/rank.sh" "${rank_flags[@]}" --
    "$PY" -m hrnet_fast train --shards "$SHARDS" --device "$DEVICE" --out "$OUT" "${TRAIN_ARGS[@]}")

if ((DRY_RUN)); then
    echo "# device: $DEVICE ($DEVICE_SOURCE); ranks: $NPROC on this node × $NNODES node(s)"
    echo "# logs: $OUT/logs/rank<RANK>.log (local rank 0 also on the console)"
    if ((${#numa_flags[@]})); then
        echo "# CPU binding: torchrun ${numa_flags[*]} (each rank on cores of its GPU's NUMA node)"
    elif ((BIND)); then
        slices=$("$PY" -m hrnet_fast.host slices --local-world-size "$NPROC")
        r=0
        while read -r cpus; do
            echo "# local rank $((r++)): CPU cores $cpus"
        done <<<"$slices"
    fi
    print_env_changes "$env_before"
    shell_quote "${command[@]}"
    exit 0
fi

mkdir -p "$OUT/logs"
note "$NPROC rank(s) on $DEVICE; logs in $OUT/logs/rank<RANK>.log"
exec "${command[@]}"
