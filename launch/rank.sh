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
slice of the CPUs this process may use, whole cores of one NUMA node where the counts
allow (python -m hrnet_fast.host bind), unless --no-bind.
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

if ((BIND)); then
    resolve_python
    # hrnet_fast.host narrows its own affinity to this rank's slice and execs COMMAND: the trainer,
    # its threads and its loader workers all inherit it.
    set -- "$PY" -m hrnet_fast.host bind --local-rank "$LOCAL_RANK" --local-world-size "$LOCAL_WORLD_SIZE" -- "$@"
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
