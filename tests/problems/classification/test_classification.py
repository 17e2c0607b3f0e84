"""The classification problem: placement-independent streams, evaluation, registry."""

import numpy as np
import pytest
import torch

from gossip.comm.local import LocalComm
from gossip.errors import ConfigError
from gossip.problems.classification import make_classification_problem

SMALL = {"dataset": "synthetic", "alpha": 0.5, "batch_size": 8, "hidden": [16]}


@pytest.fixture(scope="module")
def problem():
    return make_classification_problem(SMALL, n=8, seed=5)


def test_gradients_independent_of_placement(problem):
    X = problem.init_params(range(8)) + 0.01 * torch.randn(8, problem.dim)
    for step in (0, 7, 300):  # 300 * 8 samples: several epochs on every node
        G, losses = problem.gradients(X, range(8), step)
        G1, l1 = problem.gradients(X[:3], range(0, 3), step)
        G2, l2 = problem.gradients(X[3:], range(3, 8), step)
        assert torch.equal(G, torch.cat([G1, G2])) and torch.equal(losses, torch.cat([l1, l2]))
    # a fresh problem (new caches, as on another rank) gives the same rows too
    other = make_classification_problem(SMALL, n=8, seed=5)
    G3, _ = other.gradients(X[5:7], range(5, 7), 300)
    assert torch.equal(G3, problem.gradients(X, range(8), 300)[0][5:7])


def test_stream_visits_every_local_sample_once_per_epoch(problem):
    part = problem.parts[2]
    m, B = len(part), problem.batch_size
    steps = (2 * m) // B + 1
    seen = np.concatenate([problem.batch_indices(2, t) for t in range(steps)])
    assert np.array_equal(np.sort(seen[:m]), part)  # epoch 0: a permutation of D_2
    assert np.array_equal(np.sort(seen[m : 2 * m]), part)  # epoch 1 too
    assert not np.array_equal(seen[:m], seen[m : 2 * m])  # in a fresh order


def test_seed_changes_batches():
    a = make_classification_problem(SMALL, n=8, seed=5)
    b = make_classification_problem(SMALL, n=8, seed=6)
    assert not np.array_equal(a.batch_indices(0, 0), b.batch_indices(0, 0))


def test_same_start_and_evaluate(problem):
    X = problem.init_params(range(8))
    assert torch.equal(X[0], X[7])
    comm = LocalComm(8)
    m = problem.evaluate(X, comm)
    assert set(m) == {"test_accuracy", "test_loss", "test_accuracy_nodes", "epoch"}
    # every node holds x_bar, so the node mean accuracy is the averaged model's accuracy
    assert m["test_accuracy_nodes"] == pytest.approx(m["test_accuracy"], abs=1e-12)
    assert m["test_loss"] == pytest.approx(np.log(10), rel=0.2)


def test_node_accuracy_is_mean_of_individual_models(problem):
    comm = LocalComm(8)
    X = problem.init_params(range(8))
    for t in range(30):  # train nodes apart, no gossip
        X = X - 0.5 * problem.gradients(X, range(8), t)[0]
    accs = []
    for i in range(8):
        Xi = X[i : i + 1].expand(8, -1)
        accs.append(problem.evaluate(Xi, comm)["test_accuracy"])
    m = problem.evaluate(X, comm)
    assert m["test_accuracy_nodes"] == pytest.approx(np.mean(accs), abs=1e-12)
    assert m["epoch"] == pytest.approx(30 * 8 * 8 / 2000)


def test_learns_synthetic_with_averaging():
    p = make_classification_problem({**SMALL, "partition": "iid"}, n=4, seed=0)
    comm = LocalComm(4)
    X = p.init_params(range(4))
    W = torch.full((4, 4), 0.25)
    for t in range(150):
        X = W @ (X - 0.2 * p.gradients(X, range(4), t)[0])
    assert p.evaluate(X, comm)["test_accuracy"] > 0.9


def test_describe_and_partition_table(problem):
    d = problem.describe()
    table = problem.partition_table()
    assert table.shape == (8, 10) and table.sum() == 2000
    assert d["partition"]["class_counts"] == table.tolist()
    assert d["backend"] == "fused" and d["parameters"] == problem.dim == 256 * 16 + 16 + 170
    assert d["model"] == "mlp" and d["dataset"] == "synthetic"
    assert d["partition"]["drawn_as"] == "dirichlet" and d["partition"]["draws"] >= 1


def test_dirichlet_balanced_partition_recorded():
    p = make_classification_problem({**SMALL, "partition": "dirichlet_balanced", "alpha": 0.05,
                                     "min_fraction": 0.4}, n=12, seed=2)
    part = p.describe()["partition"]
    assert part["name"] == part["drawn_as"] == "dirichlet_balanced"
    assert part["group_size"] == 10 and part["min_fraction"] == 0.4
    step = 10 * 2000 // 12  # group 0: 10 nodes on 1666 samples, group 1: 2 on the rest
    assert min(part["sizes"][:10]) >= int(0.4 * step / 10)
    assert min(part["sizes"][10:]) >= int(0.4 * (2000 - step) / 2)
    with pytest.raises(ConfigError, match=r"problem.min_fraction must be in \[0, 1\), got 1.5"):
        make_classification_problem({**SMALL, "min_fraction": 1.5}, n=2, seed=0)


def test_weight_decay_adds_x():
    a = make_classification_problem(SMALL, n=2, seed=1)
    b = make_classification_problem({**SMALL, "weight_decay": 0.1}, n=2, seed=1)
    X = a.init_params(range(2))
    assert torch.allclose(b.gradients(X, range(2), 0)[0], a.gradients(X, range(2), 0)[0] + 0.1 * X)


def test_options_and_subsets():
    p = make_classification_problem({**SMALL, "test_subset": 100, "eval_nodes": 3,
                                     "model": "lenet", "backend": "loop"}, n=8, seed=0)
    assert len(p.test_y) == 100 and p.eval_ids.tolist() == [0, 4, 7]
    assert p.backend.name == "loop"
    with pytest.raises(ConfigError, match="problem.model must be one of"):
        make_classification_problem({"model": "vgg"}, n=2)
    with pytest.raises(ConfigError, match="unknown key problem.lr"):
        make_classification_problem({"lr": 0.1}, n=2)
    with pytest.raises(ConfigError, match="problem.hidden must be positive integers"):
        make_classification_problem({**SMALL, "hidden": [-1]}, n=2)


def test_registered():
    from gossip.problems.registry import make_problem, problem_names

    assert "classification" in problem_names()
    p = make_problem("classification", SMALL, n=3, seed=0)
    assert p.n == 3 and p.dim == 256 * 16 + 16 + 170
