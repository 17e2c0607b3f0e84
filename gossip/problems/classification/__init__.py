"""Image classification on a data set partitioned over the nodes.

``problem`` holds the problem (objective, mini-batch streams, evaluation); ``backends`` the
gradients of a node block it chooses from (``fused`` batched matmuls; ``grads``: ``vmap`` over
nodes and the per-node loop).
"""

from gossip.problems.classification.problem import (
    ClassificationConfig,
    ClassificationProblem,
    make_classification_problem,
)

__all__ = ["ClassificationConfig", "ClassificationProblem", "make_classification_problem"]
