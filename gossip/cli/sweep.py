"""``gossip sweep``: run a grid of configurations, then compare them.

::

    gossip sweep --config FILE --grid algorithm.lr=0.1,0.05 --grid topology.name=ring,chain \\
        [--set rounds=100 ...] [--out DIR] [--mpi N] [--target 0.9]

One run folder per grid point under ``DIR`` (named from the point's values), then
``DIR/compare.md`` and the figures. A bad ``--grid`` or configuration prints one line
``gossip sweep: error: ...`` and exits with code 2; a failed run exits with code 1.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``gossip sweep``."""
    parser.add_argument("--config", metavar="FILE.toml", default=None,
                        help="base configuration (default: the embedded default run)")
    parser.add_argument("--grid", metavar="KEY=V1,V2", action="append", default=[],
                        help="a swept key and its values (repeatable; the cartesian product runs)")
    parser.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append",
                        default=[], help="override applied to every run (repeatable)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="folder of the sweep (default: runs/sweep-<timestamp>)")
    parser.add_argument("--mpi", metavar="N", type=int, default=None,
                        help="run each point under mpiexec -n N (default: in this process)")
    parser.add_argument("--target", metavar="ACC", type=float, default=None,
                        help="test accuracy for the table's 'rounds to target' column")
    parser.add_argument("--progress", action="store_true", help="show each run's progress bar")


def run(args: argparse.Namespace) -> int:
    """Run the sweep; prints the table and the written figures. Exit code 0, 1 or 2."""
    from datetime import datetime

    from analysis.runs import RunFolderError
    from gossip.errors import GossipError
    from gossip.runner.sweep import SweepError, parse_grid, run_sweep
    from topologies.errors import TopologyError

    out = args.out or f"runs/sweep-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    try:
        grid = parse_grid(args.grid)
        _, table, figures = run_sweep(
            args.config, grid, out, sets=args.overrides, mpi=args.mpi, target=args.target,
            quiet=not args.progress, log=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except (GossipError, TopologyError, RunFolderError) as err:
        print(f"gossip sweep: error: {err}", file=sys.stderr)
        return 2
    except SweepError as err:
        print(f"gossip sweep: error: {err}", file=sys.stderr)
        return 1
    print(table, end="")
    for path in figures:
        print(path)
    return 0
