"""Privacy: DP-SGD at every node with a ``dp-accounting`` accountant (``[privacy]``,
:mod:`gossip.privacy.dp_sgd`, :mod:`gossip.privacy.accounting`, :mod:`gossip.privacy.per_sample`)
and secure aggregation for the federated modes (``algorithm.secure_aggregation``,
:mod:`gossip.privacy.secure_aggregation`)."""
