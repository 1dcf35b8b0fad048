#!/usr/bin/env bash
# Fine-tune-before-scoring probe (docs/fidelity/finetune_probe.py) on the four 10-epoch uniform
# supernets of the seed table in docs/fidelity.md (raw weights: each ema run's checkpoint.pt, the
# preset's weights), the 16 random archs of docs/fidelity/fidelity.json. Trains the supernets
# first where runs/levers lacks them (3.7 min each on one thread; WAIT=1: wait for another job's
# final.pt instead). Resumable.
#   bash docs/fidelity/finetune.sh LR [STEPS...]   # writes docs/fidelity/seeds/finetune/lrLR-sS.json
cd "$(dirname "$0")/../.."
lr=${1:-0.01}; shift; steps=${*:-0 25 100 400}
mkdir -p docs/fidelity/seeds/finetune
for s in 0 1 2 3; do
  v=uniform-ema$([ $s = 0 ] || echo -seed$s)
  if [ -n "$WAIT" ]; then  # another job trains the supernets: wait for its final.pt
    while [ ! -f runs/levers/$v/final.pt ]; do sleep 20; done
  else
    [ -f runs/levers/$v/final.pt ] || OMP_NUM_THREADS=1 .venv/bin/spos train-supernet --config docs/fidelity/lever-$v.yaml
  fi
  echo "supernet seed $s, lr $lr"
  OMP_NUM_THREADS=1 .venv/bin/python docs/fidelity/finetune_probe.py runs/levers/$v/checkpoint.pt \
    docs/fidelity/seeds/finetune/lr$lr-s$s.json --lr $lr --steps $steps
done
