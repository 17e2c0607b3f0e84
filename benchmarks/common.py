"""Shared helpers of the benchmark scripts: machine description, timing, result files.

Every script records where and how it ran (:func:`machine`), times a callable with the device
synchronised around the timed region (:func:`time_per_call`), prints a Markdown table and writes
``<name>-<device>.json`` and ``.md`` into the results folder (:func:`write_results`).

Only the standard library (and :mod:`gossip.runner.launch_env`, whose ``mpi_env`` is the environment
of every ``mpiexec`` start here) is imported at top level: the scripts import torch inside
their ``run`` functions.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from gossip.runner.launch_env import mpi_env

__all__ = [
    "RESULTS",
    "REPO_ROOT",
    "cpu_model",
    "device_kind",
    "header",
    "int_list",
    "machine",
    "markdown_table",
    "mpi_env",
    "mpiexec",
    "synchronizer",
    "time_per_call",
    "write_results",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "benchmarks" / "results"



def int_list(text: str, zero: bool = False) -> list[int]:
    """``"16,64,1e3"`` -> ``[16, 64, 1000]`` (argparse type; floats like ``1e5`` allowed).

    ``zero=True`` also accepts ``0`` (a "skip" value).
    """
    import argparse

    try:
        values = [int(float(v)) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers, got {text!r}"
        ) from None
    if not values or any(v < 0 or (v == 0 and not zero) for v in values):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers, got {text!r}"
        )
    return values


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_kind(device: str) -> str:
    """``cpu`` or ``cuda`` (the suffix of result file names)."""
    return "cuda" if device.startswith("cuda") else "cpu"


def machine(device: str, threads: int) -> dict:
    """Where and how a benchmark ran: CPU, cores, load, torch version, threads, GPU, date."""
    import torch

    info = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()]
        if hasattr(os, "getloadavg")
        else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": threads,
        "device": device,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def synchronizer(device: str) -> Callable[[], None]:
    """``torch.cuda.synchronize`` for a CUDA device, a no-op for the CPU."""
    import torch

    if device.startswith("cuda"):
        return lambda: torch.cuda.synchronize(torch.device(device))
    return lambda: None


def time_per_call(
    fn: Callable[[], object],
    *,
    device: str = "cpu",
    repeats: int = 5,
    min_seconds: float = 0.05,
    warmup: int = 1,
) -> float:
    """Median seconds of one call of ``fn`` over ``repeats`` timed batches.

    Each batch calls ``fn`` as many times as it takes to fill ``min_seconds`` (measured on the
    warm-up), with the device synchronised before and after, so asynchronous CUDA work is
    inside the timed region. The median resists the noise of a shared machine.
    """
    sync = synchronizer(device)
    sync()
    start = time.perf_counter()
    for _ in range(max(warmup, 1)):
        fn()
    sync()
    once = (time.perf_counter() - start) / max(warmup, 1)
    calls = max(1, int(min_seconds / max(once, 1e-9)))
    samples = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


def markdown_table(
    columns: Sequence[str], rows: Sequence[dict], formats: dict | None = None
) -> str:
    """A Markdown table of ``rows`` (dicts) with one column per key in ``columns``.

    ``formats`` maps a column to a format spec (``".2f"``) or a callable; missing values
    print as ``-``.
    """
    formats = formats or {}
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c)
            f = formats.get(c)
            if v is None:
                cells.append("-")
            elif callable(f):
                cells.append(f(v))
            elif f:
                cells.append(format(v, f))
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(
    out: Path,
    name: str,
    info: dict,
    columns: Sequence[str],
    rows: list[dict],
    text: str,
    extra: dict | None = None,
) -> tuple[Path, Path]:
    """Write ``<out>/<name>.json`` (machine, columns, rows, ``extra``) and ``<out>/<name>.md``.

    The Markdown file holds ``text`` (the table the script printed).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / f"{name}.json", out / f"{name}.md"
    doc = {"machine": info, "columns": list(columns), "rows": rows, **(extra or {})}
    js.write_text(json.dumps(doc, indent=2))
    md.write_text(text.rstrip() + "\n")
    return js, md


def mpiexec() -> str | None:
    """``mpiexec`` next to ``sys.executable`` (the venv's Open MPI wheel), else on ``PATH``."""
    import shutil

    local = Path(sys.executable).parent / "mpiexec"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("mpiexec")


def header(title: str, info: dict) -> str:
    """The Markdown heading and machine line that open every results file."""
    load = info.get("load_average")
    return (
        f"# {title}\n\n"
        f"{info['date']}; {info['cpu']}, {info['cores']} cores, load average {load}; "
        f"torch {info['torch']}, {info['threads']} thread(s), device {info['device']}.\n\n"
        f"Command: `{info['command']}`\n"
    )
