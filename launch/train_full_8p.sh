#!/usr/bin/env bash
# launch/train_full_8p.sh: the Ascend ModelZoo script of the same name, on top of launch/run.sh:
# full training, the ascend recipe for 100 epochs on 8 devices. Flags: --help.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/seed_style.sh"
seed_train 8 full "$@"
