"""The Experiment: built once per run, build errors name the key, clocks measure communication,
torch threads follow one rule."""

from __future__ import annotations

import time

import pytest
import torch

from gossip.comm.local import LocalComm
from gossip.config import load_config
from gossip.errors import ConfigError
from gossip.runner.experiment import Experiment
from gossip.runner.loop import run
from gossip.runner.rundir import read_metrics

BASE = ["problem.name=quadratic", "nodes=6", "problem.dim=4"]


def cfg(tmp_path, *extra):
    return load_config(None, [*BASE, f"out='{tmp_path}'", *extra])


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["topology.name=hypercube", "nodes=12"], "topology.name"),
        (["topology.name=torus", "topology.shape=[3, 3]"], "topology.shape"),
        (["topology.name=ring", "topology.p=0.5"], "topology.p"),
        (["topology.schedule=churn", "topology.offline=1.5"], "topology.offline"),
        (["topology.graphs=['ring']"], "topology.graphs"),
        (["algorithm.name=choco", "compression.k=3"], "compression.k"),
        (["algorithm.name=choco", "compression.name=sign", "compression.levels=3"],
         "compression.levels"),
        (["algorithm.name=choco", "compression.name=topk", "compression.k=3",
          "compression.ratio=0.5"], "compression.ratio"),
    ],
)
def test_build_errors_name_the_key(tmp_path, overrides, needle):
    config = cfg(tmp_path, *overrides)  # validation checks declarations and builds nothing
    with pytest.raises(ConfigError) as info:
        Experiment.build(config)
    message = str(info.value)
    assert needle in message and "\n" not in message


def test_disconnected_graph_refused(tmp_path):
    edges = tmp_path / "two_parts.edgelist"
    edges.write_text("0 1\n1 2\n3 4\n4 5\n")
    config = cfg(tmp_path, "topology.name=file", f"topology.path='{edges}'")
    with pytest.raises(ConfigError, match="topology.name.*not connected"):
        Experiment.build(config)


def test_communicator_of_another_size_refused(tmp_path):
    with pytest.raises(ConfigError, match="the communicator has 4 nodes but nodes=6"):
        Experiment.build(cfg(tmp_path), LocalComm(4))


def test_one_run_builds_graph_compressor_and_problem_once(tmp_path, monkeypatch):
    import gossip.compression
    import gossip.problems.registry
    import topologies

    calls = {"graph": 0, "compressor": 0, "problem": 0}

    def counting(module, name, key):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls[key] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    counting(topologies, "build", "graph")
    counting(gossip.compression, "make_compressor", "compressor")
    counting(gossip.problems.registry, "make_problem", "problem")
    config = cfg(tmp_path, "algorithm.name=choco", "compression.name=topk", "compression.k=2",
                 "rounds=4", "eval_every=2", "name=once")
    assert calls == {"graph": 0, "compressor": 0, "problem": 0}
    summary = run(config, quiet=True)
    assert summary["status"] == "finished" and summary["compression"]["name"] == "topk"
    assert calls == {"graph": 1, "compressor": 1, "problem": 1}


def test_experiment_holds_the_built_run(tmp_path):
    exp = Experiment.build(cfg(tmp_path, "name=e", "algorithm.name=choco",
                               "compression.name=fp16"))
    assert exp.run_dir is None and exp.compressor.name == "fp16"
    assert exp.ctx.comm is exp.timed and exp.timed.inner is exp.comm
    assert exp.ctx.compressor is exp.compressor and exp.ctx.schedule is exp.schedule
    assert exp.graph.number_of_nodes() == 6 and exp.state.X.shape == (6, 4)
    progress = exp.begin()
    assert exp.run_dir == tmp_path / "e" and (exp.run_dir / "config.toml").is_file()
    assert progress.rounds_done == 0 and progress.records == []
    assert Experiment.build(cfg(tmp_path)).compressor is None  # name = "none"


# -- clocks ------------------------------------------------------------------------------------

NAP = 0.02


class SleepyComm(LocalComm):
    """A LocalComm whose every ``mix`` takes at least ``NAP`` seconds longer."""

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.mixes = 0

    def mix(self, X, W, t=None):
        self.mixes += 1
        time.sleep(NAP)
        return super().mix(X, W, t)


def test_comm_time_measures_communication_and_compute_time_excludes_it(tmp_path):
    comm = SleepyComm(6)
    summary = run(cfg(tmp_path, "rounds=5", "eval_every=5", "name=c"), comm=comm, quiet=True)
    assert comm.mixes >= 5  # D-SGD mixes once per round
    slept = comm.mixes * NAP
    assert summary["comm_time"] >= slept
    assert summary["compute_time"] <= summary["wall_time"] - slept
    assert summary["compute_time"] + summary["comm_time"] == pytest.approx(summary["wall_time"])
    (record,) = read_metrics(tmp_path / "c")
    assert record["comm_time"] == summary["comm_time"] >= slept


# -- threads -----------------------------------------------------------------------------------


@pytest.fixture
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("threads, omp, expected", [(0, None, 1), (0, "3", 3), (0, "2,1", 2),
                                                    (2, "3", 2), (2, None, 2)])
def test_run_threads_rule(tmp_path, monkeypatch, keep_threads, threads, omp, expected):
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    torch.set_num_threads(5)
    Experiment.build(cfg(tmp_path, f"threads={threads}"))
    assert torch.get_num_threads() == expected


def test_bad_omp_num_threads_is_a_config_error(tmp_path, monkeypatch, keep_threads):
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    with pytest.raises(ConfigError, match="OMP_NUM_THREADS='many'.*threads=N"):
        Experiment.build(cfg(tmp_path))
    Experiment.build(cfg(tmp_path, "threads=1"))  # the key wins; the variable is not read


# -- checkpoints -------------------------------------------------------------------------------


def test_restore_state_puts_nested_tensors_where_the_template_has_them():
    """A compressor state inside the algorithm state (ChocoState.C) is restored like X."""
    from typing import NamedTuple

    from gossip.runner.checkpoint import restore_state

    class Inner(NamedTuple):
        memory: tuple
        seed: int

    class State(NamedTuple):
        X: torch.Tensor
        C: Inner

    f64 = torch.float64
    template = State(torch.zeros(2, dtype=f64), Inner((torch.zeros(3, dtype=f64),), 5))
    saved = State(torch.ones(2), Inner((torch.ones(3),), 5))._asdict()
    out = restore_state(template, saved)
    assert type(out.C) is Inner and out.C.seed == 5
    assert out.X.dtype == f64 and out.C.memory[0].dtype == f64
    assert torch.equal(out.C.memory[0], torch.ones(3, dtype=f64))
