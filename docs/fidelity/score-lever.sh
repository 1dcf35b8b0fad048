#!/usr/bin/env bash
# Score a lever supernet: its own search (the demo's search settings; fitness top-1, then held-out
# loss), then fidelity with each fitness on the demo's stand-alone ground truth (the store).
cd "$(dirname "$0")/../.."
# Usage (after `spos train-supernet --config docs/fidelity/lever-V.yaml` and `make demo` for the ground truth):
#   bash docs/fidelity/score-lever.sh V [raw] [acc|loss]
# raw: an `ema` run's raw weights (its last checkpoint.pt) instead of the averaged final.pt.
# The third argument limits it to one fitness (default: both).
v=$1; net=runs/levers/$v/final.pt; tag=$v
[ "$2" = raw ] && { net=runs/levers/$v/checkpoint.pt; tag=$v-raw; }
[ -f $net ] || { echo "no $net"; exit 1; }
.venv/bin/python - <<PY
import yaml; c = yaml.safe_load(open("runs/demo/config.yaml"))["search"]
yaml.safe_dump(c, open("runs/levers/search.yaml", "w"))
PY
for fit in ${3:-acc loss}; do
  s=runs/levers/$tag-search-$fit
  r=""; [ -f $s/search_state.json ] && r="--resume"
  [ -f $s/best.json ] || .venv/bin/spos search --supernet $net --config runs/levers/search.yaml --fitness $fit --max-macs 1.2M --out $s --device cpu $r
  .venv/bin/spos fidelity --pipeline runs/demo --supernet $net --search $s --fitness $fit --out runs/demo/fidelity-$tag-$fit --store runs/demo/spos-store.sqlite
done
