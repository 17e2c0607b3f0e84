"""The simulated network a run's nodes talk over, one config section per module.

- :mod:`gossip.network.topology`: ``[topology]``, the graph and the schedule ``W(t)``.
- :mod:`gossip.network.faults`: ``[faults]``, lost messages and crashed nodes as a channel.
- :mod:`gossip.network.sim_time`: ``[time]``, simulated round durations from the bytes sent.
"""
