"""Run under ``mpiexec -n P``: how often a real run builds its mixing operators and share plans.

Wraps the builders behind the communicator's caches with call counters, runs
``gossip.runner.loop.run`` on the configuration given by ``--set key=value`` (run folders under
``--out``), and every rank prints one JSON line::

    {"rank": r, "builds": {"pattern_key": ..., "share_plan": ..., "remote_operator": ...,
     "operator": ..., "diagonals": ..., "messages": ...}, "final": {...}}

``final`` is the run's last metric record without its clocks. A static topology should build
each once; a time-varying schedule once per distinct ``W(t)``.

Usage: ``mpiexec -n 2 python tests/comm/mpi_count_builds.py --out DIR --set nodes=6 ...``.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable

#: counter name -> (module, attribute) of the function that builds what a cache keeps
BUILDERS = {
    "pattern_key": ("gossip.comm.mpi", "pattern_key"),
    "share_plan": ("gossip.comm.mpi", "share_plan"),
    "remote_operator": ("gossip.comm.mpi", "rows_operator"),
    "operator": ("gossip.comm.mixing", "torch_matrix"),
    "diagonals": ("gossip.comm.mixing", "diagonal_plan"),
    "messages": ("gossip.comm.mixing", "_count_messages"),
}
CLOCKS = ("wall_time", "compute_time", "comm_time")


def count_builds(names, setattr_: Callable = setattr) -> Counter:
    """Wrap the :data:`BUILDERS` ``names`` with call counters (``setattr_`` installs each
    wrapper: pytest's ``monkeypatch.setattr`` in process); returns the live counter."""
    import importlib

    counts: Counter = Counter({name: 0 for name in names})
    for name in names:
        module, attr = BUILDERS[name]
        target = importlib.import_module(module)
        inner = getattr(target, attr)

        def wrapper(*args, _inner=inner, _name=name, **kwargs):
            counts[_name] += 1
            return _inner(*args, **kwargs)

        setattr_(target, attr, wrapper)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--set", action="append", default=[], dest="sets")
    args = parser.parse_args()

    from gossip.config import load_config
    from gossip.runner.loop import run

    counts = count_builds(list(BUILDERS))
    summary = run(load_config(None, [f"out='{args.out}'", *args.sets]), quiet=True)
    final = {k: v for k, v in summary["final"].items() if k not in CLOCKS}
    from mpi4py import MPI

    print(json.dumps({"rank": MPI.COMM_WORLD.Get_rank(), "builds": counts, "final": final}),
          flush=True)


if __name__ == "__main__":
    main()
