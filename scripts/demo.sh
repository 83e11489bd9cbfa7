#!/usr/bin/env bash
# `make demo`: a short real search on Fashion-MNIST, then export of the winner, then its B0–B7 family.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT=${DEMO_OUT:-demo_out}
TRIALS=${DEMO_TRIALS:-12}
mkdir -p "$OUT"
echo "== search: $TRIALS trials on Fashion-MNIST, PPO controller, target 400M FLOPs (results in $OUT/search)"
# A tiny proxy so that the demo takes a few minutes on 2 cores: children at 1/4 width, 32x32,
# 4,096 training images, 2 epochs. Real searches use a bigger proxy (see README).
$PY launch.py search --search_dir="$OUT/search" --trials="$TRIALS" --trials_per_update=4 \
  --dataset=fashion_mnist --proxy_width=0.25 --proxy_resolution=32 --proxy_train_images=4096 \
  --proxy_val_images=512 --proxy_epochs=2 --references=efficientnet-b0 --seed=0
echo
echo "== export: the best architecture as JSON, .keras, SavedModel and TFLite ($OUT/export)"
$PY launch.py export --search_dir="$OUT/search" --out="$OUT/export" --top_k=1 \
  --export_resolution=224 --export_num_classes=1000
echo
echo "== scale: the winner's B0–B7 family by the paper's table ($OUT/family)"
$PY launch.py scale --baseline="$OUT/search" --family=paper --out="$OUT/family"
echo
echo "== report: plots and summary ($OUT/search/report)"
$PY launch.py report --search_dir="$OUT/search"
echo
echo "Done. Results: $OUT/search (trials.jsonl, best.json, tb/), $OUT/export, $OUT/family, $OUT/search/report"
