"""RoundLosses: deferred reads (the GPU path, forced here on the CPU) give the per-round floats."""

from __future__ import annotations

import math
import signal

import pytest
import torch

from gossip.comm.local import LocalComm
from gossip.runner.interrupt import StopSignals
from gossip.runner.round_losses import MAX_PENDING, RoundLosses


def _losses(rounds: int, n: int, bad: int | None = None) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    out = [torch.rand(n, generator=g, dtype=torch.float32) * 3 for _ in range(rounds)]
    if bad is not None:
        out[bad][1] = math.inf
        out[bad + 1][0] = math.nan
    return out


def _drive(deferred: bool, losses: list[torch.Tensor], flush_at: set[int]):
    stop = StopSignals()
    sums = RoundLosses(LocalComm(4), 3, stop, torch.device("cpu"), deferred=deferred)
    seen, found = [], None
    for t, row in enumerate(losses):
        assert sums.push(t, row) == 0
        if t in flush_at or sums.due():
            found = sums.flush()
            seen.append(sums.last)
            if found is not None:
                break
    return seen, found, sums


def test_deferred_reads_are_the_per_round_floats() -> None:
    losses = _losses(10, 4)
    flush_at = {2, 6, 9}
    eager, _, sums = _drive(False, losses, flush_at)
    assert not sums.deferred and len(eager) == 10  # read every round, as the loop always did
    deferred, _, sums = _drive(True, losses, flush_at)
    assert sums.deferred and [t for t, _ in deferred] == sorted(flush_at)
    by_round = dict(eager)
    for t, value in deferred:  # the same float64 sum, divided on the host: bit-identical
        assert value == by_round[t] == float(losses[t].to(torch.float64).sum()) / 3


def test_first_non_finite_round_is_found_at_the_flush() -> None:
    losses = _losses(12, 4, bad=4)
    _, eager, _ = _drive(False, losses, set())
    _, deferred, _ = _drive(True, losses, {9})
    assert eager[0] == deferred[0] == 4 and eager[1] == deferred[1] == math.inf


def test_pending_rounds_are_bounded() -> None:
    sums = RoundLosses(LocalComm(2), 2, StopSignals(), torch.device("cpu"), deferred=True)
    for t in range(MAX_PENDING):
        assert not sums.due()
        sums.push(t, torch.ones(2))
    assert sums.due() and sums.flush() is None and sums.last == (MAX_PENDING - 1, 1.0)
    assert sums.flush() is None and not sums.due()


def test_signal_is_this_process_flags_when_deferred() -> None:
    stop = StopSignals()
    sums = RoundLosses(LocalComm(2), 2, stop, torch.device("cpu"), deferred=True)
    stop.requested = signal.SIGTERM
    assert sums.push(0, torch.ones(2)) == signal.SIGTERM


def test_defaults_and_refusal() -> None:
    two = LocalComm(2)
    two.size = 2  # as if one of two ranks
    assert not RoundLosses(LocalComm(2), 2, StopSignals(), torch.device("cpu")).deferred
    with pytest.raises(ValueError, match="one process"):
        RoundLosses(two, 2, StopSignals(), torch.device("cpu"), deferred=True)


def _run_deferred(monkeypatch, tmp_path, name: str, *extra: str, deferred: bool):
    from functools import partial

    from gossip.config import load_config
    from gossip.runner import loop
    from gossip.runner.rundir import read_metrics

    monkeypatch.setattr(loop, "RoundLosses", partial(RoundLosses, deferred=deferred))
    config = load_config(None, ["problem.name=quadratic", "nodes=6", "problem.dim=4",
                                *extra, f"out='{tmp_path}'", f"name='{name}'"])
    try:
        loop.run(config, quiet=True)
    except loop.TrainingDiverged as e:
        return str(e).replace(name, "RUN"), read_metrics(tmp_path / name)
    return None, read_metrics(tmp_path / name)


CLOCKS = ("wall_time", "compute_time", "comm_time")


@pytest.mark.parametrize("extra", [("rounds=70", "eval_every=10", "checkpoint_every=25"),
                                   ("rounds=400", "eval_every=7", "algorithm.lr=5.0")],
                         ids=["finite", "diverging"])
def test_loop_with_deferred_reads_gives_the_same_records(monkeypatch, tmp_path, extra) -> None:
    eager = _run_deferred(monkeypatch, tmp_path, "run-a", *extra, deferred=False)
    deferred = _run_deferred(monkeypatch, tmp_path, "run-b", *extra, deferred=True)
    assert eager[0] == deferred[0]  # the same divergence message (round and loss), or none
    assert (eager[0] is not None) == ("algorithm.lr=5.0" in extra)
    strip = [[{k: v for k, v in r.items() if k not in CLOCKS} for r in recs]
             for recs in (eager[1], deferred[1])]
    assert strip[0] == strip[1] and len(strip[0]) > 0
