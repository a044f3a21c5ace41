#!/usr/bin/env bash
# launch/train_full_1p.sh: the Ascend ModelZoo script of the same name, on top of launch/run.sh:
# full training, the ascend recipe for 100 epochs on 1 device. Flags: --help.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/seed_style.sh"
seed_train 1 full "$@"
