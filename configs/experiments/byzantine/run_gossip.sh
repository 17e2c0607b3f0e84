#!/usr/bin/env bash
# The README's decentralized MNIST rows, one run each, in OUT (default runs/byzantine).
# usage: bash configs/experiments/byzantine/run_gossip.sh [OUT]
set -eu
OUT=${1:-runs/byzantine}
CFG=configs/experiments/byzantine/gossip_torus.toml
run() { local name=$1; shift
  python -m gossip train --quiet --config $CFG --out "$OUT" --name "$name" "$@" </dev/null; }
A=(--set attack.name=gaussian --set "attack.nodes=[3, 11]")
C=(--set algorithm.name=clipped_gossip --set algorithm.clip_count=2)
run torus-none-dsgd
run torus-gaussian-dsgd "${A[@]}"
run torus-none-clipped "${C[@]}"
run torus-gaussian-clipped "${C[@]}" "${A[@]}"
