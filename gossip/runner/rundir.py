"""The run folder: ``config.toml``, ``metrics.jsonl``, ``summary.json`` and ``checkpoints/``.

Only rank 0 writes these files (each rank writes its own checkpoint). ``metrics.jsonl`` gets
one JSON object per evaluation, flushed as soon as it is written, so a crash loses nothing
that was measured.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from gossip.errors import ConfigError

__all__ = [
    "MetricsWriter",
    "default_name",
    "read_metrics",
    "versions",
    "write_json",
]


def default_name(algorithm: str, topology: str) -> str:
    """``<algorithm>-<topology>-<YYYYmmdd-HHMMSS>``."""
    return f"{algorithm}-{topology}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def new_run_dir(out: str | Path, name: str) -> Path:
    """Create ``out/name``; a folder that already holds a run is an error."""
    path = Path(out) / name
    if (path / "config.toml").exists():
        raise ConfigError(
            f"run folder {str(path)!r} already holds a run; choose another name or "
            "resume it with --resume"
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


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
    """Appends records to ``metrics.jsonl``, flushing and syncing each line."""

    def __init__(self, path: str | Path, records: list[dict] | None = None) -> None:
        self.path = Path(path)
        mode = "w"
        self._f = open(self.path, mode)
        for r in records or []:
            self._write(r)

    def _write(self, record: dict) -> None:
        self._f.write(json.dumps(_clean(record)) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def append(self, record: dict) -> None:
        self._write(record)

    def close(self) -> None:
        self._f.close()


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The records of ``RUN/metrics.jsonl``."""
    text = (Path(run_dir) / "metrics.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_clean(obj), indent=2, default=str) + "\n")
    os.replace(tmp, path)


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
