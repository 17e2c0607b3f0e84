"""The training loop: build a run from its config, go through the rounds, record, checkpoint.

Round ``t`` (``t = 0 .. rounds-1``) is one call ``state, losses = alg.round(state, t, ctx)``
with ``eta = lr(t)`` and ``W(t) = schedule.matrix(t)``. After every ``eval_every`` rounds and
after the last one, every rank joins one metrics record (:mod:`gossip.metrics`), which rank 0
appends to ``metrics.jsonl``. Checkpoints (:mod:`gossip.checkpoint`) are written every
``checkpoint_every`` rounds and at the end; ``run(..., resume=RUN_DIR)`` continues from the
last one and produces the same records an uninterrupted run does (up to the clocks), because
every random draw depends on ``(seed, node, step)`` or ``(seed, round)`` only.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from gossip.checkpoint import (
    load_checkpoint,
    restore_compressor,
    restore_rng,
    restore_state,
    save_checkpoint,
)
from gossip.comm.base import CommStats, Communicator
from gossip.comm.device import local_rank, pick_device
from gossip.comm.factory import make_comm
from gossip.config import Config, build_topology, load_config
from gossip.errors import ConfigError
from gossip.metrics import TimedComm, consensus_distance, make_record
from gossip.rundir import MetricsWriter, default_name, new_run_dir, versions, write_json

__all__ = ["TrainingDiverged", "lr_schedule", "run"]

#: Keys a resumed run may change (everything else must match the saved config).
RESUMABLE_CHANGES = ("rounds", "eval_every", "checkpoint_every", "device", "out")


class TrainingDiverged(ConfigError):
    """The training loss became NaN or infinite."""


def lr_schedule(alg: Mapping[str, Any], rounds: int) -> Callable[[int], float]:
    """``eta(t)`` from ``[algorithm]``: linear warm-up, then constant, cosine or step.

    Warm-up: ``eta (t + 1) / warmup_rounds`` for ``t < warmup_rounds``. After it, with
    ``s = t - warmup_rounds`` and ``T = rounds - warmup_rounds``:
    ``constant`` ``eta``; ``cosine`` ``eta_min + (eta - eta_min) (1 + cos(pi s / T)) / 2``
    (Loshchilov & Hutter, 2017); ``step`` ``eta * factor ** (s // lr_decay_rounds)``.
    """
    base, kind, warm = alg["lr"], alg["lr_schedule"], alg["warmup_rounds"]
    horizon = max(1, rounds - warm)

    def lr(t: int) -> float:
        if t < warm:
            return base * (t + 1) / warm
        s = t - warm
        if kind == "cosine":
            lo = alg["lr_min"]
            return lo + (base - lo) * 0.5 * (1.0 + math.cos(math.pi * min(s, horizon) / horizon))
        if kind == "step":
            return base * alg["lr_decay_factor"] ** (s // alg["lr_decay_rounds"])
        return base

    return lr


def _device(spec: str, comm: Communicator) -> torch.device:
    """``device`` key -> torch device; under MPI, rank -> GPU by the node-local rank."""
    return pick_device(spec, local_rank(comm) if hasattr(comm, "mpi") else 0)


def _resume_config(run_dir: Path, given: Config | None) -> Config:
    saved = load_config(run_dir / "config.toml")
    if given is None:
        return saved
    old, new = saved.to_dict(), given.to_dict()
    for key in sorted(set(old) | set(new)):
        if key not in RESUMABLE_CHANGES and key != "name" and old.get(key) != new.get(key):
            raise ConfigError(
                f"cannot resume with a different {key!r} (saved {old.get(key)!r}, "
                f"given {new.get(key)!r}); only {', '.join(RESUMABLE_CHANGES)} may change"
            )
    return given.replace(name=saved["name"], out=saved["out"])


def _on_rank0(comm: Communicator, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on rank 0 only; its result, or its ConfigError, reaches every rank."""
    result: tuple[str, Any] = ("ok", None)
    if comm.rank == 0:
        try:
            result = ("ok", fn())
        except ConfigError as err:
            result = ("error", str(err))
    if comm.size > 1:
        result = comm.broadcast_object(result, root=0)
    if result[0] == "error":
        raise ConfigError(result[1])
    return result[1]


def _build(config: Config, comm: TimedComm, device: torch.device):
    from gossip.algorithms import Context, make_algorithm
    from gossip.problems.registry import make_problem
    from topologies import TopologyError

    prob = {k: v for k, v in config["problem"].items() if v is not None}
    name = prob.pop("name")
    dtype = getattr(torch, config["dtype"])
    problem = make_problem(name, prob, n=config["nodes"], seed=config["seed"],
                           device=device, dtype=dtype)
    graph, schedule = build_topology(config)
    compressor = None
    comp = {k: v for k, v in config["compression"].items() if v is not None}
    if comp.pop("name") != "none":
        from gossip.compression import make_compressor

        compressor = make_compressor(config["compression"]["name"], comp)
    alg_cfg = config["algorithm"]
    from gossip.algorithms import ALGORITHMS

    own = {o.name for o in ALGORITHMS.options(alg_cfg["name"])}
    alg = make_algorithm(alg_cfg["name"], {k: v for k, v in alg_cfg.items() if k in own})
    ctx = Context(comm, problem, schedule, graph, lr_schedule(alg_cfg, config["rounds"]),
                  seed=config["seed"], compressor=compressor)
    try:
        state = alg.init(ctx)
    except TopologyError as err:
        raise ConfigError(
            f"algorithm.name={alg_cfg['name']!r} on topology.name="
            f"{config['topology']['name']!r}: {err}"
        ) from None
    return problem, graph, schedule, compressor, alg, ctx, state


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
        The resolved configuration; with ``resume`` it may only change ``rounds``,
        ``eval_every``, ``checkpoint_every`` and ``device`` of the saved one.
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
    n = config["nodes"]
    if comm is None:
        comm = make_comm(n)
    if config["threads"] > 0:
        torch.set_num_threads(config["threads"])
    if comm.n != n:
        raise ConfigError(f"the communicator has {comm.n} nodes but nodes={n}")
    timed = TimedComm(comm)
    timed.paused = True
    torch.manual_seed(config["seed"])
    device = _device(config["device"], comm)
    problem, graph, schedule, compressor, alg, ctx, state = _build(config, timed, device)

    if resume is not None:
        run_dir = Path(resume)
    else:
        name = config["name"] or default_name(
            config["algorithm"]["name"], config["topology"]["name"]
        )
        config = config.replace(name=_on_rank0(comm, lambda: name))
        run_dir = _on_rank0(comm, lambda: new_run_dir(config["out"], config["name"]))
        if comm.rank == 0:
            (run_dir / "config.toml").write_text(config.to_toml())

    start, records, clocks = 0, [], {"wall": 0.0, "comm": 0.0, "compute": 0.0}
    comm.stats = CommStats()  # a communicator reused across runs counts each run afresh
    if resume is not None:
        ckpt = load_checkpoint(run_dir, comm.rank, comm.size)
        start, records, clocks = ckpt["rounds_done"], ckpt["metrics"], ckpt["clocks"]
        state = restore_state(state, ckpt["state"])
        restore_compressor(compressor, ckpt["compressor"])
        comm.stats = CommStats(**ckpt["stats"])
        restore_rng(ckpt["rng"])
        if comm.rank == 0:
            (run_dir / "config.toml").write_text(config.to_toml())
    writer = MetricsWriter(run_dir / "metrics.jsonl", records) if comm.rank == 0 else None
    loop = _Loop(config, comm, timed, problem, alg, ctx, run_dir, writer, compressor, clocks)
    loop.records = records
    try:
        state, rounds_done, status = loop.go(state, start, quiet)
    finally:
        if writer is not None:
            writer.close()
    summary = _summary(config, comm, graph, schedule, problem, alg, ctx, loop, rounds_done,
                       status, run_dir)
    if comm.rank == 0:
        write_json(run_dir / "summary.json", summary)
    if status == "diverged":
        raise TrainingDiverged(loop.diverged_message)
    return summary


class _Loop:
    """The rounds of one run, with its clocks, records and checkpoints."""

    def __init__(self, config, comm, timed, problem, alg, ctx, run_dir, writer, compressor,
                 clocks):
        self.config, self.comm, self.timed = config, comm, timed
        self.problem, self.alg, self.ctx = problem, alg, ctx
        self.run_dir, self.writer, self.compressor = run_dir, writer, compressor
        self.clocks = dict(clocks)
        self.records: list[dict] = []
        self.diverged_message = ""

    def go(self, state, start: int, quiet: bool):
        cfg, comm, timed = self.config, self.comm, self.timed
        rounds, every, ckpt_every = cfg["rounds"], cfg["eval_every"], cfg["checkpoint_every"]
        bar = None
        if not quiet and comm.rank == 0:
            from tqdm import tqdm

            bar = tqdm(total=rounds, initial=start, file=sys.stderr, desc="rounds",
                       dynamic_ncols=True)
        t = start
        try:
            for t in range(start, rounds):
                comm_before = timed.seconds
                tic = time.perf_counter()
                timed.paused = False
                state, losses = self.alg.round(state, t, self.ctx)
                timed.paused = True
                elapsed = time.perf_counter() - tic
                spent = timed.seconds - comm_before
                self.clocks["wall"] += elapsed
                self.clocks["comm"] += spent
                self.clocks["compute"] += elapsed - spent
                loss = float(comm.allreduce_sum(
                    losses.detach().to(torch.float64).sum().reshape(1))[0]) / comm.n
                if not math.isfinite(loss):
                    lr = cfg["algorithm"]["lr"]
                    self.diverged_message = (
                        f"training diverged at round {t} (train_loss={loss}); the last good "
                        f"checkpoint is kept in {self.run_dir / 'checkpoints'}; try a smaller "
                        f"algorithm.lr (now {lr})"
                    )
                    return state, t, "diverged"
                done = t + 1
                if done % every == 0 or done == rounds:
                    self._record(state, done, t, loss, bar)
                if (ckpt_every and done % ckpt_every == 0) or done == rounds:
                    self._checkpoint(state, done)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return state, rounds, "finished"

    def _record(self, state, done: int, t: int, loss: float, bar) -> None:
        comm = self.comm
        X = self.alg.params(state)
        evaluation = self.problem.evaluate(X, comm)
        stats = comm.total_stats()
        record = make_record(
            round_=done, wall_time=self.clocks["wall"], comm_time=self.clocks["comm"],
            compute_time=self.clocks["compute"], lr=self.ctx.lr(t), train_loss=loss,
            consensus=consensus_distance(X, comm), bytes_sent=stats.bytes_sent, n=comm.n,
            evaluation=evaluation,
        )
        self.records.append(record)
        if self.writer is not None:
            self.writer.append(record)
        if bar is not None:
            shown = {k: v for k, v in record.items() if k in _SHOWN and isinstance(v, float)}
            bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)

    def _checkpoint(self, state, done: int) -> None:
        save_checkpoint(
            self.run_dir, self.comm.rank, rounds_done=done, state=state,
            compressor=self.compressor, stats=self.comm.stats, clocks=self.clocks,
            metrics=self.records, world_size=self.comm.size,
        )


