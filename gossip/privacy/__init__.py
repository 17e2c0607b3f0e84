"""Privacy: DP-SGD at every node with a ``dp-accounting`` accountant (``[privacy]``,
:mod:`gossip.privacy.dp_sgd`, :mod:`gossip.privacy.accounting`,
:mod:`gossip.privacy.per_sample`)."""

from gossip.privacy.accounting import ACCOUNTANTS, dp_event, epsilon
from gossip.privacy.dp_sgd import (
    PRIVACY_OPTIONS,
    PrivateProblem,
    check_privacy,
    privacy_on,
    with_privacy,
)

__all__ = ["ACCOUNTANTS", "PRIVACY_OPTIONS", "PrivateProblem", "check_privacy", "dp_event",
           "epsilon", "privacy_on", "with_privacy"]
