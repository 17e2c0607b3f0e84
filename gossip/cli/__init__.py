"""The ``gossip`` command line: a thin dispatcher over the subcommand modules.

Each subcommand lives in its own module with ``add_arguments(parser)`` and ``run(args) -> int``.
Modules are imported only when their subcommand runs (``gossip topology`` never imports torch).
A user mistake (:class:`gossip.errors.GossipError`, :class:`topologies.TopologyError`) prints
one line ``gossip <cmd>: error: ...`` (under ``mpiexec`` on rank 0 only) and exits with code 2
on every rank; so does an ``OSError`` (a folder that cannot be written, a full disk: the
message names the file). Ctrl-C prints one line (for a run inside ``gossip sweep``: the
checkpoint written and the resume command, :mod:`gossip.runner.interrupt`) and exits with 130
(143 for SIGTERM during a run). Bugs keep their traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

__all__ = ["main", "report_error", "SUBCOMMANDS"]

# name -> (module, one-line help). Argument definitions live in ``<module>.add_arguments``.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": ("gossip.cli.train", "run (or resume) one training run"),
    "topology": ("analysis.topology_cli", "spectral-gap reports and summaries of topologies"),
    "data": ("gossip.cli.data", "inspect data sets and their partitions over nodes"),
    "plot": ("analysis.plot_cli", "figures from run folders"),
    "compare": ("analysis.compare_cli", "a Markdown table comparing run folders"),
    "sweep": ("gossip.cli.sweep", "run a grid of configurations, then compare them"),
}


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the ``selected`` subcommand's module is imported for its arguments."""
    parser = argparse.ArgumentParser(
        prog="gossip",
        description="Simulate decentralized and federated learning.",
    )
    from gossip import __version__

    parser.add_argument("--version", action="version", version=f"gossip {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        if name == selected:
            importlib.import_module(module).add_arguments(p)
    return parser


#: Seconds the ranks other than 0 wait before exiting on a user error (:func:`report_error`).
RANK0_GRACE_S = 2.0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    selected = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(selected if selected in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from gossip.errors import GossipError
    from topologies.errors import TopologyError

    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except (GossipError, TopologyError) as err:
        report_error(args.command, err)
        return 2
    except OSError as err:
        from gossip.runner.atomic import cannot_write

        report_error(args.command, cannot_write(err.filename or "?", err, "write or read"))
        return 2
    except KeyboardInterrupt as stop:  # a run's RunInterrupted carries its line and code
        print(f"gossip {args.command}: {getattr(stop, 'message', 'interrupted')}",
              file=sys.stderr, flush=True)
        return getattr(stop, "exit_code", 130)


def report_error(command: str, err: Exception) -> None:
    """Print ``gossip <command>: error: <err>`` on stderr, on rank 0 only under ``mpiexec``.

    A user mistake is raised the same on every rank (the configuration is validated and built
    the same way on each), so every rank exits with code 2 and one line is printed, not one
    per rank. The launcher may still add its own note about the non-zero exit (Open MPI 5
    prints a short banner, unless started with ``--runtime-options error-nonzero-status=false``,
    which also turns the exit code into 0).

    The other ranks wait :data:`RANK0_GRACE_S` before they exit: the launcher ends the whole
    job at the first non-zero exit, and a rank 0 that is a little behind (still importing or
    building) would be killed before its line is out.
    """
    from gossip.comm.factory import launch_rank, launched_by_mpi

    if not launched_by_mpi() or launch_rank() == 0:
        print(f"gossip {command}: error: {err}", file=sys.stderr, flush=True)
    else:
        time.sleep(RANK0_GRACE_S)


if __name__ == "__main__":
    sys.exit(main())
