#!/usr/bin/env bash
# Train the ImageNet supernet with the SPEC §4 recipe (the imagenet-supernet preset) under torchrun.
# One node:   DATA=/data/imagenet scripts/imagenet/train_supernet.sh
# Multi-node: on every node set NNODES, NODE_RANK, MASTER_ADDR (and MASTER_PORT), e.g.
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 DATA=/data/imagenet scripts/imagenet/train_supernet.sh
# Extra arguments go to `spos train-supernet` (e.g. --resume, --batch-size 512 --lr 0.65).
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${DATA:=/data/imagenet}" "${OUT:=runs/imagenet/supernet}"
: "${NNODES:=1}" "${NODE_RANK:=0}" "${MASTER_ADDR:=127.0.0.1}" "${MASTER_PORT:=29500}"
: "${NPROC_PER_NODE:=$(python -c 'import torch; print(max(1, torch.cuda.device_count()))')}"
exec python -m torch.distributed.run \
  --nnodes="$NNODES" --node_rank="$NODE_RANK" --nproc_per_node="$NPROC_PER_NODE" \
  --master_addr="$MASTER_ADDR" --master_port="$MASTER_PORT" \
  -m spos train-supernet --config imagenet-supernet --data "$DATA" --out "$OUT" "$@"
