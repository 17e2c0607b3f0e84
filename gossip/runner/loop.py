"""The training loop: build a run from its config, go through the rounds, record, checkpoint.

``run()`` reads build -> begin or restore -> loop -> summarise: the run's objects are built once
(:class:`gossip.runner.experiment.Experiment`), a new run folder is made or the last checkpoint
loaded (:class:`~gossip.runner.experiment.Progress`), the rounds go, and ``summary.json`` is
written.

Round ``t`` (``t = 0 .. rounds-1``) is one call ``state, losses = alg.round(state, t, ctx)``
with ``eta = lr(t)`` and ``W(t) = schedule.matrix(t)``. After every ``eval_every`` rounds and
after the last one, every rank joins one metrics record (:mod:`gossip.runner.records`), which rank 0
appends to ``metrics.jsonl``. Checkpoints (:mod:`gossip.runner.checkpoint`) are written every
``checkpoint_every`` rounds and at the end (by every rank together); ``run(...,
resume=RUN_DIR)`` continues from the last complete one and produces the same records an
uninterrupted run does (up to the clocks), because every random draw depends on
``(seed, node, step)`` or ``(seed, round)`` only.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from gossip.comm.base import Communicator
from gossip.config import Config, load_config
from gossip.errors import ConfigError
from gossip.runner.checkpoint import RESUMABLE_CHANGES
from gossip.runner.experiment import Experiment, Progress, lr_schedule
from gossip.runner.records import consensus_distance, make_record
from gossip.runner.rundir import MetricsWriter, write_json

__all__ = ["TrainingDiverged", "lr_schedule", "run"]


class TrainingDiverged(ConfigError):
    """The training loss became NaN or infinite."""


def _resume_config(run_dir: Path, given: Config | None) -> Config:
    saved = load_config(run_dir / "config.toml")
    if given is None:
        return saved
    old, new = saved.to_dict(), given.to_dict()
    for key in ("out", "name"):
        if new.get(key) != old.get(key):
            raise ConfigError(
                f"cannot resume with a different {key!r} (saved {old.get(key)!r}, given "
                f"{new.get(key)!r}): the run stays in {str(run_dir)!r}; only "
                f"{', '.join(RESUMABLE_CHANGES)} may change"
            )
    for key in sorted(set(old) | set(new)):
        if key not in RESUMABLE_CHANGES and old.get(key) != new.get(key):
            raise ConfigError(
                f"cannot resume with a different {key!r} (saved {old.get(key)!r}, "
                f"given {new.get(key)!r}); only {', '.join(RESUMABLE_CHANGES)} may change"
            )
    return given


def run(
    config: Config | None = None,
    *,
    comm: Communicator | None = None,
    quiet: bool = False,
    resume: str | Path | None = None,
) -> dict[str, Any]:
    """Run (or resume) one training run; returns the summary written to ``summary.json``.

    Parameters
    ----------
    config : Config, optional
        The resolved configuration; with ``resume`` it may only change ``rounds`` (not below
        the rounds done), ``eval_every``, ``checkpoint_every`` and ``device`` of the saved
        one (``out`` and ``name`` stay those of the run folder).
    comm : Communicator, optional
        Default ``gossip.comm.factory.make_comm(nodes)`` (MPI under ``mpiexec``).
    quiet : bool
        No progress bar.
    resume : path, optional
        A run folder with checkpoints: continue it.

    Raises
    ------
    ConfigError
        Bad configuration (the same on every rank), resume mismatch,
        :class:`TrainingDiverged` when the loss becomes NaN/inf.
    """
    if resume is not None:
        config = _resume_config(Path(resume), config)
    if config is None:
        raise ConfigError("run() needs a config or resume=RUN_DIR")
    exp = Experiment.build(config, comm)
    progress = exp.begin() if resume is None else exp.restore(resume)
    writer = MetricsWriter(exp.run_dir / "metrics.jsonl", progress.records) \
        if exp.comm.rank == 0 else None
    loop = _Loop(exp, progress, writer)
    try:
        status = loop.go(quiet)
    finally:
        if writer is not None:
            writer.close()
    summary = exp.summary(progress, status)
    if exp.comm.rank == 0:
        write_json(exp.run_dir / "summary.json", summary)
    if status == "diverged":
        raise TrainingDiverged(loop.diverged_message)
    return summary


class _Loop:
    """The rounds of one run: clocks, records and checkpoints go into ``progress``."""

    def __init__(self, exp: Experiment, progress: Progress, writer: MetricsWriter | None):
        self.exp, self.progress, self.writer = exp, progress, writer
        self.diverged_message = ""

    def go(self, quiet: bool) -> str:
        """Rounds ``progress.rounds_done .. rounds - 1``; ``"finished"`` or ``"diverged"``."""
        exp, progress = self.exp, self.progress
        cfg, comm, timed, clocks = exp.config, exp.comm, exp.timed, progress.clocks
        rounds, every, ckpt_every = cfg["rounds"], cfg["eval_every"], cfg["checkpoint_every"]
        start = progress.rounds_done
        bar = None
        if not quiet and comm.rank == 0:
            from tqdm import tqdm

            bar = tqdm(total=rounds, initial=start, file=sys.stderr, desc="rounds",
                       dynamic_ncols=True)
        try:
            for t in range(start, rounds):
                comm_before = timed.seconds
                tic = time.perf_counter()
                timed.paused = False
                exp.state, losses = exp.algorithm.round(exp.state, t, exp.ctx)
                timed.paused = True
                if exp.clock is not None:  # [time]: the round's simulated duration
                    clocks["sim"] = clocks.get("sim", 0.0) + exp.clock.round(t)
                elapsed = time.perf_counter() - tic
                spent = timed.seconds - comm_before
                clocks["wall"] += elapsed
                clocks["comm"] += spent
                clocks["compute"] += elapsed - spent
                loss = float(comm.allreduce_sum(
                    losses.detach().to(torch.float64).sum().reshape(1))[0]) / comm.n
                if not math.isfinite(loss):
                    lr = cfg["algorithm"]["lr"]
                    self.diverged_message = (
                        f"training diverged at round {t} (train_loss={loss}); the last good "
                        f"checkpoint is kept in {exp.run_dir / 'checkpoints'}; try a smaller "
                        f"algorithm.lr (now {lr})"
                    )
                    progress.rounds_done = t
                    return "diverged"
                progress.rounds_done = done = t + 1
                if done % every == 0 or done == rounds:
                    self._record(t, loss, bar)
                if (ckpt_every and done % ckpt_every == 0) or done == rounds:
                    exp.checkpoint(progress)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        progress.rounds_done = rounds
        return "finished"

    def _record(self, t: int, loss: float, bar) -> None:
        exp, clocks = self.exp, self.progress.clocks
        comm = exp.comm
        X = exp.algorithm.params(exp.state)
        evaluation = exp.problem.evaluate(X, comm)
        stats = comm.total_stats()
        record = make_record(
            round_=self.progress.rounds_done, wall_time=clocks["wall"],
            comm_time=clocks["comm"], compute_time=clocks["compute"], lr=exp.ctx.lr(t),
            train_loss=loss, consensus=consensus_distance(X, comm),
            bytes_sent=stats.bytes_sent, n=comm.n, evaluation=evaluation,
            sim_time=clocks.get("sim") if exp.clock is not None else None,
        )
        self.progress.records.append(record)
        if self.writer is not None:
            self.writer.append(record)
        if bar is not None:
            shown = {k: v for k, v in record.items() if k in _SHOWN and isinstance(v, float)}
            bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)


_SHOWN = ("train_loss", "consensus_distance", "test_accuracy", "distance_to_optimum")
