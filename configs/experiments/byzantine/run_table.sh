#!/usr/bin/env bash
# The README's Byzantine table: every row of it, one run each, in OUT (default runs/byzantine).
# usage: bash configs/experiments/byzantine/run_table.sh [OUT]
set -eu
OUT=${1:-runs/byzantine}
CFG=configs/experiments/byzantine/alie_allreduce.toml
run() { local name=$1; shift
  python -m gossip train --quiet --config $CFG --out "$OUT" --name "$name" "$@" </dev/null; }
for part in iid dirichlet; do
  run $part-none-mean --set data.partition=$part --set algorithm.aggregator=mean
  P="--set data.partition=$part --set attack.name=alie --set attack.nodes=3"
  run $part-alie-mean $P --set algorithm.aggregator=mean
  run $part-alie-cm $P --set algorithm.aggregator=cm
  run $part-alie-krum $P --set algorithm.aggregator=krum --set "algorithm.aggregator_options={f = 3}"
  run $part-alie-cm-wm $P --set algorithm.aggregator=cm --set algorithm.worker_momentum=0.9
  run $part-alie-cclip-wm $P --set algorithm.aggregator=cclip --set algorithm.worker_momentum=0.9
  run $part-alie-krum-wm $P --set algorithm.aggregator=krum --set "algorithm.aggregator_options={f = 3}" --set algorithm.worker_momentum=0.9
  G="--set data.partition=$part --set attack.name=gaussian --set attack.nodes=3"
  run $part-gaussian-mean $G --set algorithm.aggregator=mean
  run $part-gaussian-cm $G --set algorithm.aggregator=cm
done
P="--set data.partition=dirichlet --set attack.name=alie --set attack.nodes=3"
for rule in cm cclip; do
  run dirichlet-alie-$rule-wm-b2 $P --set algorithm.aggregator=$rule \
    --set algorithm.worker_momentum=0.9 --set algorithm.bucketing=2
done
