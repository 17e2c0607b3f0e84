"""One training run as an object: its config, its communicator and what is built from them.

:meth:`Experiment.build` is the one place a run's objects are made, each exactly once, from a
validated :class:`~gossip.config.Config` (validation only checks declarations; what only
building shows, such as a disconnected graph or compressor keys that do not fit together, is
reported here as a one-line ConfigError, the same on every rank):

- the torch threads (:func:`gossip.runner.launch_env.torch_threads`), the seed and the device;
- the graph and the schedule ``W(t)`` (:func:`gossip.network.topology.build_topology`);
- the compressor (``gossip.compression.make_compressor``; ``None`` for ``name = "none"``);
- the problem, the algorithm, its :class:`~gossip.algorithms.Context`, the ``[attack]``
  (:func:`gossip.robust.attacks.build_attack`: its channel becomes the communicator's), the
  ``[privacy]`` wrapper of the problem (:func:`gossip.privacy.dp_sgd.with_privacy`) and the
  state ``alg.init(ctx)``.

:func:`gossip.runner.loop.run` then reads::

    exp = Experiment.build(config, comm)
    progress = exp.restore(run_dir) if resume else exp.begin()
    ... rounds: exp.state = exp.algorithm.round(exp.state, t, exp.ctx) ...
    summary = exp.summary(progress, status)

The algorithm's state, compressor states included (they live in the state ``NamedTuple``), is
all a checkpoint needs besides the counters, clocks, records and RNG states in
:class:`Progress`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from gossip.comm.base import CommStats, Communicator
from gossip.comm.channel import IDENTITY
from gossip.comm.device import local_rank, pick_device
from gossip.comm.factory import make_comm
from gossip.comm.timed import TimedComm
from gossip.config import Config, build_topology
from gossip.errors import ConfigError, GossipError
from gossip.network.faults import with_crashes, with_faults, without_faults
from gossip.network.sim_time import make_clock
from gossip.privacy.dp_sgd import with_privacy
from gossip.robust.attacks import AttackChannel
from gossip.runner.agree import attempt, raise_together
from gossip.runner.checkpoint import restore_rng, save_checkpoint
from gossip.runner.launch_env import torch_threads
from gossip.runner.lock import RunLock
from gossip.runner.resume import resume_checkpoint
from gossip.runner.run_id import accepted_run_ids, resumed_file, run_id
from gossip.runner.rundir import default_name, new_run_dir, versions, write_text

__all__ = ["Experiment", "Progress", "check_builds", "lr_schedule", "on_rank0"]


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


def _clocks() -> dict[str, float]:
    return {"wall": 0.0, "comm": 0.0, "compute": 0.0}


@dataclass
class Progress:
    """Where a run stands: rounds done, the metrics records so far, the clocks (seconds).

    ``clocks["wall"]`` is the time inside ``alg.round`` calls, ``clocks["comm"]`` the part of
    it spent inside communicator calls (:class:`~gossip.comm.timed.TimedComm`) and
    ``clocks["compute"] = wall - comm``.
    """

    rounds_done: int = 0
    records: list[dict] = field(default_factory=list)
    clocks: dict[str, float] = field(default_factory=_clocks)


def on_rank0(comm: Communicator, fn):
    """Run ``fn`` on rank 0 only; its result, or its GossipError (ConfigError, OutputError:
    the same type and line), reaches every rank."""
    result: tuple[str, Any] = ("ok", None)
    if comm.rank == 0:
        try:
            result = ("ok", fn())
        except GossipError as err:
            result = ("error", err)
    if comm.size > 1:
        result = comm.broadcast_object(result, root=0)
    if result[0] == "error":
        raise result[1]
    return result[1]


def _network(config: Config):
    """``(graph, schedule, compressor)`` of ``config``; ``compressor`` is None for ``none``.
    ConfigError when the algorithm is not defined on that network
    (:meth:`~gossip.algorithms.Algorithm.check_network`)."""
    from gossip.algorithms import ALGORITHMS
    from gossip.compression import make_compressor

    graph, schedule = build_topology(config)
    ALGORITHMS[config["algorithm"]["name"]].check_network(schedule, graph)
    comp = {k: v for k, v in config["compression"].items() if v is not None}
    name = comp.pop("name")
    compressor = make_compressor(name, comp)
    return graph, schedule, None if name == "none" else compressor  # None: no compression


def _attack(config: Config, problem, alg, compressor):
    """The run's :class:`~gossip.robust.attacks.Attack` (``None`` for ``attack.name = "none"``)."""
    from gossip.robust.attacks import build_attack

    return build_attack(config["attack"], config["nodes"], config["seed"], problem, alg,
                        compressor is not None)


