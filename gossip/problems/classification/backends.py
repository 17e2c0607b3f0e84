"""Local training of node blocks: fused (hand-written batched backward for Linear/ReLU
chains), vectorised (``torch.func``) and loop gradients."""

from gossip.problems.classification.fused import fused_grads, fused_logits, linear_plan
from gossip.problems.classification.grads import (
    BACKENDS,
    Backend,
    choose_backend,
    loop_grads,
    loop_logits,
    vectorized_grads,
    vectorized_logits,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "choose_backend",
    "fused_grads",
    "fused_logits",
    "linear_plan",
    "loop_grads",
    "loop_logits",
    "vectorized_grads",
    "vectorized_logits",
]
