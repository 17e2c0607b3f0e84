"""Parameter sweeps: one training run per point of a cartesian grid of config overrides.

A grid is a list of ``key=v1,v2,...`` texts (dotted config keys, TOML-literal values, commas
inside ``[...]``, ``{...}`` or quotes do not split). The sweep runs every combination, in the
order the keys were given (the last key varies fastest), each in its own run folder
``DIR/<point name>``, then writes ``DIR/compare.md`` (:func:`analysis.compare.compare_table`)
and the figures (:func:`analysis.run_figures.plot_runs`) into ``DIR``.

Runs go in this process (:func:`gossip.runner.loop.run`) or, with ``mpi=P``, each under
``mpiexec -n P python -m gossip train ...``.

Examples
--------
>>> grid = parse_grid(["algorithm.lr=0.1,0.05", "topology.name=ring,chain"])
>>> grid
{'algorithm.lr': ['0.1', '0.05'], 'topology.name': ['ring', 'chain']}
>>> [point_name(p) for p in grid_points(grid)][:2]
['algorithm.lr-0.1_topology.name-ring', 'algorithm.lr-0.1_topology.name-chain']
>>> parse_grid(["nodes"])
Traceback (most recent call last):
...
gossip.errors.ConfigError: --grid 'nodes' must look like key=v1,v2 (e.g. algorithm.lr=0.1,0.05)
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from gossip.errors import ConfigError

__all__ = [
    "SweepError",
    "grid_points",
    "error_line",
    "mpi_command",
    "parse_grid",
    "point_name",
    "run_sweep",
    "split_values",
]


class SweepError(RuntimeError):
    """A run of the sweep failed (its exit code and last error line are in the message)."""


def split_values(text: str) -> list[str]:
    """Split ``v1,v2`` on the commas outside brackets, braces and quotes.

    >>> split_values('[4, 4],[2, 8],"a,b"')
    ['[4, 4]', '[2, 8]', '"a,b"']
    """
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def parse_grid(texts: Sequence[str]) -> dict[str, list[str]]:
    """``["key=v1,v2", ...]`` -> ``{key: [v1, v2]}`` (values kept as text, parsed as overrides).

    Raises
    ------
    ConfigError
        No ``=``, an empty key, an empty value, or a key given twice.
    """
    grid: dict[str, list[str]] = {}
    for text in texts:
        if "=" not in text:
            raise ConfigError(
                f"--grid {text!r} must look like key=v1,v2 (e.g. algorithm.lr=0.1,0.05)"
            )
        key, raw = (s.strip() for s in text.split("=", 1))
        if not key or not all(key.split(".")):
            raise ConfigError(f"--grid {text!r} has an empty key; use section.key=v1,v2")
        values = split_values(raw)
        if not all(values):
            raise ConfigError(
                f"--grid {text!r} has an empty value; give comma-separated values, e.g. {key}=1,2"
            )
        if key in grid:
            raise ConfigError(f"--grid key {key!r} is given twice; list all its values once")
        grid[key] = values
    if not grid:
        raise ConfigError("a sweep needs at least one --grid key=v1,v2")
    return grid


def grid_points(grid: dict[str, list[str]]) -> list[dict[str, str]]:
    """Every combination of the grid's values, the last key varying fastest."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*grid.values())]


_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def point_name(point: dict[str, str]) -> str:
    """Folder name of a grid point: ``key-value`` pairs joined by ``_``, unsafe chars as ``-``."""
    return "_".join(f"{k}-{_UNSAFE.sub('-', v).strip('-')}" for k, v in point.items())


def _unique_names(points: list[dict[str, str]]) -> list[str]:
    names = [point_name(p) for p in points]
    if len(set(names)) < len(names):
        names = [f"{i:03d}_{name}" for i, name in enumerate(names)]
    return names


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _mpiexec() -> str:
    local = Path(sys.executable).parent / "mpiexec"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    import shutil

    found = shutil.which("mpiexec")
    if found is None:
        raise ConfigError("--mpi needs mpiexec; install the MPI extra: pip install -e '.[mpi]'")
    return found


def mpi_command(
    nprocs: int, config: str | Path | None, overrides: Sequence[str], out: Path, name: str
) -> list[str]:
    """``mpiexec -n P python -m gossip train --config ... --set ... --out ... --name ...``."""
    cmd = [_mpiexec(), "-n", str(nprocs), sys.executable, "-m", "gossip", "train"]
    if config is not None:
        cmd += ["--config", str(config)]
    for text in overrides:
        cmd += ["--set", text]
    return [*cmd, "--out", str(out), "--name", name, "--quiet"]


