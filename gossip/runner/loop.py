"""The training loop: build a run from its config, go through the rounds, record, checkpoint.

``run()`` reads build -> begin or restore -> loop -> summarise: the run's objects are built once
(:class:`gossip.runner.experiment.Experiment`), a new run folder is made or the last checkpoint
loaded (:class:`~gossip.runner.experiment.Progress`), the rounds go, and ``summary.json`` is
written.

Round ``t`` (``t = 0 .. rounds-1``) is one call ``state, losses = alg.round(state, t, ctx)``
with ``eta = lr(t)`` and ``W(t) = schedule.matrix(t)``. After every ``eval_every`` rounds and
after the last one, every rank joins one metrics record (:mod:`gossip.runner.records`), which rank 0
appends to ``metrics.jsonl``. Checkpoints (:mod:`gossip.runner.checkpoint`) are written every
``checkpoint_every`` rounds (default: at every evaluation), at the end and when SIGINT/SIGTERM
stops the run (:mod:`gossip.runner.interrupt`), by every rank together (a run stopped so writes
``summary.json`` with ``"interrupted": true``); ``run(...,
resume=RUN_DIR)`` continues from the last complete one and produces the same records an
uninterrupted run does (up to the clocks), because every random draw depends on
``(seed, node, step)`` or ``(seed, round)`` only.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

from gossip.comm.base import Communicator
from gossip.config import Config, load_config
from gossip.errors import ConfigError, GossipError
from gossip.runner.agree import attempt, raise_together
from gossip.runner.experiment import Experiment, Progress, lr_schedule
from gossip.runner.interrupt import RunInterrupted, StopSignals, stopped_line
from gossip.runner.records import consensus_distance, honest_rows, make_record
from gossip.runner.round_losses import RoundLosses
from gossip.runner.run_id import refuse_differences
from gossip.runner.rundir import MetricsWriter, write_json

__all__ = ["TrainingDiverged", "lr_schedule", "run"]


class TrainingDiverged(ConfigError):
    """The training loss became NaN or infinite."""


def _resume_config(run_dir: Path, given: Config | None) -> Config:
    saved = load_config(run_dir / "config.toml")
    if given is not None:
        refuse_differences(saved, given, run_dir)
    return saved if given is None else given


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
        Bad configuration (the same on every rank), resume mismatch, a run folder another
        process holds (:mod:`gossip.runner.lock`), :class:`TrainingDiverged` when the loss
        becomes NaN/inf.
    OutputError
        A file of the run cannot be written (the same on every rank).
    RunInterrupted
        SIGINT or SIGTERM (:mod:`gossip.runner.interrupt`); the run folder can be resumed.
    """
    if resume is not None:
        config = _resume_config(Path(resume), config)
    if config is None:
        raise ConfigError("run() needs a config or resume=RUN_DIR")
    with StopSignals() as stop:
        exp = Experiment.build(config, comm)
        try:
            return _run(exp, stop, quiet, resume)
        finally:
            exp.release()


def _run(exp: Experiment, stop: StopSignals, quiet: bool, resume) -> dict[str, Any]:
    progress = exp.begin() if resume is None else exp.restore(resume)
    comm = exp.comm
    stop.describe = lambda signum: stopped_line(signum, exp.run_dir, exp.last_checkpoint,
                                                comm.size)
    writer, error = None, None
    if comm.rank == 0:
        try:
            writer = MetricsWriter(exp.run_dir / "metrics.jsonl", progress.records)
        except GossipError as err:
            error = err
    raise_together(comm, error)
    loop = _Loop(exp, progress, writer, stop)
    try:
        status = loop.go(quiet)
    except RunInterrupted as interrupt:
        if interrupt.agreed:  # every rank at the same round boundary, its checkpoint written
            raise _interrupted_summary(exp, progress, interrupt) from None
        raise
    finally:
        if writer is not None:
            writer.close()
    summary = exp.summary(progress, status)
    _write_summary(exp, summary)
    if status == "diverged":
        raise TrainingDiverged(loop.diverged_message)
    return summary


def _write_summary(exp: Experiment, summary: dict[str, Any]) -> None:
    """Rank 0 writes ``summary.json`` atomically; its OutputError reaches every rank."""
    raise_together(exp.comm, attempt(write_json, exp.run_dir / "summary.json", summary)
                   if exp.comm.rank == 0 else None)


def _interrupted_summary(exp: Experiment, progress: Progress,
                         interrupt: RunInterrupted) -> RunInterrupted:
    """Write the summary of a run every rank stopped at round ``progress.rounds_done`` for a
    signal (``"interrupted": true``, ``rounds_done`` the checkpoint's round, ``signal``; a
    resume replaces it at its end); returns the interrupt to raise, whose line says so when
    the summary could not be written (the checkpoint is there either way)."""
    summary = {**exp.summary(progress, "interrupted"),
               "signal": signal.Signals(interrupt.signum).name}
    try:
        _write_summary(exp, summary)
    except GossipError as err:
        return RunInterrupted(interrupt.signum, f"{interrupt.message}; summary.json was not "
                              f"written ({err})", interrupt.agreed)
    return interrupt


