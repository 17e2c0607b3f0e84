"""Resuming: every rank starts from the same complete checkpoint, or every rank stops.

:func:`resume_checkpoint` (a collective) removes temporary files left by a crash, has every
rank check its own files (:func:`~gossip.runner.checkpoint.read_checkpoint`: readable, its
rank and round, this world size, one of this run's ids
(:func:`~gossip.runner.run_id.accepted_run_ids`), the state's fields and shapes), and rank 0
checks that every rank has the same ids (the same config) and picks the round: the
manifest's when every rank's file of it is good, else the latest round every rank has a good
file of, else none. Rank 0 broadcasts the decision, so every rank starts
at the same round or every rank raises the same one-line
:class:`~gossip.runner.checkpoint.CheckpointError` (no rank waits in a collective the others
skip). The files are written by :func:`~gossip.runner.checkpoint.save_checkpoint`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

from gossip.comm.base import Communicator
from gossip.runner.agree import attempt, raise_together
from gossip.runner.checkpoint import (
    MANIFEST,
    CheckpointError,
    checkpoint_path,
    first_line,
    own_files,
    read_checkpoint,
    unlink_quietly,
    write_manifest,
)

__all__ = ["resume_checkpoint"]



def _remove_temporaries(folder: Path, rank: int) -> None:
    """Temporary files of this rank's checkpoints (and rank 0: of the manifest) left by a
    crash."""
    patterns = [f".state-round*-rank{rank}.pt.tmp-*"] + ([f".{MANIFEST}.tmp-*"] if rank == 0
                                                         else [])
    for pattern in patterns:
        for tmp in folder.glob(pattern):
            tmp.unlink(missing_ok=True)


def _check_own(folder: Path, rank: int, size: int, run_ids: tuple[str, ...],
               template: NamedTuple):
    """``(report, loaded)``: round -> ``None`` (good) or what is wrong, for each of this rank's
    files; ``loaded`` round -> ``(payload, state)`` of the good ones."""
    report: dict[int, str | None] = {}
    loaded: dict[int, tuple[dict, NamedTuple]] = {}
    try:
        _remove_temporaries(folder, rank)
        files = own_files(folder, rank)
    except OSError as err:
        return {-1: f"cannot read {str(folder)!r}: {first_line(err)}"}, loaded
    for r, path in sorted(files.items()):
        try:
            loaded[r] = read_checkpoint(path, rank=rank, round_=r, world_size=size,
                                        run_ids=run_ids, template=template)
            report[r] = None
        except CheckpointError as err:
            report[r] = str(err)
        except OSError as err:
            report[r] = f"cannot read checkpoint {str(path)!r}: {first_line(err)}"
    return report, loaded


def _read_manifest(folder: Path, size: int, run_ids: tuple[str, ...]
                   ) -> tuple[int | None, str | None]:
    """``(round, None)`` from the manifest, or ``(None, why not)``."""
    path = folder / MANIFEST
    where = f"manifest {str(path)!r}"
    try:
        manifest = json.loads(path.read_text())
        round_ = manifest["round"]
        if not isinstance(round_, int):
            raise ValueError("round is not an integer")
    except FileNotFoundError:
        return None, f"no {where}"
    except (OSError, ValueError, KeyError, TypeError) as err:
        return None, f"{where} is damaged ({first_line(err)})"
    if manifest.get("run_id") not in run_ids:
        return None, f"{where} belongs to another run"
    if manifest.get("world_size") != size:
        n = manifest.get("world_size")
        return None, (f"{where}: the checkpoint was written by {n} processes, this run has "
                      f"{size}; resume with mpiexec -n {n}")
    return round_, None


def _decide(folder: Path, reports: list[dict[int, str | None]], size: int,
            ids: list[tuple[str, ...]]):
    """Rank 0's choice: ``("ok", round, note or None)`` or ``("error", message)``; ``ids`` are
    the run ids every rank accepts (from its config), which must agree."""
    for k, other in enumerate(ids):
        if other != ids[0]:
            return ("error", f"cannot resume: rank {k} reads another config than rank 0 (run id "
                             f"{other[0]}, rank 0 has {ids[0][0]}); every rank must read the "
                             f"same {str(folder.parent / 'config.toml')!r}")
    manifest_round, manifest_problem = _read_manifest(folder, size, ids[0])
    rounds = sorted({r for rep in reports for r in rep if r >= 0})
    complete = [r for r in rounds if all(rep.get(r, "missing") is None for rep in reports)]

    def why(r: int) -> str:
        for k, rep in enumerate(reports):
            if -1 in rep:
                return rep[-1]
            if rep.get(r, "missing") is not None:
                return rep[r] if r in rep else (
                    f"rank {k} has no file {checkpoint_path(folder.parent, k, r).name}")
        return ""

    if manifest_round is not None and manifest_round in complete:
        return ("ok", manifest_round, None)
    if manifest_round is not None:
        gap = f"the manifest's round {manifest_round} is incomplete: {why(manifest_round)}"
    else:
        gap = manifest_problem
    if complete:
        return ("ok", complete[-1], f"resuming from round {complete[-1]} ({gap})")
    if not rounds:
        old = " (its state-rank*.pt files are of an older version, which this one does not " \
              "read)" if any(folder.glob("state-rank*.pt")) else ""
        return ("error", f"cannot resume: no checkpoint in {str(folder)!r} ({gap}){old}")
    return ("error", f"cannot resume: no complete checkpoint in {str(folder)!r}: "
                     f"{why(manifest_round if manifest_round is not None else rounds[-1])}")


def resume_checkpoint(run_dir: str | Path, comm: Communicator, run_ids: tuple[str, ...],
                      template: NamedTuple) -> tuple[dict[str, Any], NamedTuple]:
    """The checkpoint every rank resumes from (collective; see the module docstring).

    ``run_ids`` are the ids a checkpoint of this run may carry, this version's first
    (:func:`~gossip.runner.run_id.accepted_run_ids`). Returns this rank's ``(payload, state)``
    of the chosen round; rank 0 prints one line on stderr when that is not the manifest's
    round. Files of other rounds are removed and the manifest names the chosen round.

    Raises
    ------
    CheckpointError
        On every rank, with the same one line, when no round has a good file on every rank.
    """
    folder = Path(run_dir) / "checkpoints"
    rank, size = comm.rank, comm.size
    report, loaded = _check_own(folder, rank, size, run_ids, template)
    if size > 1:
        told = [comm.broadcast_object((report, run_ids) if rank == k else None, root=k)
                for k in range(size)]
    else:
        told = [(report, run_ids)]
    reports, ids = [r for r, _ in told], [tuple(i) for _, i in told]
    decision = _decide(folder, reports, size, ids) if rank == 0 else None
    if size > 1:
        decision = comm.broadcast_object(decision, root=0)
    if decision[0] == "error":
        raise CheckpointError(decision[1])
    _, round_, note = decision
    if rank == 0 and note:
        print(f"gossip: {note}", file=sys.stderr, flush=True)
    for r, path in own_files(folder, rank).items():
        if r != round_:
            unlink_quietly(path)
    raise_together(comm, attempt(write_manifest, folder, round_, size, run_ids[0])
                   if rank == 0 and note else None)
    return loaded[round_]
