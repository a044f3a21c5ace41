# launch/env_npu.sh: the Ascend NPU environment for hrnet-fast ranks.
#
#   source launch/env_npu.sh                          # in your shell, before `hrnet-fast train`
#   HRNET_DEVICES=4,5,6,7 source launch/env_npu.sh    # also restrict the visible NPUs
#
# launch/run.sh sources it for --device npu. It is sourced into the caller's shell, so it never
# uses `set -e` or `exit`, and a variable you already exported keeps your value.
# 1. Sources CANN's set_env.sh (the first found: $ASCEND_HOME/{ascend-toolkit,nnae}/set_env.sh,
#    the Install_Path in /etc/Ascend/ascend_cann_install.info, /usr/local/Ascend/...), unless a
#    CANN environment is already active (ASCEND_TOOLKIT_HOME set). None found: a one-line note.
# 2. Exports the runtime settings below, each with the reason it is there.

_hrnet_source_cann() {
    if [[ -n ${ASCEND_TOOLKIT_HOME:-} ]]; then
        return 0  # already set up (by the user or a container): keep that CANN version
    fi
    local root="" candidate
    if [[ -r /etc/Ascend/ascend_cann_install.info ]]; then
        root=$(sed -n 's/^Install_Path=//p' /etc/Ascend/ascend_cann_install.info)
    fi
    for candidate in ${ASCEND_HOME:+"$ASCEND_HOME/ascend-toolkit/set_env.sh" "$ASCEND_HOME/nnae/set_env.sh"} \
        ${root:+"$root/ascend-toolkit/set_env.sh" "$root/nnae/set_env.sh"} \
        /usr/local/Ascend/ascend-toolkit/set_env.sh /usr/local/Ascend/nnae/set_env.sh; do
        if [[ -f $candidate ]]; then
            # CANN's script reads unset variables and is not written for `set -e`: source it with
            # both off, then give the caller back its own options.
            local options=$-
            set +eu
            source "$candidate"
            [[ $options != *e* ]] || set -e
            [[ $options != *u* ]] || set -u
            return 0
        fi
    done
    echo "env_npu.sh: no CANN set_env.sh found (set ASCEND_HOME to your Ascend install); using the environment as it is" >&2
}
_hrnet_source_cann
unset -f _hrnet_source_cann

# Task queue: torch_npu queues op launches and a second host thread dispatches them, so Python
# overhead overlaps device work; the largest eager-mode speed-up in the ModelZoo scripts.
export TASK_QUEUE_ENABLE=${TASK_QUEUE_ENABLE:-1}
# Chains of non-contiguous views (transpose, slice) are combined into one copy when materialised.
export COMBINED_ENABLE=${COMBINED_ENABLE:-1}
# CANN host logs at error level only (0 debug … 3 error): info logging costs step time and disk.
export ASCEND_GLOBAL_LOG_LEVEL=${ASCEND_GLOBAL_LOG_LEVEL:-3}
# CANN logs stay in ~/ascend/log rather than interleaving with the training output.
export ASCEND_SLOG_PRINT_TO_STDOUT=${ASCEND_SLOG_PRINT_TO_STDOUT:-0}
# No CANN event logs (0 = off): they are for profiling sessions, not training runs.
export ASCEND_GLOBAL_EVENT_ENABLE=${ASCEND_GLOBAL_EVENT_ENABLE:-0}
# Seconds ranks wait for each other while HCCL builds the communicator (default 120): 8 ranks that
# load kernels and build the model at start-up, or nodes that start minutes apart, need longer.
export HCCL_CONNECT_TIMEOUT=${HCCL_CONNECT_TIMEOUT:-1200}
# Seconds a collective waits for a late rank before HCCL fails it: 30 minutes, the process group's
# own timeout (hrnet_fast/distributed.py), so a slow checkpoint write to network storage or a slow
# first step does not kill the run, while a real hang still ends it.
export HCCL_EXEC_TIMEOUT=${HCCL_EXEC_TIMEOUT:-1800}
# HCCL's trust list off: with it on, HCCL needs a file listing every peer's IP.
export HCCL_WHITELIST_DISABLE=${HCCL_WHITELIST_DISABLE:-1}
# Which NPUs the ranks see (local rank i uses the i-th listed); unset = all.
if [[ -n ${HRNET_DEVICES:-} ]]; then
    export ASCEND_RT_VISIBLE_DEVICES=$HRNET_DEVICES
fi
