"""``gossip topology report|show``: spectral-gap tables and summaries of topologies.

``gossip topology report --nodes 8,16,32,64 [--topologies ring,torus] [--schedules
one_peer_exponential] [--weights metropolis] [--seed 0] [--tau T] [--drop Q] [--out DIR]
[--format table|json|csv]`` prints one row per (topology, n)
(:func:`analysis.topology_report.report_rows`); ``json`` and ``csv`` print nothing else on
stdout, so scripts can parse it. ``--out DIR`` also writes ``report.md``, ``report.csv`` and
PNGs (:func:`analysis.topology_figures.write_report`).

``gossip topology show NAME [--nodes N] [--weights RULE] [--option key=value ...]
[--seed 0] [--out DIR]`` prints the summary of one graph (:func:`topologies.summary`, degree
stats), its mixing matrix when ``n <= 16``, and with ``--out`` writes ``summary.json``, the
spectrum and (for ``n <= 64``) a drawing.

A user mistake prints one line ``gossip topology: error: ...`` on stderr and returns 2.
Only argparse and the standard library are imported at module level.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_arguments", "run", "parse_nodes", "parse_names", "parse_option"]

#: Largest mixing matrix ``show`` prints.
PRINT_MAX = 16
_FORMATS = ("table", "json", "csv")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``report`` and ``show`` sub-subcommands to ``parser``."""
    sub = parser.add_subparsers(dest="topology_command", metavar="{report,show}")
    report = sub.add_parser(
        "report", help="spectral-gap table of topologies over node counts",
        description="One row per (topology, n): rho, spectral gap, p, lambda_2, mixing time, "
        "diameter, degree, edges; schedules add effective_p (expected rate, with its standard "
        "error) and worst_window_p over tau rounds.",
    )
    report.add_argument("--nodes", default="8,16,32,64",
                        help=f"comma-separated node counts, each in [2, {MAX_NODES}] "
                        "(default 8,16,32,64)")
    report.add_argument("--topologies", default=None,
                        help="comma-separated topology names (default: all standard families)")
    report.add_argument("--schedules", default="",
                        help="comma-separated time-varying schedules, e.g. "
                        "one_peer_exponential,random_matching,random_graph")
    report.add_argument("--weights", default="metropolis", help="mixing rule (default metropolis)")
    report.add_argument("--seed", default="0", help="seed of random graphs and schedules")
    report.add_argument("--tau", default=None,
                        help="window of the schedules' rates (default ceil(log2 n))")
    report.add_argument("--drop", default="0",
                        help="drop probability q in [0, 1): static rows add the expected "
                        "consensus rate under lost messages, closed form and measured")
    report.add_argument("--out", default=None, help="folder for report.md, report.csv, PNGs")
    report.add_argument("--format", default="table", metavar="{table,json,csv}",
                        help="stdout format (default table)")
    show = sub.add_parser(
        "show", help="summary, mixing matrix and figures of one topology",
        description="Summary of one graph, its mixing matrix (n <= 16) and figures (--out).",
    )
    show.add_argument("name", help="topology name, e.g. ring, torus, file, social")
    show.add_argument("--nodes", default=None,
                      help="number of nodes (not needed for file and social)")
    show.add_argument("--weights", default=None,
                      help="mixing rule (default metropolis; in_uniform for directed graphs)")
    show.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                      help="builder option, repeatable: shape=4x8, p=0.2, degree=3, "
                      "path=graph.edgelist")
    show.add_argument("--seed", default="0", help="seed of random graphs")
    show.add_argument("--out", default=None, help="folder for summary.json and PNGs")


def _error(message: str):
    from topologies import TopologyError

    return TopologyError(message)


#: Largest node count of ``report`` and ``show``: Lanczos (ARPACK) on a ring's sparse ``W``
#: needs about ``n`` iterations of ``O(n)`` each, some 10 s at 8192 nodes.
MAX_NODES = 8192


def parse_nodes(text: str) -> list[int]:
    """``"8,16,32"`` -> ``[8, 16, 32]`` (duplicates dropped); each an integer in
    ``[2, MAX_NODES]``.

    >>> parse_nodes("8, 16,8")
    [8, 16]
    """
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise _error(f"--nodes needs comma-separated integers >= 2, got {text!r}")
    nodes: list[int] = []
    for part in parts:
        try:
            n = int(part)
        except ValueError:
            raise _error(f"--nodes needs integers >= 2, got {part!r} in {text!r}") from None
        if n < 2:
            raise _error(f"--nodes needs integers in [2, {MAX_NODES}], got {n}")
        if n > MAX_NODES:
            raise _error(f"--nodes needs integers in [2, {MAX_NODES}], got {n}: the spectral "
                         "summary of a slow-mixing graph (a ring) takes minutes beyond that")
        if n not in nodes:
            nodes.append(n)
    return nodes


def parse_names(text: str | None) -> list[str] | None:
    """``"ring, torus"`` -> ``["ring", "torus"]``; ``None`` stays ``None``."""
    if text is None:
        return None
    return [p.strip() for p in text.split(",") if p.strip()]


def _parse_int(flag: str, text: str, minimum: int) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise _error(f"{flag} needs an integer >= {minimum}, got {text!r}") from None
    if value < minimum:
        raise _error(f"{flag} needs an integer >= {minimum}, got {value}")
    return value


