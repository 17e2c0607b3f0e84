"""Load run folders written by ``gossip train``.

A run folder holds ``config.toml`` (the fully resolved configuration), ``metrics.jsonl`` (one
JSON object per evaluation: ``round``, ``train_loss``, ``consensus_distance``, ``bytes_sent``,
and, depending on the problem, ``test_accuracy``, ``distance_to_optimum`` ...) and
``summary.json`` (final metrics; absent while a run is still going). This module reads them
into :class:`Run` objects and gives each run a readable label; it imports neither torch nor
mpi4py, so reports work on a machine that only has the folders.

Examples
--------
>>> base_label({"algorithm": {"name": "dsgd"}, "topology": {"name": "ring"},
...             "compression": {"name": "none"}})
'dsgd / ring / none'
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CONFIG_FILE",
    "METRICS_FILE",
    "SUMMARY_FILE",
    "Run",
    "RunFolderError",
    "base_label",
    "flatten",
    "load_run",
    "load_runs",
]

CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"

#: Top-level keys that differ between runs without describing them (left out of labels).
_NOT_IN_LABEL = {"name", "out"}


class RunFolderError(ValueError):
    """A folder that is not a run folder, or one of its files is malformed (one-line message)."""


@dataclass
class Run:
    """One run folder: its resolved config, its metric records and its summary.

    Attributes
    ----------
    path : Path
        The folder.
    config : dict
        ``config.toml`` as nested dicts.
    metrics : list of dict
        The records of ``metrics.jsonl`` in file order.
    summary : dict
        ``summary.json`` (empty when the run has not written one yet).
    label : str
        ``"{algorithm} / {topology} / {compression}"``; :func:`load_runs` appends the keys
        that tell apart runs sharing that label.
    """

    path: Path
    config: dict[str, Any]
    metrics: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def section_name(self, section: str) -> str:
        """``config[section]["name"]`` or ``"-"`` when the config does not say."""
        value = self.config.get(section, {})
        if isinstance(value, Mapping):
            return str(value.get("name", "-"))
        return "-"

    @property
    def algorithm(self) -> str:
        return self.section_name("algorithm")

    @property
    def topology(self) -> str:
        return self.section_name("topology")

    @property
    def compression(self) -> str:
        return self.section_name("compression")

    def has(self, key: str) -> bool:
        """Whether any record holds a finite number under ``key``."""
        return bool(self.series(key)[0])

    def series(self, key: str, x: str = "round") -> tuple[list[float], list[float]]:
        """``(xs, ys)`` of the records holding finite numbers under both ``x`` and ``key``."""
        xs: list[float] = []
        ys: list[float] = []
        for record in self.metrics:
            a, b = _number(record.get(x)), _number(record.get(key))
            if a is not None and b is not None:
                xs.append(a)
                ys.append(b)
        return xs, ys

    def last(self, key: str) -> float | None:
        """The last finite value of ``key`` in the records, else the summary's (top level or
        its ``final`` record), else None."""
        ys = self.series(key)[1]
        if ys:
            return ys[-1]
        value = _number(self.summary.get(key))
        final = self.summary.get("final")
        if value is None and isinstance(final, Mapping):
            value = _number(final.get(key))
        return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def base_label(config: Mapping[str, Any]) -> str:
    """``"{algorithm} / {topology} / {compression}"`` from a config (``-`` for a missing name)."""
    parts = []
    for section in ("algorithm", "topology", "compression"):
        value = config.get(section, {})
        parts.append(str(value.get("name", "-")) if isinstance(value, Mapping) else "-")
    return " / ".join(parts)


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections to dotted keys: ``{"algorithm": {"lr": 0.1}}`` -> ``{"algorithm.lr": 0.1}``.

    >>> flatten({"seed": 0, "algorithm": {"lr": 0.1}})
    {'seed': 0, 'algorithm.lr': 0.1}
    """
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, prefix=f"{name}."))
        else:
            out[name] = value
    return out


def _read_config(path: Path) -> dict[str, Any]:
    file = path / CONFIG_FILE
    try:
        return tomllib.loads(file.read_text())
    except tomllib.TOMLDecodeError as err:
        raise RunFolderError(f"{file}: not valid TOML: {err}") from None


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    file = path / METRICS_FILE
    records = []
    with file.open() as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                if not line.endswith("\n"):
                    break  # a last line cut short by a crash: the records before it stand
                raise RunFolderError(f"{file}:{number}: not a JSON object: {err.msg}") from None
            if not isinstance(record, dict):
                raise RunFolderError(
                    f"{file}:{number}: expected a JSON object, got {type(record).__name__}"
                )
            records.append(record)
    return records


def _read_summary(path: Path) -> dict[str, Any]:
    file = path / SUMMARY_FILE
    if not file.is_file():
        return {}
    try:
        summary = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise RunFolderError(f"{file}: not valid JSON: {err.msg} (line {err.lineno})") from None
    if not isinstance(summary, dict):
        raise RunFolderError(f"{file}: expected a JSON object, got {type(summary).__name__}")
    return summary


def load_run(path: str | Path) -> Run:
    """Read one run folder (a last ``metrics.jsonl`` line without its newline that is not a
    whole record, a write cut short by a crash, is left out).

    Raises
    ------
    RunFolderError
        The path is not a folder, ``config.toml`` or ``metrics.jsonl`` is missing, or a file is
        malformed (the message names the file, and the line for ``metrics.jsonl``).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise RunFolderError(f"{str(folder)!r} is not a folder (expected a run folder)")
    for name in (CONFIG_FILE, METRICS_FILE):
        if not (folder / name).is_file():
            raise RunFolderError(f"{str(folder)!r} is not a run folder: {name} is missing")
    config = _read_config(folder)
    run = Run(folder, config, _read_metrics(folder), _read_summary(folder))
    run.label = base_label(config)
    return run


def _distinguish(runs: list[Run]) -> None:
    """Append ``key=value`` of the config keys that differ inside each group of equal labels."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.label, []).append(run)
    for label, group in groups.items():
        if len(group) < 2:
            continue
        flat = [flatten(r.config) for r in group]
        keys = sorted({k for f in flat for k in f} - _NOT_IN_LABEL)
        missing = object()
        differing = [k for k in keys if len({repr(f.get(k, missing)) for f in flat}) > 1]
        for run, f in zip(group, flat):
            extra = ", ".join(f"{k}={f[k]}" for k in differing if k in f)
            run.label = f"{label} ({extra})" if extra else label
        seen: dict[str, int] = {}
        for run in group:
            seen[run.label] = seen.get(run.label, 0) + 1
        for run in group:
            if seen[run.label] > 1:
                run.label = f"{run.label} [{run.path.name}]"


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Read several run folders; labels shared by several runs get the config keys that differ.

    >>> # two D-SGD ring runs with lr 0.1 and 0.05 are labelled
    >>> # 'dsgd / ring / none (algorithm.lr=0.1)' and 'dsgd / ring / none (algorithm.lr=0.05)'
    """
    runs = [load_run(p) for p in paths]
    if not runs:
        raise RunFolderError("no run folders given")
    _distinguish(runs)
    return runs
