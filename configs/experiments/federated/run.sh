#!/usr/bin/env bash
# The federated family on MNIST: 16 clients, Dirichlet(alpha) partitions, full participation,
# every algorithm spending 10 mini-batches of 32 per client and round (FedAvg's local_steps,
# mini-batch SGD's and Local MixVR's budget), the same lr = 0.05, 100 rounds.
#
#   configs/experiments/federated/run.sh [OUT_DIR] [extra gossip train arguments ...]
#
# Runs 11 configs x alpha in {0.1, 0.01}, then writes OUT_DIR/compare-<alpha>.md and the
# figures of `gossip plot` (accuracy vs rounds and vs bytes).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-runs/federated}
shift || true
for alpha in 0.1 0.01; do
    runs=()
    for config in fedavg fedavgm mimelite mime scaffold fedprox local_mixvr local_mixvr_round local_mixvr_alpha1 \
                  minibatch_sgd minibatch_asgd; do
        name="${config}-alpha${alpha}"
        gossip train --quiet --config "$here/$config.toml" --set "problem.alpha=$alpha" \
            --out "$out" --name "$name" "$@"
        runs+=("$out/$name")
    done
    gossip compare "${runs[@]}" --target 0.9 --out "$out/compare-$alpha.md"
    gossip plot "${runs[@]}" --out "$out/figures-$alpha"
done
cat "$out"/compare-*.md