def check_builds(config: Config) -> None:
    """Build the graph, schedule and compressor of ``config`` and drop them (ConfigError
    naming the key when one cannot be built). Not part of a run: ``gossip sweep`` calls it for
    every point before the first run, so a bad point fails in seconds, not after the runs
    before it; the problem (data) is not built."""
    _network(config)


@dataclass
class Experiment:
    """Everything one run is made of (see the module docstring).

    Attributes
    ----------
    config : Config
        The resolved configuration (its ``name`` is set by :meth:`begin` / :meth:`restore`).
    comm : Communicator
        The run's communicator; ``timed`` wraps it and is the one the algorithm talks to.
    timed : TimedComm
        Measures the seconds spent in communication (paused outside ``alg.round``).
    problem, graph, schedule, compressor, algorithm, ctx
        Built once by :meth:`build`; ``compressor`` is ``None`` without compression.
    state : NamedTuple
        The algorithm's current state (the loop replaces it every round).
    run_dir : Path or None
        The run folder, once :meth:`begin` or :meth:`restore` has been called.
    clock : SimClock or None
        The ``[time]`` model (:mod:`gossip.network.sim_time`); None without one.
    lock : RunLock or None
        Rank 0's lock on the run folder (:mod:`gossip.runner.lock`), until :meth:`release`.
    last_checkpoint : int or None
        The round of the last complete checkpoint in the run folder (None: none yet).
    attack : gossip.robust.attacks.Attack or None
        The ``[attack]`` of the run (its channel is the communicator's), ``None`` for none.
    """

    config: Config
    comm: Communicator
    timed: TimedComm
    problem: Any
    graph: Any
    schedule: Any
    compressor: Any
    algorithm: Any
    ctx: Any
    state: NamedTuple
    run_dir: Path | None = None
    clock: Any = None
    lock: RunLock | None = None
    last_checkpoint: int | None = None
    attack: Any = None

    @classmethod
    def build(cls, config: Config, comm: Communicator | None = None) -> Experiment:
        """Build every object of the run once; ConfigError (one line, every rank) when the
        config cannot be built (``comm`` default: ``make_comm(nodes)``, MPI under mpiexec)."""
        from gossip.algorithms import ALGORITHMS, Context, make_algorithm
        from gossip.problems.registry import make_problem
        from topologies import TopologyError

        n = config["nodes"]
        if comm is None:
            comm = make_comm(n)
        torch.set_num_threads(torch_threads(config["threads"]))
        if comm.n != n:
            raise ConfigError(f"the communicator has {comm.n} nodes but nodes={n}")
        timed = TimedComm(comm)
        timed.paused = True
        torch.manual_seed(config["seed"])
        device = pick_device(config["device"], local_rank(comm) if hasattr(comm, "mpi") else 0)
        graph, schedule, compressor = _network(config)
        prob = {k: v for k, v in config["problem"].items() if v is not None}
        problem = make_problem(prob.pop("name"), prob, n=n, seed=config["seed"],
                               device=device, dtype=getattr(torch, config["dtype"]))
        alg_cfg = config["algorithm"]
        own = {o.name for o in ALGORITHMS.options(alg_cfg["name"])}
        alg = make_algorithm(alg_cfg["name"], {k: v for k, v in alg_cfg.items() if k in own})
        # The channel: the [attack] (a reused communicator's earlier attack dropped), then the
        # [faults] after it (gossip.network.faults.with_faults replaces an earlier run's faults).
        attack = _attack(config, problem, alg, compressor)
        problem = with_privacy(problem, config)  # [privacy]: DP-SGD gradients, epsilon
        before = without_faults(comm.channel)
        if attack is not None and attack.channel is not None:
            before = attack.channel
        elif isinstance(before, AttackChannel):
            before = IDENTITY
        comm.channel = with_faults(before, config)
        alg = with_crashes(alg, config)
        talk, clock = make_clock(config, timed, alg)  # [time]: simulated time per round
        ctx = Context(talk, problem, schedule, graph, lr_schedule(alg_cfg, config["rounds"]),
                      seed=config["seed"], compressor=compressor,
                      time=clock.model if clock is not None else None)
        try:
            state = alg.init(ctx)
        except TopologyError as err:
            raise ConfigError(
                f"algorithm.name={alg_cfg['name']!r} on topology.name="
                f"{config['topology']['name']!r}: {err}"
            ) from None
        if clock is not None:
            clock.comm.reset()  # what init sent is not part of round 0
        return cls(config, comm, timed, problem, graph, schedule, compressor, alg, ctx, state,
                   clock=clock, attack=attack)

    # -- the run folder ------------------------------------------------------------------------

    def begin(self) -> Progress:
        """A new run: rank 0 creates the run folder (``out/name``; a default name gets a
        ``-2``, ``-3`` ... suffix when taken), locks it and writes ``config.toml``; the byte
        counters start from zero."""
        comm, config = self.comm, self.config
        given = config["name"]

        def make() -> str:
            name = given or default_name(config["algorithm"]["name"],
                                         config["topology"]["name"])
            path = new_run_dir(config["out"], name, unique=given is None)
            self.lock = RunLock(path)
            write_text(path / "config.toml", config.replace(name=path.name).to_toml())
            return path.name

        self.config = config.replace(name=on_rank0(comm, make))
        self.run_dir = Path(config["out"]) / self.config["name"]
        comm.stats = CommStats()  # a communicator reused across runs counts each run afresh
        return Progress()

    def restore(self, run_dir: str | Path) -> Progress:
        """Continue the run in ``run_dir`` from its last complete checkpoint (every rank at the
        same round, :func:`~gossip.runner.resume.resume_checkpoint`): state, byte counters
        and RNG states as saved; rank 0 locks the folder first and rewrites the resumable keys
        of ``config.toml`` (``rounds`` etc. may have changed; the other keys stay as the file
        has them, :func:`~gossip.runner.run_id.resumed_file`). ConfigError when ``rounds`` is
        below the rounds done or another process holds the folder."""
        comm = self.comm
        self.run_dir = Path(run_dir)

        def lock() -> None:
            self.lock = RunLock(self.run_dir)

        on_rank0(comm, lock)
        config_file = self.run_dir / "config.toml"
        ckpt, self.state = resume_checkpoint(
            self.run_dir, comm, accepted_run_ids(self.config, config_file), self.state)
        done, rounds = ckpt["rounds_done"], self.config["rounds"]
        if done > rounds:
            raise ConfigError(
                f"cannot resume with rounds={rounds}: the run in {str(run_dir)!r} has done "
                f"{done} rounds already; give rounds >= {done}"
            )
        comm.stats = CommStats(**ckpt["stats"])
        restore_rng(ckpt["rng"])
        raise_together(comm, attempt(self.problem.restore_checkpoint_state,
                                     ckpt.get("problem", {})))
        self.last_checkpoint = done
        on_rank0(comm, lambda: write_text(config_file, resumed_file(self.config, config_file)))
        return Progress(ckpt["rounds_done"], ckpt["metrics"], ckpt["clocks"])

    def checkpoint(self, progress: Progress) -> None:
        """Write the checkpoint of ``progress`` and the current state (collective: every rank
        calls it at the same round)."""
        save_checkpoint(
            self.run_dir, self.comm, rounds_done=progress.rounds_done, state=self.state,
            clocks=progress.clocks, metrics=progress.records, run_id=run_id(self.config),
            problem_state=self.problem.checkpoint_state(),
        )
        self.last_checkpoint = progress.rounds_done

    def release(self) -> None:
        """Drop the run folder's lock (rank 0; nothing elsewhere)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    # -- summary.json --------------------------------------------------------------------------

    def summary(self, progress: Progress, status: str) -> dict[str, Any]:
        """The content of ``summary.json`` (collective: every rank calls it)."""
        comm, problem, alg = self.comm, self.problem, self.algorithm
        stats = comm.total_stats()
        summary: dict[str, Any] = {
            "status": status,
            "interrupted": status == "interrupted",
            "run_dir": str(self.run_dir),
            "rounds_done": progress.rounds_done,
            "final": progress.records[-1] if progress.records else None,
            "wall_time": progress.clocks["wall"],
            "comm_time": progress.clocks["comm"],
            "compute_time": progress.clocks["compute"],
            "bytes_sent": stats.bytes_sent,
            "mpi_bytes_sent": stats.mpi_bytes_sent,
            "messages": stats.messages,
            "world_size": comm.size,
            "placement": comm.placement.describe(),
            "algorithm": alg.describe(self.ctx),
            "problem": problem.describe(),
            "topology": self._topology_summary(),
            "versions": versions(),
        }
        if hasattr(alg, "report"):  # async_sgd: the staleness histogram
            summary.update(alg.report(self.state))
        if self.attack is not None:
            summary["attack"] = self.attack.describe()
        if self.compressor is not None:
            from gossip.compression import describe_compression

            summary["compression"] = describe_compression(
                self.compressor, problem.dim, problem.layout, problem.dtype, stats,
                alg.ROWS_PER_MESSAGE)
            summary["compression_ratio"] = summary["compression"]["measured_ratio"]
        return summary

    def _topology_summary(self) -> dict[str, Any]:
        import topologies

        topo = self.config["topology"]
        out: dict[str, Any] = {k: topo[k] for k in ("name", "weights", "schedule")}
        if self.graph.number_of_nodes() <= 512:
            try:
                out.update(topologies.summary(self.graph, self.schedule.matrix(0)))
            except topologies.TopologyError as err:
                out["spectral"] = f"not available: {err}"
        return out
