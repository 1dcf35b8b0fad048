#!/usr/bin/env bash
# The whole SPOS pipeline on ImageNet with torchrun + DDP (SPEC §4 recipe):
#   scripts/imagenet/pipeline.sh /data/imagenet [spos pipeline options, e.g. --set supernet.epochs=60]
# Environment: NPROC (GPUs per node; default all visible), NNODES, NODE_RANK, MASTER_ADDR,
# MASTER_PORT for several nodes; CONFIG (a preset or file; default the imagenet preset); OUT.
# Re-running the same command continues a stopped run (--resume): finished stages are skipped.
set -euo pipefail
data=${1:?usage: $0 IMAGENET_ROOT [spos pipeline options]}
shift
nproc=${NPROC:-$(nvidia-smi -L 2>/dev/null | wc -l || true)}
[ "${nproc:-0}" -ge 1 ] || nproc=1
args=(--config "${CONFIG:-imagenet}" --data "$data" --resume)
[ -n "${OUT:-}" ] && args+=(--out "$OUT")
exec torchrun --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --nproc_per_node="$nproc" \
  --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${MASTER_PORT:-29500}" \
  -m spos pipeline "${args[@]}" "$@"
