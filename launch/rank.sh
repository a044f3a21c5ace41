#!/usr/bin/env bash
# launch/rank.sh: what torchrun starts once per local rank (run.sh passes it with --no-python).
# Binds the rank to its slice of this node's CPU cores, sends its output to LOG_DIR/rank<RANK>.log
# (local rank 0 also to the console), then runs COMMAND.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<'EOF'
usage: rank.sh --log-dir DIR [--no-bind] -- COMMAND [ARGS...]

Started by torchrun (through launch/run.sh), one per local rank; reads LOCAL_RANK,
LOCAL_WORLD_SIZE and RANK from torchrun. The rank's CPU affinity is narrowed to its
slice of the CPUs this process may use (taskset), whole cores of one NUMA node where the
counts allow (launch/common.sh: topology_order), unless --no-bind.
EOF
}

LOG_DIR="" BIND=1
while (($#)); do
    SHIFT=1
    case $1 in
        -h | --help) usage; exit 0 ;;
        --no-bind) BIND=0 ;;
        --log-dir | --log-dir=*) take_value "$@"; LOG_DIR=$VALUE ;;
        --) shift; break ;;
        *) die_usage "unknown flag: $1" ;;
    esac
    shift "$SHIFT"
done
(($#)) || die_usage "no COMMAND after --"
[[ -n $LOG_DIR ]] || die_usage "--log-dir is required"
[[ -n ${LOCAL_RANK:-} && -n ${LOCAL_WORLD_SIZE:-} && -n ${RANK:-} ]] ||
    die "LOCAL_RANK, LOCAL_WORLD_SIZE and RANK are unset: rank.sh runs under torchrun; use launch/run.sh"

# shellcheck disable=SC2046  # one CPU number per word
read -ra cpus <<<"$(topology_order $(allowed_cpus))"
# Every rank's share of this node's CPUs, the same on each however the slices fall: the trainer
# sizes its default loader workers from it, and ranks must agree on their worker count.
per_rank=$((${#cpus[@]} / LOCAL_WORLD_SIZE))
export HRNET_CPUS_PER_RANK=$((per_rank > 0 ? per_rank : 1))
if ((BIND)); then
    if command -v taskset >/dev/null; then
        set -- taskset -c "$(core_slice "$LOCAL_RANK" "$LOCAL_WORLD_SIZE" "${cpus[@]}")" "$@"
    else
        note "taskset not found (util-linux): rank $RANK runs unbound"
    fi
fi

log="$LOG_DIR/rank$RANK.log"
if ((LOCAL_RANK == 0)); then
    # pipefail: the status is the command's. torchrun and schedulers signal the whole process
    # group: this shell waits for the trainer (a trap, not an ignore, so the trainer keeps its
    # default signals), and tee ignores them to outlive the trainer's last lines (saved, FPS).
    trap ':' TERM INT
    "$@" 2>&1 | (trap '' TERM INT; exec tee -a "$log")
else
    exec "$@" >>"$log" 2>&1
fi
