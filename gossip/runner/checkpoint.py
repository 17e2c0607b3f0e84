"""Checkpoints: one file per rank, written atomically, enough to resume bit for bit.

``RUN/checkpoints/state-rank{r}.pt`` holds rank ``r``'s algorithm state (the state
``NamedTuple`` as a dict; compressor states are fields of it, e.g. ``ChocoState.C``), its
communication counters, the number of rounds done, the RNG states (Python, NumPy, torch), the
run loop's clocks and the metrics records written so far. Each file is written to a temporary
name in the same folder and renamed over the old one, so a crash leaves either the previous
checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from gossip.comm.base import CommStats
from gossip.errors import ConfigError

__all__ = ["checkpoint_path", "load_checkpoint", "restore_rng", "rng_state", "save_checkpoint"]


def checkpoint_path(run_dir: str | Path, rank: int) -> Path:
    """``RUN/checkpoints/state-rank{rank}.pt``."""
    return Path(run_dir) / "checkpoints" / f"state-rank{rank}.pt"


def rng_state() -> dict[str, Any]:
    """The global random states of Python, NumPy and torch (CPU and CUDA when present)."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    run_dir: str | Path,
    rank: int,
    *,
    rounds_done: int,
    state: NamedTuple,
    stats: CommStats,
    clocks: dict[str, float],
    metrics: list[dict],
    world_size: int,
) -> Path:
    """Write rank ``rank``'s checkpoint atomically (temporary file, then rename)."""
    path = checkpoint_path(run_dir, rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "rounds_done": rounds_done,
        "state_type": type(state).__name__,
        "state": {k: _to_cpu(v) for k, v in state._asdict().items()},
        "stats": stats.as_dict(),
        "clocks": dict(clocks),
        "rng": rng_state(),
        "metrics": list(metrics),
        "world_size": world_size,
    }
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_checkpoint(run_dir: str | Path, rank: int, world_size: int) -> dict[str, Any]:
    """Rank ``rank``'s checkpoint; ConfigError when missing or from another world size."""
    path = checkpoint_path(run_dir, rank)
    if not path.is_file():
        raise ConfigError(f"cannot resume: no checkpoint {str(path)!r} in the run folder")
    data = torch.load(path, map_location="cpu", weights_only=False)
    if data["world_size"] != world_size:
        raise ConfigError(
            f"cannot resume: the checkpoint was written by {data['world_size']} processes, "
            f"this run has {world_size}; resume with mpiexec -n {data['world_size']}"
        )
    return data


def restore_state(template: NamedTuple, saved: dict[str, Any]) -> NamedTuple:
    """The saved tensors in the type (and on the device/dtype) of ``template``."""
    fields = template._asdict()
    if set(fields) != set(saved):
        raise ConfigError(
            f"cannot resume: checkpoint state has fields {sorted(saved)}, "
            f"the algorithm has {sorted(fields)}"
        )
    return type(template)(**{k: _like(v, saved[k]) for k, v in fields.items()})


def _to_cpu(value: Any) -> Any:
    """Tensors (also inside tuples such as a compressor's state) detached, on the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, tuple):
        items = [_to_cpu(v) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    return value


def _like(template: Any, saved: Any) -> Any:
    """``saved`` with every tensor on the device and dtype of its counterpart in ``template``
    (recursing into tuples: a compressor state inside the algorithm state)."""
    if isinstance(template, torch.Tensor):
        return saved.to(device=template.device, dtype=template.dtype)
    if isinstance(template, tuple) and isinstance(saved, tuple) and len(template) == len(saved):
        items = [_like(t, s) for t, s in zip(template, saved)]
        return type(saved)(*items) if hasattr(saved, "_fields") else tuple(items)
    return saved

