"""Drives the default run's D-SGD directly, to choose and check its defaults (not a test).

``X <- W (X - lr G)`` on 16 in-process nodes, ring with Metropolis weights, the classification
problem's defaults (MNIST, Dirichlet alpha 0.1, mlp 784-128-10, batch 32)::

    OMP_NUM_THREADS=1 PYTHONPATH=. python tests/problems/classification/dsgd_default_run.py \
        [rounds=1000] [lr=0.2] [eval=200] [n=16] [alpha=...] [model=...] ...

and ``... dsgd_default_run.py bench`` for node-steps/s of vmap vs loop for the mlp.
"""

import sys
import time

import torch

import topologies
from gossip.comm.local import LocalComm
from gossip.models import make_model
from gossip.problems.classification import make_classification_problem
from gossip.problems.classification.backends import loop_grads, vectorized_grads


def train(argv):
    args = dict(a.split("=", 1) for a in argv)
    n, lr = int(args.pop("n", 16)), float(args.pop("lr", 0.2))
    rounds, every = int(args.pop("rounds", 1000)), int(args.pop("eval", 200))
    opts = {}
    for k, v in args.items():
        if k == "hidden":
            opts[k] = [int(h) for h in v.split(",")]
        elif k in ("alpha", "weight_decay"):
            opts[k] = float(v)
        else:
            opts[k] = int(v) if v.isdigit() else v
    t0 = time.time()
    problem = make_classification_problem(opts, n=n, seed=0)
    W = topologies.mixing_matrix(topologies.build("ring", n))
    comm = LocalComm(n)
    X = problem.init_params(comm.nodes)
    print(f"setup {time.time() - t0:.1f}s backend {problem.backend.name} dim {problem.dim}")
    for t in range(rounds):
        G, losses = problem.gradients(X, comm.nodes, t)
        X = comm.mix(X - lr * G, W)
        if (t + 1) % every == 0 or t + 1 == rounds:
            m = problem.evaluate(X, comm)
            print(f"round {t + 1} {time.time() - t0:.1f}s train_loss {losses.mean():.3f} "
                  + " ".join(f"{k} {v:.4f}" for k, v in m.items()), flush=True)
    print(f"total {time.time() - t0:.1f}s")


def bench():
    torch.manual_seed(0)
    model = make_model("mlp", (1, 28, 28), 10)
    d = sum(p.numel() for p in model.parameters())
    print(f"torch threads {torch.get_num_threads()}")
    for n in (16, 64):
        X = 0.01 * torch.randn(n, d)
        bx, by = torch.randn(n, 32, 1, 28, 28), torch.randint(0, 10, (n, 32))
        for name, f in (("vmap", vectorized_grads), ("loop", loop_grads)):
            f(model, X, bx, by)
            reps = 10
            w0 = time.time()
            for _ in range(reps):
                f(model, X, bx, by)
            wall = (time.time() - w0) / reps
            print(f"n={n} {name}: {wall * 1e3:.1f} ms per block step, {n / wall:.0f} node-steps/s")


if __name__ == "__main__":
    bench() if sys.argv[1:] == ["bench"] else train(sys.argv[1:])
