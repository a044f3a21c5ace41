#!/usr/bin/env bash
# launch/train_eval_1p.sh: the Ascend ModelZoo script of the same name: evaluate a checkpoint on
# one device with `python -m hrnet_fast eval`, in the same device environment as training.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/seed_style.sh"

usage() {
    cat <<'USAGE'
usage: launch/train_eval_1p.sh --pth_path=CKPT [--data_path=DIR] [--device_id=ID] [--bs=N]
         [--precision_mode=MODE] [--device=KIND] [--dry-run] [-- EVAL ARGS]

Acc@1 / Acc@5 of CKPT on the val split of DIR, on one device. Ends with the Ascend scripts'
lines: Final Performance images/sec, Final Train Accuracy (the Acc@1), E2E Training Duration sec.
Flags take --name=value or --name value.

  --pth_path=CKPT         checkpoint: RUN_DIR/checkpoints/best.pt, or an official .pth (then
                          also give -- --model NAME)
  --data_path=DIR         shard directory [./shards]
  --device_id=ID          the NPU / GPU to use [0]
  --bs=N, --batch_size=N  batch [100]
  --precision_mode=MODE   fp32 | amp | bf16 | o2, or allow_mix_precision / must_keep_origin_dtype
  --device=KIND           npu | cuda | cpu [auto-detected]
  --dry-run               print the environment and the command, start nothing
  -- EVAL ARGS            more flags for `python -m hrnet_fast eval`

example:
  launch/train_eval_1p.sh --data_path=/data/imagenet_shards --pth_path=runs/train_full_8p/checkpoints/best.pt
USAGE
}

parse_seed_flags "data_path device_id device bs batch_size pth_path precision_mode" "$@"
[[ -n ${SEED_pth_path:-} ]] || die_usage "--pth_path is required (the checkpoint to evaluate)"
[[ -f $SEED_pth_path ]] || die_usage "checkpoint '$SEED_pth_path' not found"
shards=${SEED_data_path:-./shards}
check_shards "$shards"
[[ -z ${SEED_device_id:-} ]] || check_device_ids "$SEED_device_id"

env_before=$(env | sort)
resolve_python
resolve_device "${SEED_device:-}" "${SEED_device_id:-}"
apply_device_env "$DEVICE" "${SEED_device_id:-}" 1
command=("$PY" -m hrnet_fast eval --ckpt "$SEED_pth_path" --shards "$shards" --device "$DEVICE" --json)
batch=${SEED_bs:-${SEED_batch_size:-}}
[[ -z $batch ]] || command+=(--batch-size "$batch")
if [[ -n ${SEED_precision_mode:-} ]]; then
    precision=$(precision_flag "$SEED_precision_mode")
    command+=(--precision "$precision")
fi
command+=("${SEED_extra[@]}")

if ((SEED_dry_run)); then
    print_env_changes "$env_before"
    shell_quote "${command[@]}"
    exit 0
fi
out=$(mktemp)  # eval's stdout, which ends with its --json line
trap 'rm -f "$out"' EXIT
start=$SECONDS status=0
"${command[@]}" | tee "$out" || status=$?
if ((status != 0)); then
    note "evaluation failed (exit $status)"
    exit "$status"
fi
print_summary "$(json_value "$out" images_per_s)" "$(json_value "$out" acc1)" "$start"
