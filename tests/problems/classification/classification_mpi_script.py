"""D-SGD rounds on the classification problem, run in process or under mpiexec (see
test_classification_mpi.py). Prints one JSON line on rank 0: metrics and every node's model."""

import json
import sys

import topologies
from gossip.comm.local import LocalComm
from gossip.problems.classification import make_classification_problem

OPTIONS = {"dataset": "synthetic", "alpha": 0.5, "batch_size": 8, "hidden": [16],
           "eval_nodes": 3, "test_subset": 300}


def main(mode: str, n: int = 5, rounds: int = 6) -> dict:
    if mode == "mpi":
        from gossip.comm.mpi import MPIComm

        comm = MPIComm(n)
    else:
        comm = LocalComm(n)
    problem = make_classification_problem(OPTIONS, n=n, seed=3)
    W = topologies.mixing_matrix(topologies.build("ring", n))
    X = problem.init_params(comm.nodes)
    losses = []
    for t in range(rounds):
        G, loss = problem.gradients(X, comm.nodes, t)
        X = comm.mix(X - 0.3 * G, W)
        losses.append(comm.sum_rows(loss[:, None])[0].item() / n)
    out = {"metrics": problem.evaluate(X, comm), "losses": losses,
           "X": comm.allgather_rows(X).double().sum(1).tolist()}
    if comm.rank == 0:
        print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main(sys.argv[1])
