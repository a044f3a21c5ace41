#!/usr/bin/env bash
# `make demo`: the whole product on a real dataset that ships inside scikit-learn (handwritten digits):
# ImageNet-layout JPEG folders -> python -m pack imagenet -> launch/run.sh --nproc 1 -> hrnet-fast eval.
# Runs on the accelerator when there is one, else on the CPU (a few minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO_DIR=${DEMO_DIR:-demo}
EPOCHS=${EPOCHS:-8}
SEED=${SEED:-0}
rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"

echo "== 1/4 digits as JPEG folders ($DEMO_DIR/digits)"
python tools/make_digits.py "$DEMO_DIR/digits" --size 32

echo "== 2/4 pack into shards ($DEMO_DIR/shards)"
# 1442 train digits = 14 shards of 103: 7 for each of the 2 loader workers, so an epoch drops only
# the 17 a worker has beyond its 22 full batches (shards of 100 dealt 15 to 2 workers dropped 98).
python -m pack imagenet "$DEMO_DIR/digits" --out "$DEMO_DIR/shards" --shard-size 103 \
    --synset-names "$DEMO_DIR/digits/synset_names.txt"

echo "== 3/4 train hrnet_w18_small_v1 at 32 px for $EPOCHS epochs"
# lr: the cosine recipe's rule, 0.05 per 128 images = 0.0125 at batch 32 (4× that sent the train
# loss above chance in epoch 1). --precise-bn 8: each validation uses BatchNorm statistics of the
# current weights; the running averages trail them in so short a run (chance-level epoch 0).
launch/run.sh --nproc 1 --shards "$DEMO_DIR/shards" --out "$DEMO_DIR/run" -- \
    --model hrnet_w18_small_v1 --image-size 32 --epochs "$EPOCHS" --batch-size 32 --workers 2 \
    --recipe cosine --warmup-epochs 1 --crop-scale-min 0.35 --no-hflip --log-interval 10 \
    --precise-bn 8 --seed "$SEED"

echo "== 4/4 evaluate the best checkpoint"
python -m hrnet_fast eval --ckpt "$DEMO_DIR/run/checkpoints/best.pt" --shards "$DEMO_DIR/shards" --workers 2
