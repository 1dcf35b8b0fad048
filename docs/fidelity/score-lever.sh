#!/usr/bin/env bash
# Score a lever supernet: its own search (the demo's search settings; fitness top-1, then held-out
# loss), then fidelity with each fitness on the demo's stand-alone ground truth (the store).
cd "$(dirname "$0")/../.."
# Usage (after `spos train-supernet --config docs/fidelity/lever-V.yaml` and `make demo` for the ground truth):
#   bash docs/fidelity/score-lever.sh V
v=$1; net=runs/levers/$v/final.pt
[ -f $net ] || { echo "no $net"; exit 1; }
.venv/bin/python - <<PY
import yaml; c = yaml.safe_load(open("runs/demo/config.yaml"))["search"]
yaml.safe_dump(c, open("runs/levers/search.yaml", "w"))
PY
for fit in acc loss; do
  s=runs/levers/$v-search-$fit
  r=""; [ -f $s/search_state.json ] && r="--resume"
  [ -f $s/best.json ] || .venv/bin/spos search --supernet $net --config runs/levers/search.yaml --fitness $fit --max-macs 1.2M --out $s --device cpu $r
  .venv/bin/spos fidelity --pipeline runs/demo --supernet $net --search $s --fitness $fit --out runs/demo/fidelity-$v-$fit --store runs/demo/spos-store.sqlite
done
