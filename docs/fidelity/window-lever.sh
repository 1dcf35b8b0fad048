#!/usr/bin/env bash
# A supernet lever measured on the search's own window (<= 1.2M MACs) against the stand-alone
# ground truth of docs/fidelity/search-window.sh (16 random archs x 2 seeds, 5-epoch recipe, in
# docs/fidelity/spos-store.sqlite): for each seed, train docs/fidelity/lever-V-seedS.yaml, search it
# with the demo's settings, and check its winner and ranking (`spos fidelity`); only the winner's
# two stand-alone runs are new. Resumable: finished supernets, searches and stand-alone runs are
# not redone. Needs runs/demo (`make demo`) for the recipe and search settings.
#   bash docs/fidelity/window-lever.sh V 0 1 2 3   # -> docs/fidelity/seeds/search-window/V-seedS.json
# Another pipeline (its space, recipe, search settings and ground truth) and budget:
#   PIPE=runs/demo-maps BUDGET=1.4M OUT=docs/fidelity/seeds/maps bash docs/fidelity/window-lever.sh V 1 2 3
# The K = 32 x 3-seed ground truth of k32_table.py instead, scoring only (no search of its own: the
# demo's winner, whose runs are stored, stands in; nothing stand-alone is trained):
#   ARCHS=32 SEEDS=3 SEARCH=pipeline OUT=docs/fidelity/seeds/k32 bash docs/fidelity/window-lever.sh V 1 2 3
# One thread a process: run two of these side by side on a 2-core host.
set -e
cd "$(dirname "$0")/../.."
v=$1; shift
store=docs/fidelity/spos-store.sqlite; out=${OUT:-docs/fidelity/seeds/search-window}
pipe=${PIPE:-runs/demo}; budget=${BUDGET:-1.2M}; settings=runs/levers/search-$(basename $pipe).yaml
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p runs/levers $out
.venv/bin/python -c "import yaml; yaml.safe_dump(yaml.safe_load(open('$pipe/config.yaml'))['search'], open('$settings', 'w'))"
for s in "$@"; do
  run=runs/levers/$v-seed$s; net=$run/final.pt; search=$run-search
  [ -f $net ] || .venv/bin/spos train-supernet --config docs/fidelity/lever-$v-seed$s.yaml \
    $([ -f $run/checkpoint.pt ] && echo --resume) > $run.log 2>&1
  if [ "${SEARCH:-own}" = own ]; then
    [ -f $search/best.json ] || .venv/bin/spos search --supernet $net --config $settings --max-macs $budget \
      --out $search --device cpu $([ -f $search/search_state.json ] && echo --resume) > $search.log 2>&1
  else
    search=$pipe/search
  fi
  fid=$run/fidelity-search-window-k${ARCHS:-16}-r${SEEDS:-2}
  .venv/bin/spos fidelity --pipeline $pipe --max-macs $budget --store $store --supernet $net --search $search \
    --archs ${ARCHS:-16} --seeds ${SEEDS:-2} --out $fid > $fid.log 2>&1
  cp $fid/fidelity.json $out/$v-seed$s.json
  tail -n 25 $fid.log
done
