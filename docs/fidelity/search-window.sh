#!/usr/bin/env bash
# The fidelity check over the search's own window (MACs <= 1.2M, every arch the search could
# pick) instead of the supernet's validation window (0.9-1.2M): the demo's supernet (runs/demo,
# `make demo`) and three more seeds of the same 12-epoch uniform supernet (raw weights of
# docs/fidelity/lever-uniform-ema-e12*.yaml), one stand-alone ground truth (5-epoch recipe) in
# docs/fidelity/spos-store.sqlite. Resumable: stand-alone results and scores are read from the
# store, finished supernets and searches are not redone. Each supernet is checked with its own
# search's winner (the demo's search settings).
#   bash docs/fidelity/search-window.sh     # writes docs/fidelity/seeds/search-window/*.json
set -e
cd "$(dirname "$0")/../.."
store=docs/fidelity/spos-store.sqlite; mkdir -p docs/fidelity/seeds/search-window
[ -f runs/demo/search/best.json ] && [ -f runs/demo/pipeline.json ] || .venv/bin/spos pipeline --config fashion-mnist --out runs/demo --resume
OMP_NUM_THREADS=1 .venv/bin/torchrun --nproc_per_node 2 --standalone -m spos fidelity --pipeline runs/demo \
  --max-macs 1.2M --store $store --out runs/demo/fidelity-search-window
cp runs/demo/fidelity-search-window/fidelity.json docs/fidelity/seeds/search-window/demo-e12.json
for s in 1 2 3; do
  v=uniform-ema-e12-seed$s
  [ -f runs/levers/$v/final.pt ] || OMP_NUM_THREADS=1 .venv/bin/spos train-supernet --config docs/fidelity/lever-$v.yaml > runs/$v.log 2>&1 &
  [ $s = 2 ] && wait
done
wait
for s in 1 2 3; do
  v=uniform-ema-e12-seed$s; net=runs/levers/$v/checkpoint.pt; search=runs/levers/$v-raw-search
  .venv/bin/python -c "import yaml; yaml.safe_dump(yaml.safe_load(open('runs/demo/config.yaml'))['search'], open('runs/levers/search.yaml', 'w'))"
  [ -f $search/best.json ] || .venv/bin/spos search --supernet $net --config runs/levers/search.yaml --max-macs 1.2M \
    --out $search --device cpu $([ -f $search/search_state.json ] && echo --resume)
  .venv/bin/spos fidelity --pipeline runs/demo --max-macs 1.2M --store $store --supernet $net --search $search \
    --out runs/levers/$v/fidelity-search-window
  cp runs/levers/$v/fidelity-search-window/fidelity.json docs/fidelity/seeds/search-window/e12-seed$s-raw.json
done
