"""``gossip train``: run (or resume) one training run from a TOML config and overrides.

Works in one process and under ``mpiexec -n P``; under MPI only rank 0 writes files and
prints, and a bad configuration raises the same :class:`~gossip.errors.ConfigError` on every
rank, so all ranks exit with code 2 together. SIGINT/SIGTERM stop the run at a round boundary
with a checkpoint and one line naming the resume command; the exit code is 130/143
(:mod:`gossip.runner.interrupt`).
"""

from __future__ import annotations

import argparse
import sys
import time

__all__ = ["add_arguments", "build_parser", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``gossip train``; the epilog lists every configuration key."""
    from gossip.config import describe_keys

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = describe_keys()
    parser.add_argument("--config", metavar="FILE.toml", help="configuration file "
                        "(default: the embedded default run)")
    parser.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append",
                        default=[], help="override one key, e.g. --set topology.name=chain "
                        "(repeatable; values are TOML literals)")
    parser.add_argument("--out", metavar="DIR", help="folder of run folders (key out)")
    parser.add_argument("--name", metavar="NAME", help="run folder name (key name)")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its last checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Build the config, run it, print the run folder (rank 0). Returns the exit code."""
    from pathlib import Path

    from gossip.config import load_config
    from gossip.errors import ConfigError
    from gossip.runner.interrupt import RunInterrupted
    from gossip.runner.loop import run as run_training

    overrides = list(args.overrides)
    if args.out is not None:
        overrides.append(f"out={_quoted(args.out)}")
    if args.name is not None:
        overrides.append(f"name={_quoted(args.name)}")
    config = None
    if args.resume is not None:
        run_dir = Path(args.resume)
        if not (run_dir / "config.toml").is_file():
            raise ConfigError(f"--resume {args.resume!r} is not a run folder (no config.toml)")
        if args.config is not None or overrides:
            config = load_config(args.config or run_dir / "config.toml", overrides)
    else:
        config = load_config(args.config, overrides)
    comm = _comm(config, args.resume)
    tic = time.perf_counter()
    try:
        summary = run_training(config, comm=comm, quiet=args.quiet, resume=args.resume)
    except RunInterrupted as stop:
        line = f"gossip train: {stop.message}"
        if comm.size > 1 and not stop.agreed:
            comm.abort(line, stop.exit_code)  # other ranks may wait in a collective
        if comm.rank == 0:
            print(line, file=sys.stderr, flush=True)
        return stop.exit_code
    elapsed = time.perf_counter() - tic
    if comm.rank == 0:
        if not args.quiet:
            print(final_line(summary, elapsed), file=sys.stderr)
        print(summary["run_dir"])
    return 0


#: Metrics shown in the closing line, in this order, when the run reports them.
FINAL_KEYS = ("test_accuracy", "test_accuracy_nodes", "distance_to_optimum", "train_loss",
              "consensus_distance")


def final_line(summary: dict, elapsed: float | None = None) -> str:
    """One human line for stderr: the last evaluation's main metrics, bytes, the seconds
    spent in rounds (``summary["wall_time"]``: training and communication, without
    evaluation and checkpoints) and, when given, the ``elapsed`` seconds of the whole run
    (stdout keeps only the run folder, for scripts).

    >>> line = final_line({"final": {"train_loss": 0.5}, "wall_time": 8.0,
    ...                    "status": "finished", "rounds_done": 10}, 12.04)
    >>> line.split(": ")[-1].split(", ")[0], line.split(", ")[-2:]
    ('train_loss 0.5', ['rounds 8.0 s', 'total 12.0 s'])
    """
    from analysis.compare import format_bytes

    final = summary.get("final") or {}
    parts = [f"{k} {final[k]:.4g}" for k in FINAL_KEYS if isinstance(final.get(k), int | float)]
    parts.append(f"bytes_sent {format_bytes(summary.get('bytes_sent', 0))}")
    parts.append(f"rounds {summary.get('wall_time', 0.0):.1f} s")
    if elapsed is not None:
        parts.append(f"total {elapsed:.1f} s")
    status, rounds = summary.get("status", "done"), summary.get("rounds_done")
    return f"gossip train: {status} after {rounds} rounds: " + ", ".join(parts)


def _comm(config, resume):
    """The run's communicator, with the MPI abort handler installed under mpiexec."""
    from pathlib import Path

    from gossip.comm.factory import install_abort_handler, make_comm
    from gossip.config import load_config

    if config is None:
        config = load_config(Path(resume) / "config.toml")
    comm = make_comm(config["nodes"])
    if comm.size > 1:
        install_abort_handler(comm)
    return comm


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gossip train", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m gossip.cli.train``: the subcommand on its own (errors -> exit code 2)."""
    from gossip.errors import GossipError
    from topologies.errors import TopologyError

    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (GossipError, TopologyError) as err:
        from gossip.cli import report_error

        report_error("train", err)
        return 2


if __name__ == "__main__":
    sys.exit(main())
