#!/usr/bin/env bash
# Train a lever supernet and keep its checkpoint at the end of every epoch as snap-eN.pt (N =
# epochs done), for score-epochs.sh. The trainer writes checkpoint.pt atomically right after the
# epoch's metrics line, so a copy taken once checkpoint.pt is newer than metrics.jsonl is that
# epoch's end (the last copy equals the run's final checkpoint.pt).
#   bash docs/fidelity/snapshot-epochs.sh V    # spos train-supernet --config docs/fidelity/lever-V.yaml
cd "$(dirname "$0")/../.."
v=$1; d=runs/levers/$v
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} .venv/bin/spos train-supernet --config docs/fidelity/lever-$v.yaml --device cpu &
train=$!
n=0
while kill -0 $train 2>/dev/null; do
  m=$( [ -f $d/metrics.jsonl ] && wc -l < $d/metrics.jsonl || echo 0 )
  if [ "$m" -gt "$n" ] && [ $d/checkpoint.pt -nt $d/metrics.jsonl ]; then
    cp $d/checkpoint.pt $d/snap-e$m.pt; n=$m
  fi
  sleep 1
done
wait $train
