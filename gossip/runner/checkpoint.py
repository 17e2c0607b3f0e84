"""Checkpoints: one file per rank and round, a manifest naming the last complete round.

A checkpoint of round ``r`` is written by every rank together (:func:`save_checkpoint` is a
collective):

1. rank ``k`` writes ``RUN/checkpoints/state-round{r}-rank{k}.pt``
   (:func:`~gossip.runner.atomic.write_atomic`: a temporary file in the same folder, ``fsync``,
   rename, ``fsync`` of the folder; the temporary file is removed when the disk is full): its
   algorithm state (the state
   ``NamedTuple`` as plain tuples; compressor states are fields of it, e.g. ``ChocoState.C``),
   its communication counters, ``r``, the RNG states (Python, NumPy, torch), the loop's clocks,
   the metrics records so far, the world size and the run's id
   (:func:`~gossip.runner.run_id.run_id`);
2. every rank learns whether every rank's file of round ``r`` is durable
   (:func:`~gossip.runner.agree.raise_together`; a rank that failed to write makes every rank
   raise its one-line :class:`~gossip.errors.OutputError`, the previous checkpoint intact);
3. rank 0 writes ``RUN/checkpoints/manifest.json`` naming round ``r`` (atomically), and again
   every rank learns whether that worked;
4. every rank removes its files of other rounds.

So at any instant the folder holds a complete checkpoint: until the manifest names ``r``, the
files of the previous round are kept. :func:`read_checkpoint` loads and checks one file;
:func:`gossip.runner.resume.resume_checkpoint` picks the round every rank resumes from.

Files are read with ``torch.load(weights_only=True)``: a checkpoint holds only tensors, numbers,
strings, ``torch.dtype`` and lists/tuples/dicts of them, so a crafted file cannot run code.
"""

from __future__ import annotations

import io
import json
import random
import re
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from gossip.comm.base import CommStats, Communicator
from gossip.errors import ConfigError
from gossip.runner.agree import attempt, raise_together
from gossip.runner.atomic import cannot_write, write_atomic

__all__ = ["MANIFEST", "CheckpointError", "checkpoint_path",
           "first_line", "own_files", "read_checkpoint", "restore_rng",
           "restore_state", "rng_state", "save_checkpoint", "unlink_quietly", "write_manifest"]

MANIFEST = "manifest.json"
FORMAT = 2
_FILE = re.compile(r"state-round(\d+)-rank(\d+)\.pt")


class CheckpointError(ConfigError):
    """A checkpoint that cannot be resumed: missing, damaged, or from another run."""


def checkpoint_path(run_dir: str | Path, rank: int, round_: int) -> Path:
    """``RUN/checkpoints/state-round{round_}-rank{rank}.pt``."""
    return Path(run_dir) / "checkpoints" / f"state-round{round_}-rank{rank}.pt"


def rng_state() -> dict[str, Any]:
    """The global random states of Python, NumPy and torch (CPU and CUDA when present), as
    tensors, numbers and tuples only (loadable with ``weights_only=True``)."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": (version, tuple(internal), gauss),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npy = state["numpy"]
    np.random.set_state({
        "bit_generator": npy["bit_generator"],
        "state": {"key": npy["key"].numpy().astype(np.uint32), "pos": npy["pos"]},
        "has_gauss": npy["has_gauss"], "gauss": npy["gauss"],
    })
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- writing -------------------------------------------------------------------------------------


def write_manifest(folder: Path, round_: int, world_size: int, run_id: str) -> None:
    manifest = {"round": round_, "world_size": world_size, "run_id": run_id,
                "files": [f"state-round{round_}-rank{k}.pt" for k in range(world_size)]}
    write_atomic(folder / MANIFEST, json.dumps(manifest).encode() + b"\n")


def _write_file(path: Path, payload: dict[str, Any]) -> None:
    """Serialise ``payload`` in memory, then write it atomically (a full disk is an OSError of
    the write, which :func:`write_atomic` cleans up after, not an error inside torch)."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise cannot_write(path.parent, err, "create") from None
    write_atomic(path, buffer.getvalue())


