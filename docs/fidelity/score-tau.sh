#!/usr/bin/env bash
# Score the 16 random archs of the demo's fidelity check with one lever supernet, raw weights and
# (for an `ema` run) the averaged weights, without a search of its own: the winner row is the
# demo's winner (already in the store), so nothing is trained; for tau over supernet seeds
# (benchmarks/score_ensemble.py). score-lever.sh V adds the supernet's own search and winner.
#   bash docs/fidelity/score-tau.sh V        # writes runs/demo/fidelity-V-{raw,ema}
cd "$(dirname "$0")/../.."
v=$1; d=runs/levers/$v
[ -f $d/final.pt ] || { echo "no $d/final.pt"; exit 1; }
# An ema run: raw = its last checkpoint.pt, ema = final.pt; otherwise final.pt is the raw weights.
if grep -q '^ema:' docs/fidelity/lever-$v.yaml; then runs="raw:$d/checkpoint.pt ema:$d/final.pt"; else runs="raw:$d/final.pt"; fi
for kf in $runs; do
  k=${kf%%:*}; f=${kf#*:}
  .venv/bin/spos fidelity --pipeline runs/demo --supernet $f --out runs/demo/fidelity-$v-$k \
    --store runs/demo/spos-store.sqlite | grep -E "Kendall|estimate|store"
done
