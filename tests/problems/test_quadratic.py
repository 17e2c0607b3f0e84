"""The quadratic problem: exact optimum, gradients, seeded noise, registry errors."""

import numpy as np
import pytest
import torch

from gossip.comm.local import LocalComm
from gossip.errors import ConfigError
from gossip.problems.registry import PROBLEMS, make_problem, problem_names, register_problem


def make(n=8, **options):
    opts = {"dim": 4, "sigma": 0.0, **options}
    return make_problem("quadratic", opts, n=n, seed=7, dtype=torch.float64)


def test_optimum_zeroes_the_average_gradient():
    p = make()
    X = p.x_star.expand(8, -1)
    G, _ = p.gradients(X, range(8), 0)
    torch.testing.assert_close(G.mean(0), torch.zeros(4, dtype=torch.float64), atol=1e-14, rtol=0)
    assert p.evaluate(X, LocalComm(8)) == pytest.approx(
        {"distance_to_optimum": 0.0, "loss_at_mean": 0.0, "train_loss": p.f_star}, abs=1e-14
    )


def test_gradient_is_the_derivative_of_the_loss():
    p = make()
    X = torch.randn(8, 4, dtype=torch.float64, requires_grad=True)
    G, losses = p.gradients(X, range(8), 3)
    (auto,) = torch.autograd.grad(losses.sum(), X)
    torch.testing.assert_close(G, auto)


def test_noise_depends_on_seed_node_and_step_only():
    p = make(sigma=1.0)
    X = torch.zeros(8, 4, dtype=torch.float64)
    full, _ = p.gradients(X, range(8), 5)
    part, _ = p.gradients(X[3:6], range(3, 6), 5)
    torch.testing.assert_close(full[3:6], part, rtol=0, atol=0)
    other, _ = p.gradients(X, range(8), 6)
    assert not torch.equal(full, other)
    clean, _ = make().gradients(X, range(8), 5)
    noise = (full - clean).numpy()
    assert np.allclose(noise[2], np.random.default_rng([7, 2, 5]).standard_normal(4))


def test_distance_and_suboptimality():
    p = make()
    X = p.x_star.expand(8, -1) + 1.0
    m = p.evaluate(X, LocalComm(8))
    assert m["distance_to_optimum"] == pytest.approx(4.0)
    assert m["loss_at_mean"] == pytest.approx(0.5 * p.a_np.mean() * 4.0)


@pytest.mark.parametrize(
    "options, key",
    [({"dim": 0}, "problem.dim"), ({"sigma": -1.0}, "problem.sigma"),
     ({"a_min": 2.0, "a_max": 1.0}, "problem.a_max"), ({"curvature": 1}, "problem.curvature")],
)
def test_bad_options_name_the_key(options, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        make(**options)


def test_unknown_problem_and_late_registration():
    with pytest.raises(ConfigError, match="unknown problem 'quad'.*quadratic"):
        make_problem("quad", {}, n=4, seed=0)
    from gossip.problems.quadratic import Quadratic, QuadraticConfig

    register_problem("quadratic_copy", QuadraticConfig)(Quadratic)
    try:
        assert "quadratic_copy" in problem_names()
        assert make_problem("quadratic_copy", {"dim": 3}, n=4, seed=0).dim == 3
        with pytest.raises(ValueError, match="registered twice"):
            register_problem("quadratic_copy", QuadraticConfig)(Quadratic)
    finally:
        PROBLEMS.remove("quadratic_copy")
    assert "quadratic_copy" not in problem_names()