def _run_mpi(cmd: list[str], name: str) -> None:
    from gossip.runner.launch_env import mpi_env

    proc = subprocess.run(cmd, env=mpi_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        last = error_line(proc.stderr)
        if proc.returncode == 2:
            raise ConfigError(f"run {name}: {last}")
        raise SweepError(f"run {name} failed with exit code {proc.returncode}: {last}")


_OUR_ERROR = re.compile(r"^gossip [a-z]+: error: ")


def error_line(stderr: str) -> str:
    r"""The line that says what went wrong in a run's stderr under ``mpiexec``.

    ``gossip train``'s own ``gossip train: error: ...`` line (its message, the last one when
    there are several); else the last line outside the launcher's banners (blocks between
    lines of dashes, such as Open MPI's "prterun detected that one or more processes exited
    with non-zero status").

    >>> error_line("gossip train: error: nodes must be >= 2, got 1\n" + "-" * 20 +
    ...            "\nprterun detected that one or more processes exited\n" + "-" * 20)
    'nodes must be >= 2, got 1'
    """
    lines = [line.rstrip() for line in stderr.splitlines() if line.strip()]
    ours = [line for line in lines if _OUR_ERROR.match(line)]
    if ours:
        return _OUR_ERROR.sub("", ours[-1])
    outside, in_banner = [], False
    for line in lines:
        if set(line.strip()) == {"-"}:
            in_banner = not in_banner
        elif not in_banner:
            outside.append(line)
    return (outside or lines or ["(no error output)"])[-1]


def run_sweep(
    config: str | Path | None,
    grid: dict[str, list[str]],
    out: str | Path,
    *,
    sets: Sequence[str] = (),
    mpi: int | None = None,
    target: float | None = None,
    quiet: bool = True,
    log: Callable[[str], None] | None = None,
) -> tuple[list[Path], str, list[Path]]:
    """Run every grid point, then write ``compare.md`` and the figures into ``out``.

    Parameters
    ----------
    config : path or None
        Base TOML file (``None``: the embedded default run).
    grid : dict
        From :func:`parse_grid`.
    out : path
        Folder of the sweep; run ``k`` goes to ``out/<point name>``.
    sets : list of ``key=value``
        Overrides applied to every point before the grid's values.
    mpi : int or None
        Run each point under ``mpiexec -n mpi``; ``None`` runs in this process.
    target : float or None
        Accuracy for the table's "rounds to target" column.
    log : callable, optional
        Receives one progress line per run.

    Returns
    -------
    (run folders, compare table, figure paths)

    Raises
    ------
    ConfigError
        A grid point's configuration is invalid or its graph or compressor cannot be built
        (every point is checked before any runs, :func:`gossip.runner.experiment.check_builds`).
    SweepError
        A run under ``mpiexec`` failed.
    """
    from analysis.compare import compare_table
    from analysis.run_figures import plot_runs
    from analysis.runs import load_runs
    from gossip.config import load_config
    from gossip.runner.experiment import check_builds

    if mpi is not None and mpi < 1:
        raise ConfigError(f"--mpi must be a positive number of ranks, got {mpi}")
    out = Path(out)
    points = grid_points(grid)
    names = _unique_names(points)
    plans = []
    for point, name in zip(points, names):
        overrides = [*sets, *(f"{k}={v}" for k, v in point.items())]
        cfg = load_config(config, [*overrides, f"out={_quoted(str(out))}", f"name={_quoted(name)}"])
        check_builds(cfg)
        if (out / name / "config.toml").exists():
            raise ConfigError(f"run folder {str(out / name)!r} already holds a run; "
                              "choose another --out")
        plans.append((name, overrides, cfg))
    folders = []
    for k, (name, overrides, cfg) in enumerate(plans, start=1):
        if log is not None:
            log(f"[{k}/{len(plans)}] {name}")
        if mpi is None:
            from gossip.runner.loop import run as run_training

            run_training(cfg, quiet=quiet)
        else:
            _run_mpi(mpi_command(mpi, config, overrides, out, name), name)
        folders.append(out / name)
    runs = load_runs(folders)
    table = compare_table(runs, target=target)
    (out / "compare.md").write_text(table)
    figures = plot_runs(runs, out)
    return folders, table, figures
