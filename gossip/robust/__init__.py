"""Byzantine robustness: the attacks a run can suffer and the rules that resist them.

- :mod:`gossip.robust.attacks`: the ``[attack]`` section (``ATTACKS``): who is Byzantine,
  what its messages carry (an ``AttackChannel`` on the communicator), label flipping.
- :mod:`gossip.robust.aggregators`: robust aggregation rules over ``(k, d)`` rows
  (``AGGREGATORS``), used by ``allreduce`` / ``fedavg``'s robust server step and by
  ``clipped_gossip``.
"""
