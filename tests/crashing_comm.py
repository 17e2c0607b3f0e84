"""A :class:`~gossip.comm.local.LocalComm` that fails partway through a run, for resume tests.

Use from any test::

    from tests.crashing_comm import CrashingComm

    with pytest.raises(RuntimeError, match="node lost"):
        run(config, comm=CrashingComm(n, 7), quiet=True)   # dies in round 7 of D-SGD
"""

from __future__ import annotations

from gossip.comm.local import LocalComm

__all__ = ["CrashingComm"]


class CrashingComm(LocalComm):
    """Raises ``RuntimeError("node lost")`` in its ``crash_round``-th ``share`` call (counted
    from 0): the round ``crash_round`` of an algorithm with one share per round (D-SGD)."""

    def __init__(self, n: int, crash_round: int) -> None:
        super().__init__(n)
        self.calls, self.crash_round = 0, crash_round

    def share(self, payload, W, t=None):
        if self.calls == self.crash_round:
            raise RuntimeError("node lost")
        self.calls += 1
        return super().share(payload, W, t)
