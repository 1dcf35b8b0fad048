#!/usr/bin/env bash
# A supernet's ranking and path accuracy against its training length, from one constant-lr run:
# snap-eN.pt is that run's checkpoint.pt copied at the end of epoch N by snapshot-epochs.sh (with a
# constant lr and the data order seeded by (seed, epoch), the same weights an N-epoch run of the
# config ends with).
# For each N: tau of the raw weights on the demo's fidelity archs (nothing trained: the ground
# truth is in the store) and benchmarks/supernet_paths.py's 8 window paths on the test split.
#   bash docs/fidelity/score-epochs.sh V 10 12 14 16 20   # runs/levers/V/snap-eN.pt (20: checkpoint.pt)
cd "$(dirname "$0")/../.."
v=$1; shift; d=runs/levers/$v
for n in "$@"; do
  f=$d/snap-e$n.pt; [ -f $f ] || f=$d/checkpoint.pt
  tau=$(.venv/bin/spos fidelity --pipeline runs/demo --supernet $f --out runs/demo/fidelity-$v-e$n \
        --store runs/demo/spos-store.sqlite | grep Kendall)
  paths=$(.venv/bin/python benchmarks/supernet_paths.py $f --paths 8 | tail -1)
  echo "$v epochs $n ($f): $tau | window paths $paths"
done