def own_files(folder: Path, rank: int) -> dict[int, Path]:
    """Round -> this rank's checkpoint file in ``folder``."""
    found = {}
    for path in folder.glob(f"state-round*-rank{rank}.pt"):
        match = _FILE.fullmatch(path.name)
        if match and int(match[2]) == rank:
            found[int(match[1])] = path
    return found


def save_checkpoint(
    run_dir: str | Path,
    comm: Communicator,
    *,
    rounds_done: int,
    state: NamedTuple,
    clocks: dict[str, float],
    metrics: list[dict],
    run_id: str,
    problem_state: dict | None = None,
) -> Path:
    """Write the checkpoint of round ``rounds_done`` (collective; see the module docstring).
    ``problem_state`` is the problem's own part (:meth:`~gossip.problems.base.Problem.
    checkpoint_state`, plain data). Returns this rank's file."""
    rank, size = comm.rank, comm.size
    path = checkpoint_path(run_dir, rank, rounds_done)
    folder = path.parent
    payload = {
        "format": FORMAT,
        "run_id": run_id,
        "rank": rank,
        "world_size": size,
        "rounds_done": rounds_done,
        "state_type": type(state).__name__,
        "state": {k: _plain(v) for k, v in state._asdict().items()},
        "stats": comm.stats.as_dict(),
        "clocks": _plain(dict(clocks)),
        "rng": rng_state(),
        "metrics": _plain(list(metrics)),
        "problem": _plain(dict(problem_state or {})),
    }
    raise_together(comm, attempt(_write_file, path, payload))  # every rank's file is durable
    raise_together(comm, attempt(write_manifest, folder, rounds_done, size, run_id)
                   if rank == 0 else None)  # the manifest names this round: older files may go
    for r, old in own_files(folder, rank).items():
        if r != rounds_done:
            unlink_quietly(old)
    return path


def unlink_quietly(path: Path) -> None:
    """Remove ``path``; an OSError (a folder turned read-only) is ignored."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass  # a stale file of an older round: the manifest says which round counts


def _plain(value: Any) -> Any:
    """Tensors detached on the CPU, NamedTuples as tuples, NumPy scalars as Python numbers:
    what ``weights_only=True`` loads."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# -- reading -------------------------------------------------------------------------------------


