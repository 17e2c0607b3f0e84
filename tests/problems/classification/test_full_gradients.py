"""Classification: full-batch gradients over each node's data; gradients of two points on
the same step use the same mini-batch."""

import torch

from gossip.problems.classification import make_classification_problem
from gossip.problems.classification.grads import loop_grads

SMALL = {"dataset": "synthetic", "alpha": 0.5, "batch_size": 8, "hidden": [16],
         "weight_decay": 0.01}


def test_full_gradients_and_same_step_batches():
    p = make_classification_problem(SMALL, n=4, seed=5)
    p64 = make_classification_problem(SMALL, n=4, seed=5, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    X = p64.init_params(range(4)) + 0.05 * torch.randn(4, p.dim, generator=gen,
                                                      dtype=torch.float64)
    Y = X + 0.05 * torch.randn(4, p.dim, generator=gen, dtype=torch.float64)
    G, losses = p64.full_gradients(X[1:3], range(1, 3))
    for k, i in enumerate((1, 2)):
        idx = torch.from_numpy(p64.parts[i])
        g, loss = loop_grads(p64.model, X[1 + k : 2 + k], p64.train_x[idx][None],
                             p64.train_y[idx][None])
        torch.testing.assert_close(G[k], g[0] + 0.01 * X[1 + k], rtol=0, atol=1e-12)
        torch.testing.assert_close(losses[k], loss[0], rtol=0, atol=1e-12)
    for Z in (X, Y):  # step 5 at two points: node i's batch_indices(i, 5) both times
        Gz, _ = p64.gradients(Z, range(4), 5)
        for i in range(4):
            idx = torch.from_numpy(p64.batch_indices(i, 5))
            g, _ = loop_grads(p64.model, Z[i : i + 1], p64.train_x[idx][None],
                              p64.train_y[idx][None])
            torch.testing.assert_close(Gz[i], g[0] + 0.01 * Z[i], rtol=0, atol=1e-12)
    assert p.HAS_FULL_GRADIENTS and p.full_gradients(X[:1].float(), range(1))[0].dtype == \
        torch.float32
