#!/usr/bin/env bash
# Few-shot probe (docs/fidelity/few_shot_probe.py) over the four 10-epoch uniform supernets of the
# seed table in docs/fidelity.md: split by block B's type (4 children, E epochs each) and the
# unsplit control (4*E epochs), each continued from the same 10-epoch checkpoint, then scored on
# the 16 random archs (the store has the ground truth: nothing stand-alone is retrained).
#   bash docs/fidelity/few-shot.sh [B] [E]      # writes runs/fewshot/sS-bB-eE and runs/demo/fidelity-fs-*
cd "$(dirname "$0")/../.."
B=${1:-0}; E=${2:-1}
bases="0:runs/levers/uniform-ema/checkpoint.pt 1:runs/levers/uniform-ema-seed1/checkpoint.pt
2:runs/levers/uniform-ema-e20-seed2/snap-e10.pt 3:runs/levers/uniform-ema-e20-seed3/snap-e10.pt"
score() {  # supernet file, output name
  [ -f runs/demo/fidelity-fs-$2/fidelity.json ] || .venv/bin/spos fidelity --pipeline runs/demo --supernet $1 \
    --out runs/demo/fidelity-fs-$2 --store runs/demo/spos-store.sqlite | grep -E "Kendall"
}
for sb in $bases; do
  s=${sb%%:*}; base=${sb#*:}; o=runs/fewshot/s$s-b$B-e$E
  [ -f $o/b3/final.pt ] || { rm -rf $o/b?; .venv/bin/python docs/fidelity/few_shot_probe.py $base $o --block $B --epochs $E; }
  c=runs/fewshot/s$s-all-e$((4 * E))
  [ -f $c/all/final.pt ] || { rm -rf $c; .venv/bin/python docs/fidelity/few_shot_probe.py $base $c --unsplit --epochs $((4 * E)); }
  for v in 0 1 2 3; do score $o/b$v/final.pt s$s-b$B-e$E-c$v; done
  score $c/all/final.pt s$s-all-e$((4 * E))
  .venv/bin/python docs/fidelity/few_shot_probe.py --block $B --combine runs/demo/fidelity-fs-s$s-b$B-e$E-c{0,1,2,3}/fidelity.json
  .venv/bin/python benchmarks/score_ensemble.py runs/demo/fidelity-fs-s$s-all-e$((4 * E))/fidelity.json --truth docs/fidelity/fidelity.json | grep -i 'stand-alone\|tau' | head -2
done