def first_line(err: BaseException) -> str:
    """``Type: first line of the message`` (200 characters at most)."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__


def _unpickler_detail(err: BaseException) -> str:
    """The line of a ``torch.load`` error that says what is wrong (torch wraps the refusal of
    its weights-only unpickler in a long explanation)."""
    text = str(err)
    marker = "WeightsUnpickler error:"
    if marker in text:
        rest = [line.strip() for line in text.split(marker, 1)[1].splitlines() if line.strip()]
        if rest:
            return rest[0].split(" was not an allowed global")[0][:200]
    return first_line(err)


_KEYS = {"format": int, "run_id": str, "rank": int, "world_size": int, "rounds_done": int,
         "state_type": str, "state": dict, "stats": dict, "clocks": dict, "rng": dict,
         "metrics": list}


def read_checkpoint(path: Path, *, rank: int, round_: int, world_size: int,
                    run_ids: tuple[str, ...], template: NamedTuple
                    ) -> tuple[dict[str, Any], NamedTuple]:
    """Load and check one checkpoint file; returns ``(payload, state)`` with ``state`` in the
    type, devices and dtypes of ``template``.

    Raises
    ------
    CheckpointError
        One line naming the file and what is wrong: unreadable (truncated, empty, not a
        checkpoint), objects other than tensors and plain data, another rank, round, world size
        or run (an id not in ``run_ids``, :func:`~gossip.runner.run_id.accepted_run_ids`),
        state fields or shapes unlike the algorithm's.
    """
    where = f"checkpoint {str(path)!r}"
    if path.stat().st_size == 0:
        raise CheckpointError(f"{where} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of odd files
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged file can fail anywhere in torch's reader
        detail = _unpickler_detail(err)
        if detail.lower().startswith("unsupported global"):
            raise CheckpointError(
                f"{where} refers to code ({detail}); it was not loaded (a checkpoint holds only "
                "tensors and plain data)") from None
        raise CheckpointError(f"{where} is truncated or not a checkpoint ({detail})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{where} is not a checkpoint (holds a {type(data).__name__})")
    for key, kind in _KEYS.items():
        if not isinstance(data.get(key), kind):
            raise CheckpointError(f"{where} is not a checkpoint of this version "
                                  f"(needs {key!r} of type {kind.__name__})")
    if data["run_id"] not in run_ids:
        raise CheckpointError(
            f"{where} belongs to another run (run id {data['run_id']}, this run's config "
            f"gives {' or '.join(run_ids)}); it cannot be resumed here")
    if data["world_size"] != world_size:
        raise CheckpointError(
            f"{where} was written by {data['world_size']} processes, this run has "
            f"{world_size}; resume with mpiexec -n {data['world_size']}")
    if (data["rank"], data["rounds_done"]) != (rank, round_):
        raise CheckpointError(
            f"{where} holds rank {data['rank']} at round {data['rounds_done']}, its name says "
            f"rank {rank} at round {round_}")
    state = restore_state(template, data["state"], where)
    try:
        CommStats(**data["stats"])
        before = rng_state()
        restore_rng(data["rng"])
        restore_rng(before)
    except (TypeError, ValueError, KeyError, RuntimeError, IndexError) as err:
        raise CheckpointError(f"{where} has malformed counters or RNG states "
                              f"({first_line(err)})") from None
    return data, state


def restore_state(template: NamedTuple, saved: dict[str, Any], where: str = "checkpoint"
                  ) -> NamedTuple:
    """The saved values in the type (and on the device/dtype) of ``template``; CheckpointError
    when fields, types or tensor shapes differ (a field missing from ``saved`` is taken from
    ``template`` where it is ``()``, a part of the state that is off)."""
    fields = template._asdict()
    # a field added in a later version holds () when its feature is off: a checkpoint written
    # before it lacks the field and resumes with the same ()
    saved = {**{k: v for k, v in fields.items() if k not in saved and v == ()}, **saved}
    if set(fields) != set(saved):
        raise CheckpointError(
            f"{where} has state fields {sorted(saved)}, the algorithm has {sorted(fields)}")
    return type(template)(**{k: _like(v, saved[k], f"{where} state {k}")
                             for k, v in fields.items()})


def _like(template: Any, saved: Any, where: str) -> Any:
    """``saved`` shaped as ``template``: tensors of the same shape moved to its device and
    dtype, tuples (a compressor state inside the algorithm state) rebuilt as its type."""
    if isinstance(template, torch.Tensor):
        if not isinstance(saved, torch.Tensor) or saved.shape != template.shape:
            got = tuple(saved.shape) if isinstance(saved, torch.Tensor) else type(saved).__name__
            raise CheckpointError(f"{where} is {got}, the algorithm needs a tensor of shape "
                                  f"{tuple(template.shape)}")
        return saved.to(device=template.device, dtype=template.dtype)
    if isinstance(template, tuple):
        if not isinstance(saved, tuple) or len(saved) != len(template):
            raise CheckpointError(f"{where} is not a tuple of {len(template)} entries")
        items = [_like(t, s, where) for t, s in zip(template, saved)]
        return type(template)(*items) if hasattr(template, "_fields") else tuple(items)
    if type(saved) is not type(template):
        raise CheckpointError(f"{where} is a {type(saved).__name__}, the algorithm has a "
                              f"{type(template).__name__}")
    return saved