class _Loop:
    """The rounds of one run: clocks, records and checkpoints go into ``progress``."""

    def __init__(self, exp: Experiment, progress: Progress, writer: MetricsWriter | None,
                 stop: StopSignals):
        self.exp, self.progress, self.writer, self.stop = exp, progress, writer, stop
        self.diverged_message = ""

    def go(self, quiet: bool) -> str:
        """Rounds ``progress.rounds_done .. rounds - 1``; ``"finished"`` or ``"diverged"``."""
        exp, progress = self.exp, self.progress
        cfg, comm, timed, clocks = exp.config, exp.comm, exp.timed, progress.clocks
        rounds, every = cfg["rounds"], cfg["eval_every"]
        ckpt_every = every if cfg["checkpoint_every"] is None else cfg["checkpoint_every"]
        start = progress.rounds_done
        bar = None
        if not quiet and comm.rank == 0:
            from tqdm import tqdm

            bar = tqdm(total=rounds, initial=start, file=sys.stderr, desc="rounds",
                       dynamic_ncols=True)
        ids = exp.problem.honest  # [attack]: losses of the honest nodes only (records.py)
        honest = honest_rows(ids, comm.nodes, exp.algorithm.params(exp.state).device)
        n_loss = comm.n if ids is None else len(ids)
        sums = RoundLosses(comm, n_loss, self.stop, exp.algorithm.params(exp.state).device)
        self.stop.armed = True
        try:
            for t in range(start, rounds):
                comm_before = timed.seconds
                tic = time.perf_counter()
                timed.paused = False
                exp.state, losses = exp.algorithm.round(exp.state, t, exp.ctx)
                timed.paused = True
                if exp.clock is not None:  # [time]: the round's simulated duration
                    step = exp.clock.round(t)
                    own = getattr(exp.algorithm, "sim_time", None)  # async_sgd: event time
                    clocks["sim"] = own(exp.state) if own else clocks.get("sim", 0.0) + step
                elapsed = time.perf_counter() - tic
                spent = timed.seconds - comm_before
                clocks["wall"] += elapsed
                clocks["comm"] += spent
                clocks["compute"] += elapsed - spent
                # the loss sum and the stop flags (interrupt.py; round_losses.py: read on the
                # host at once, or on a GPU in one process at the next flush)
                if honest is not None:  # [attack]: the honest nodes' losses only
                    losses = losses[honest]
                signum = sums.push(t, losses)
                done = t + 1
                recorded = done % every == 0 or done == rounds
                saved = (ckpt_every and done % ckpt_every == 0) or done == rounds
                if recorded or saved or signum or sums.due():
                    tic = time.perf_counter()
                    bad = sums.flush()
                    if sums.deferred:  # the GPU's queued rounds finish inside the flush
                        waited = time.perf_counter() - tic
                        clocks["wall"] += waited
                        clocks["compute"] += waited
                    if bad is not None:
                        self.diverged_message = self._diverged(*bad)
                        progress.rounds_done = bad[0]
                        return "diverged"
                progress.rounds_done = done
                if recorded:
                    self._record(t, sums.last[1], bar)
                if saved or signum:
                    exp.checkpoint(progress)
                if signum and done < rounds:
                    raise RunInterrupted(signum, stopped_line(
                        signum, exp.run_dir, exp.last_checkpoint, comm.size, at=done), True)
                if bar is not None:
                    bar.update(1)
        finally:
            self.stop.armed = False
            if bar is not None:
                bar.close()
        progress.rounds_done = rounds
        return "finished"

    def _diverged(self, t: int, loss: float) -> str:
        exp = self.exp
        last = exp.last_checkpoint
        kept = (f"the last checkpoint, of round {last}, is in {exp.run_dir / 'checkpoints'}"
                if last is not None else f"no checkpoint was written in {exp.run_dir}")
        return (f"training diverged at round {t} (train_loss={loss}); {kept}; try a smaller "
                f"algorithm.lr (now {exp.config['algorithm']['lr']})")

    def _record(self, t: int, loss: float, bar) -> None:
        exp, clocks = self.exp, self.progress.clocks
        comm = exp.comm
        X = exp.algorithm.params(exp.state)
        evaluation = {**exp.problem.evaluate(X, comm), **exp.algorithm.metrics(exp.state)}
        stats = comm.total_stats()
        record = make_record(
            round_=self.progress.rounds_done, wall_time=clocks["wall"],
            comm_time=clocks["comm"], compute_time=clocks["compute"], lr=exp.ctx.lr(t),
            train_loss=loss, consensus=consensus_distance(X, comm, exp.problem.honest),
            bytes_sent=stats.bytes_sent, n=comm.n, evaluation=evaluation,
            sim_time=clocks.get("sim") if exp.clock is not None else None,
        )
        self.progress.records.append(record)
        raise_together(comm, attempt(self.writer.append, record)
                       if self.writer is not None else None)
        if bar is not None:
            shown = {k: v for k, v in record.items() if k in _SHOWN and isinstance(v, float)}
            bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)


_SHOWN = ("train_loss", "consensus_distance", "test_accuracy", "distance_to_optimum")
