"""The run folder: ``config.toml``, ``metrics.jsonl``, ``summary.json`` and ``checkpoints/``.

Only rank 0 writes these files (each rank writes its own checkpoint). ``metrics.jsonl`` gets
one JSON object per evaluation, each one line written whole and synced at once
(:class:`~gossip.runner.atomic.AppendLog`), so a crash loses nothing that was measured and
leaves no half record; ``config.toml`` and ``summary.json`` are replaced atomically
(:func:`~gossip.runner.atomic.write_atomic`). A write that fails (read-only or full disk) is a
one-line :class:`~gossip.errors.OutputError`.
"""

from __future__ import annotations

import json
import math
import platform
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from gossip.errors import ConfigError
from gossip.runner.atomic import AppendLog, cannot_write, write_atomic

__all__ = [
    "MetricsWriter",
    "default_name",
    "new_run_dir",
    "read_metrics",
    "versions",
    "write_json",
    "write_text",
]


def default_name(algorithm: str, topology: str) -> str:
    """``<algorithm>-<topology>-<YYYYmmdd-HHMMSS>`` (:func:`new_run_dir` with ``unique`` adds
    ``-2``, ``-3`` ... when it is taken)."""
    return f"{algorithm}-{topology}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def new_run_dir(out: str | Path, name: str, *, unique: bool = False) -> Path:
    """Create the run folder ``out/name`` and return it.

    With ``unique`` (a default name) the folder is made with an exclusive ``mkdir`` and, when
    it exists, ``name-2``, ``name-3`` ... is tried, so two runs started in the same second get
    two folders. Otherwise an existing empty folder is used, and one that already holds a run
    is a ConfigError. An ``out`` that cannot hold folders (missing permission, read-only, a
    regular file) is an :class:`~gossip.errors.OutputError`.
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not unique:
            path = out / name
            if (path / "config.toml").exists():
                raise ConfigError(
                    f"run folder {str(path)!r} already holds a run; choose another name or "
                    "resume it with --resume"
                )
            path.mkdir(exist_ok=True)
            return path
        for k in range(1, 10_000):
            path = out / (name if k == 1 else f"{name}-{k}")
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue
        raise ConfigError(f"no free run folder name {name}-N in {str(out)!r}; give --name")
    except OSError as err:
        raise cannot_write(out / name, err, "create run folder") from None


def _clean(value: Any) -> Any:
    """NaN/inf become strings so every line is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


class MetricsWriter:
    """``metrics.jsonl``: starts as ``records`` (a resumed run's records from its checkpoint,
    replacing whatever the file held), then one durable line per :meth:`append`."""

    def __init__(self, path: str | Path, records: list[dict] | None = None) -> None:
        self.path = Path(path)
        self._log = AppendLog(self.path, [json.dumps(_clean(r)) for r in records or []])

    def append(self, record: dict) -> None:
        self._log.append(json.dumps(_clean(record)))

    def close(self) -> None:
        self._log.close()


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The records of ``RUN/metrics.jsonl``; a last line without its newline that is not a
    whole record (a write cut short by a crash) is left out."""
    text = (Path(run_dir) / "metrics.jsonl").read_text()
    lines = text.split("\n")
    partial = lines.pop()  # "" when the file ends with a newline
    records = [json.loads(line) for line in lines if line.strip()]
    if partial.strip():
        try:
            records.append(json.loads(partial))
        except json.JSONDecodeError:
            pass
    return records


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically (OutputError when it cannot be written)."""
    write_atomic(path, (json.dumps(_clean(obj), indent=2, default=str) + "\n").encode())


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` atomically (OutputError when it cannot be written)."""
    write_atomic(path, text.encode())


def versions() -> dict[str, str | None]:
    """Versions of Python, torch, numpy, scipy, networkx, mpi4py and the MPI library."""
    import networkx
    import numpy
    import scipy
    import torch

    out: dict[str, str | None] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "networkx": networkx.__version__,
        "mpi4py": None,
        "mpi": None,
    }
    if "mpi4py.MPI" in sys.modules:
        import mpi4py

        out["mpi4py"] = mpi4py.__version__
        out["mpi"] = sys.modules["mpi4py.MPI"].Get_library_version().splitlines()[0].strip()
    return out
