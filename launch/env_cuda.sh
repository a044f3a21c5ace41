# launch/env_cuda.sh: the CUDA GPU environment for hrnet-fast ranks.
#
#   source launch/env_cuda.sh                      # in your shell, before `hrnet-fast train`
#   HRNET_DEVICES=0,1 source launch/env_cuda.sh    # also restrict the visible GPUs
#
# launch/run.sh sources it for --device cuda. It is sourced into the caller's shell, so it never
# uses `set -e` or `exit`, and a variable you already exported keeps your value.

# Number GPUs as nvidia-smi does (by PCI bus), so --devices 0,1 means the GPUs nvidia-smi calls 0, 1.
export CUDA_DEVICE_ORDER=${CUDA_DEVICE_ORDER:-PCI_BUS_ID}
# A failed or timed-out collective tears the process down, so torchrun sees the failure (and
# restarts with --max-restarts) instead of the job hanging. torch 2.1 reads the older name
# NCCL_ASYNC_ERROR_HANDLING; not set here because torch ≥ 2.2 warns on every rank when it is.
export TORCH_NCCL_ASYNC_ERROR_HANDLING=${TORCH_NCCL_ASYNC_ERROR_HANDLING:-1}
# NCCL's warnings (a network fallback, a bad InfiniBand set-up) reach the log; its INFO chatter does not.
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
# Which GPUs the ranks see (local rank i uses the i-th listed); unset = all.
if [[ -n ${HRNET_DEVICES:-} ]]; then
    export CUDA_VISIBLE_DEVICES=$HRNET_DEVICES
fi
