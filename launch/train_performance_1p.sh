#!/usr/bin/env bash
# launch/train_performance_1p.sh: the Ascend ModelZoo script of the same name, on top of launch/run.sh:
# a performance run, 1000 steps of the ascend recipe on 1 device. Flags: --help.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/seed_style.sh"
seed_train 1 performance "$@"