_SHOWN = ("train_loss", "consensus_distance", "test_accuracy", "distance_to_optimum")


def _summary(config, comm, graph, schedule, problem, alg, ctx, loop, rounds_done, status,
             run_dir) -> dict[str, Any]:
    stats = comm.total_stats()
    summary: dict[str, Any] = {
        "status": status,
        "run_dir": str(run_dir),
        "rounds_done": rounds_done,
        "final": loop.records[-1] if loop.records else None,
        "wall_time": loop.clocks["wall"],
        "comm_time": loop.clocks["comm"],
        "compute_time": loop.clocks["compute"],
        "bytes_sent": stats.bytes_sent,
        "mpi_bytes_sent": stats.mpi_bytes_sent,
        "messages": stats.messages,
        "world_size": comm.size,
        "placement": comm.placement.describe(),
        "algorithm": alg.describe(ctx),
        "problem": problem.describe(),
        "topology": _topology_summary(config, graph, schedule),
        "versions": versions(),
    }
    if ctx.compressor is not None:
        from gossip.compression import describe_compression

        summary["compression"] = describe_compression(
            ctx.compressor, problem.dim, problem.layout, problem.dtype, stats,
            alg.ROWS_PER_MESSAGE)
        summary["compression_ratio"] = summary["compression"]["measured_ratio"]
    return summary


def _topology_summary(config, graph, schedule) -> dict[str, Any]:
    import topologies

    topo = config["topology"]
    out: dict[str, Any] = {k: topo[k] for k in ("name", "weights", "schedule")}
    if graph.number_of_nodes() <= 512:
        try:
            out.update(topologies.summary(graph, schedule.matrix(0)))
        except topologies.TopologyError as err:
            out["spectral"] = f"not available: {err}"
    return out