def _value(text: str) -> object:
    """Option value: ``4x8``/``4,8`` -> tuple of ints, int, float, true/false, else text."""
    for sep in ("x", ","):
        parts = text.split(sep)
        if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
            return tuple(int(p) for p in parts)
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def parse_option(text: str) -> tuple[str, object]:
    """``"shape=4x8"`` -> ``("shape", (4, 8))``; ``"p=0.2"`` -> ``("p", 0.2)``.

    >>> parse_option("shape=4x8"), parse_option("path=g.edgelist")
    (('shape', (4, 8)), ('path', 'g.edgelist'))
    """
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise _error(f"--option needs KEY=VALUE, got {text!r}")
    key = key.strip()
    return key, value if key == "path" else _value(value.strip())


def run(args: argparse.Namespace) -> int:
    """Run ``report`` or ``show``; a user mistake prints one line on stderr and returns 2."""
    from topologies import TopologyError

    try:
        command = getattr(args, "topology_command", None)
        if command == "report":
            return _report(args)
        if command == "show":
            return _show(args)
        raise TopologyError("choose a subcommand: report or show (gossip topology report --help)")
    except TopologyError as error:
        print(f"gossip topology: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # --out not writable
        where = f" {error.filename!r}" if error.filename else ""
        print(f"gossip topology: error: cannot write{where}: {error.strerror}", file=sys.stderr)
        return 2


def _check_format(text: str) -> str:
    if text not in _FORMATS:
        raise _error(f"--format must be one of {list(_FORMATS)}, got {text!r}")
    return text


def _report(args: argparse.Namespace) -> int:
    from analysis.topology_report import format_table, report_rows, to_csv, to_json

    fmt = _check_format(args.format)
    nodes = parse_nodes(args.nodes)
    seed = _parse_int("--seed", args.seed, 0)
    tau = None if args.tau is None else _parse_int("--tau", args.tau, 1)
    try:
        drop = float(args.drop)
    except ValueError:
        raise _error(f"--drop needs a number in [0, 1), got {args.drop!r}") from None
    skipped: list[str] = []
    rows = report_rows(
        topologies=parse_names(args.topologies), nodes=nodes, weights=args.weights,
        schedules=parse_names(args.schedules), seed=seed, tau=tau, skipped=skipped,
        drop=drop,
    )
    if args.out is not None:  # fail on an unwritable folder before printing anything
        Path(args.out).mkdir(parents=True, exist_ok=True)
    text = {"table": format_table, "json": to_json, "csv": to_csv}[fmt](rows)
    sys.stdout.write(text)
    if fmt == "table" and skipped:
        sys.stdout.write("\nskipped:\n" + "".join(f"  {note}\n" for note in skipped))
    elif skipped:  # stdout holds only the JSON / CSV that scripts parse
        sys.stderr.write("".join(f"gossip topology: skipped {note}\n" for note in skipped))
    if args.out is not None:
        from analysis.topology_figures import write_report

        written = write_report(rows, args.out, skipped=skipped, seed=seed)
        if fmt == "table":
            sys.stdout.write(f"\nwrote {len(written)} files to {args.out}\n")
    return 0


def _show(args: argparse.Namespace) -> int:
    import numpy as np

    import topologies

    n = None if args.nodes is None else parse_nodes(args.nodes)
    if n is not None and len(n) != 1:
        raise _error(f"show takes one node count, got --nodes {args.nodes!r}")
    n = None if n is None else n[0]
    options = dict(parse_option(o) for o in args.option)
    seed = _parse_int("--seed", args.seed, 0)
    if args.name not in topologies.names():
        raise _error(f"unknown topology {args.name!r}; choose one of {topologies.names()}")
    if n is None and args.name not in ("file", "social"):
        raise _error(f"topology {args.name!r} needs --nodes N")
    graph = topologies.build(args.name, n, seed=seed, **options)
    topologies.check_connected(graph)
    if args.weights is None:
        rule = "in_uniform" if graph.is_directed() else "metropolis"
    else:
        rule = args.weights
    W = topologies.mixing_matrix(graph, rule)
    info = {"topology": args.name, "nodes": graph.number_of_nodes(), "weights": rule}
    info.update(topologies.summary(graph, W))
    stats = topologies.graph_stats(graph)
    info.update({k: stats[k] for k in ("min_degree", "mean_degree")})
    info["directed"] = graph.is_directed()
    width = max(len(k) for k in info)
    from analysis.topology_report import format_value

    for key, value in info.items():
        print(f"{key.ljust(width)}  {format_value(value)}")
    size = graph.number_of_nodes()
    if size <= PRINT_MAX:
        print("\nmixing matrix W (x_i <- sum_j W[i, j] x_j):")
        with np.printoptions(precision=4, suppress=True, linewidth=200):
            print(W.toarray())
    if args.out is not None:
        from analysis.topology_figures import DRAW_MAX, SPECTRUM_MAX, draw_graph, plot_spectrum
        from analysis.topology_report import to_json

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(to_json([info]))
        written = [out / "summary.json"]
        if size <= SPECTRUM_MAX:
            title = f"Spectrum: {args.name}, n={size}, {rule}"
            written.append(plot_spectrum(W, out / f"spectrum_{args.name}.png", title))
        if size <= DRAW_MAX:
            written.append(draw_graph(graph, out / f"graph_{args.name}.png"))
        print(f"\nwrote {', '.join(p.name for p in written)} to {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (``python -m analysis.topology_cli report ...``)."""
    parser = argparse.ArgumentParser(prog="gossip topology")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
