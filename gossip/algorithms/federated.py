"""Pieces shared by the federated family (FedProx, SCAFFOLD, Mime, mini-batch SGD, Local MixVR).

A round of a federated algorithm on the hosted block reads, as in :mod:`gossip.algorithms.fedavg`:
the server samples ``S_t`` (:func:`~gossip.algorithms.fedavg.configure_round`), broadcasts its
state to them (``comm.broadcast``), the sampled clients run local steps from the server model
(:func:`client_steps`, only rows in :func:`sampled_mask` move) and upload (``comm.upload_mean``).
Several server vectors sent together travel as one message (:func:`down`, one
``comm.broadcast`` of their concatenation); several client rows uploaded together likewise
(:func:`up`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from gossip.algorithms.base import Context
from gossip.algorithms.fedavg import aggregate_round, configure_round
from gossip.errors import ConfigError
from gossip.options import at_least, fraction, positive
from gossip.problems.base import Problem
from gossip.registry import option

__all__ = [
    "ClientRounds",
    "client_steps",
    "configure_round",
    "down",
    "require_full_gradients",
    "sampled_full_gradients",
    "sampled_mask",
    "up",
]


@dataclass(frozen=True)
class ClientRounds:
    """The options every algorithm of the family shares (its ``Config`` extends this):
    ``client_fraction`` sampled per round (:func:`configure_round`), ``local_steps`` K,
    ``server_lr`` on the averaged update."""

    client_fraction: float = option(0.1, "fraction of clients sampled per round",
                                    check=fraction)
    local_steps: int = option(1, "local steps K per round", check=at_least(1))
    server_lr: float = option(1.0, "server step size on the averaged update", check=positive)


def require_full_gradients(problem: Problem, algorithm: str) -> None:
    """ConfigError unless ``problem`` offers :meth:`~gossip.problems.base.Problem.
    full_gradients` (``HAS_FULL_GRADIENTS``)."""
    if not problem.HAS_FULL_GRADIENTS:
        raise ConfigError(
            f"algorithm.name={algorithm!r} needs full-batch gradients, which problem "
            f"{type(problem).__name__} does not offer (quadratic, logistic and classification do)"
        )


def sampled_full_gradients(
    problem: Problem, X: torch.Tensor, nodes: range, mask: torch.Tensor
) -> torch.Tensor:
    """``grad f_i(x_i)`` (:meth:`~gossip.problems.base.Problem.full_gradients`) of the rows
    where ``mask`` is true, zeros elsewhere: a client that is not sampled computes nothing."""
    G = torch.zeros_like(X)
    for k in torch.nonzero(mask).flatten().tolist():
        i = nodes.start + k
        G[k] = problem.full_gradients(X[k : k + 1], range(i, i + 1))[0][0]
    return G


def sampled_mask(sampled: np.ndarray, nodes: range, device: torch.device) -> torch.Tensor:
    """``(len(nodes),)`` bool: which hosted rows belong to the sampled clients."""
    hosted = sampled[(sampled >= nodes.start) & (sampled < nodes.stop)] - nodes.start
    mask = torch.zeros(len(nodes), dtype=torch.bool, device=device)
    mask[torch.as_tensor(hosted, dtype=torch.long)] = True
    return mask


def down(comm, vectors: list[torch.Tensor], sampled: np.ndarray) -> list[torch.Tensor]:
    """The server sends ``vectors`` (each ``(d,)``) to the sampled clients as one message
    (``comm.broadcast`` of their concatenation); returns them as received."""
    sizes = [v.numel() for v in vectors]
    got = comm.broadcast(torch.cat(vectors), sampled)
    return list(torch.split(got, sizes))


def up(
    comm, blocks: list[torch.Tensor], sampled: np.ndarray, t: int
) -> tuple[list[torch.Tensor], np.ndarray]:
    """Every sampled client uploads its rows of ``blocks`` (each ``(b, d_k)``) as one message
    of their concatenation; returns the means over the uploads that arrived, split back, and
    the clients whose upload was lost (:func:`~gossip.algorithms.fedavg.aggregate_round`)."""
    rows = torch.cat(blocks, dim=1)
    mean, failed = aggregate_round(rows, sampled, comm, rows.shape[1] * rows.element_size(), t)
    return list(torch.split(mean, [b.shape[1] for b in blocks])), failed


def client_steps(
    Y: torch.Tensor,
    ctx: Context,
    t: int,
    steps: int,
    eta: float,
    mask: torch.Tensor,
    direction: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``steps`` local steps ``y_i <- y_i - eta d_i`` of the sampled rows of ``Y``.

    Step ``h`` draws problem step ``s = t * steps + h`` (as
    :func:`~gossip.algorithms.local.sgd_steps`, with the same arithmetic, so that
    ``direction=None`` is FedAvg's local SGD bit for bit) and
    ``d = direction(g(Y; s), Y, s)`` (plain SGD when omitted); only rows where ``mask`` is
    true move. Returns the models and the mean loss over the steps.
    """
    nodes = ctx.comm.nodes
    loss_sum = torch.zeros(len(nodes), dtype=Y.dtype, device=Y.device)
    keep = mask.to(Y.dtype).unsqueeze(1)
    for h in range(steps):
        s = t * steps + h
        G, losses = ctx.problem.gradients(Y, nodes, s)
        D = G if direction is None else direction(G, Y, s)
        Y = Y - (eta * D) * keep
        loss_sum = loss_sum + losses.to(loss_sum.dtype)
    return Y, loss_sum / steps
