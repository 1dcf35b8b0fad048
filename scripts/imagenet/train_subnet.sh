#!/usr/bin/env bash
# Train one architecture from scratch on ImageNet with the SPEC §4 subnet recipe
# (the imagenet-subnet preset, 360 epochs) under torchrun.
# Usage: DATA=/data/imagenet scripts/imagenet/train_subnet.sh ARCH_OR_ZOO_NAME [spos train flags]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR (and MASTER_PORT) on every node.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -lt 1 ]; then echo "usage: $0 ARCH_OR_ZOO_NAME [spos train flags]" >&2; exit 2; fi
arch=$1; shift
: "${DATA:=/data/imagenet}" "${OUT:=runs/imagenet/subnet}"
: "${NNODES:=1}" "${NODE_RANK:=0}" "${MASTER_ADDR:=127.0.0.1}" "${MASTER_PORT:=29500}"
: "${NPROC_PER_NODE:=$(python -c 'import torch; print(max(1, torch.cuda.device_count()))')}"
exec python -m torch.distributed.run \
  --nnodes="$NNODES" --node_rank="$NODE_RANK" --nproc_per_node="$NPROC_PER_NODE" \
  --master_addr="$MASTER_ADDR" --master_port="$MASTER_PORT" \
  -m spos train "$arch" --config imagenet-subnet --data "$DATA" --out "$OUT" "$@"
