"""Checkpoints: consistent across ranks, loaded without running code, damaged or foreign files
refused with one line naming the file; resume equals the uninterrupted run."""

from __future__ import annotations

import json
import pickle
import random
import shutil

import pytest
import torch

from gossip.cli.train import main
from gossip.config import load_config
from gossip.runner.checkpoint import checkpoint_path
from gossip.runner.loop import run
from gossip.runner.rundir import read_metrics
from tests.mpi_util import REPO_ROOT, requires_mpi, run_mpi

BASE = ["problem.name=quadratic", "nodes=6", "problem.dim=4", "problem.sigma=0.3",
        "eval_every=2", "checkpoint_every=2"]
TIMES = ("wall_time", "compute_time", "comm_time")


def cfg(tmp_path, *extra):
    return load_config(None, [*BASE, f"out='{tmp_path}'", *extra])


def strip_times(records):
    return [{k: v for k, v in r.items() if k not in TIMES} for r in records]


def resume(run_dir, capsys, rounds=6):
    """``gossip train --resume run_dir``: (exit code, stderr lines)."""
    capsys.readouterr()
    code = main(["--resume", str(run_dir), "--set", f"rounds={rounds}", "--quiet"])
    return code, capsys.readouterr().err.splitlines()


def algorithm_cases():
    import sys

    sys.path.insert(0, str(REPO_ROOT / "tests" / "run_scripts"))
    import equivalence

    return {**equivalence.cases(), **equivalence.privacy_cases()}


@pytest.mark.parametrize("case", sorted(algorithm_cases()))
def test_every_algorithm_resumes_exactly(tmp_path, case):
    """The state as plain tensors and tuples (compressor states included) loads with
    weights_only=True and continues exactly where the run stopped."""
    overrides = [o for o in algorithm_cases()[case] if not o.startswith("rounds=")]
    base = [*overrides, f"out='{tmp_path}'", "checkpoint_every=2"]
    run(load_config(None, [*base, "rounds=6", "name=full"]), quiet=True)
    run(load_config(None, [*base, "rounds=4", "name=cut"]), quiet=True)
    run(load_config(None, [*base, "rounds=6", "name=cut"]), resume=tmp_path / "cut", quiet=True)
    assert strip_times(read_metrics(tmp_path / "cut")) == strip_times(
        read_metrics(tmp_path / "full"))


class Marker:
    """Unpickling it creates the file ``path`` (what a crafted checkpoint would do)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _truncated(path, tmp_path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path, tmp_path):
    path.write_bytes(b"")


def _random(path, tmp_path):
    path.write_bytes(random.Random(0).randbytes(4000))


def _wrong_shape(path, tmp_path):
    data = torch.load(path, weights_only=True)
    data["state"]["X"] = torch.zeros(6, 5)
    torch.save(data, path)


def _crafted_torch(path, tmp_path):
    torch.save({"state": Marker(tmp_path / "marker")}, path)


def _crafted_pickle(path, tmp_path):
    path.write_bytes(pickle.dumps({"state": Marker(tmp_path / "marker")}))


DAMAGE = {
    "truncated": (_truncated, "is truncated or not a checkpoint"),
    "empty": (_empty, "is empty (0 bytes)"),
    "random bytes": (_random, "is truncated or not a checkpoint"),
    "wrong shape": (_wrong_shape, "state X is (6, 5), the algorithm needs a tensor of shape"),
    "crafted torch file": (_crafted_torch, "refers to code (Unsupported global: GLOBAL "
                                           "io.open); it was not loaded"),
    "crafted pickle": (_crafted_pickle, "is truncated or not a checkpoint (Unsupported operand"),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_checkpoint_fails_with_one_line_naming_the_file(tmp_path, capsys, kind):
    damage, message = DAMAGE[kind]
    run(cfg(tmp_path, "rounds=4", "name=cut"), quiet=True)
    path = checkpoint_path(tmp_path / "cut", 0, 4)
    damage(path, tmp_path)
    before = (tmp_path / "cut" / "metrics.jsonl").read_text()
    code, lines = resume(tmp_path / "cut", capsys)
    assert code == 2 and len(lines) == 1, lines
    assert str(path) in lines[0] and message in lines[0], lines[0]
    assert not (tmp_path / "marker").exists()
    assert (tmp_path / "cut" / "metrics.jsonl").read_text() == before


def test_foreign_checkpoint_is_refused(tmp_path, capsys):
    """Another run's checkpoints copied in: refused (they would replace this run's metrics)."""
    run(cfg(tmp_path, "rounds=4", "name=cut"), quiet=True)
    run(cfg(tmp_path, "rounds=4", "name=other", "seed=5"), quiet=True)
    shutil.rmtree(tmp_path / "cut" / "checkpoints")
    shutil.copytree(tmp_path / "other" / "checkpoints", tmp_path / "cut" / "checkpoints")
    before = (tmp_path / "cut" / "metrics.jsonl").read_text()
    code, lines = resume(tmp_path / "cut", capsys)
    assert code == 2 and len(lines) == 1, lines
    assert str(checkpoint_path(tmp_path / "cut", 0, 4)) in lines[0]
    assert "belongs to another run" in lines[0]
    assert (tmp_path / "cut" / "metrics.jsonl").read_text() == before


def test_no_checkpoint_fails_with_one_line(tmp_path, capsys):
    run(cfg(tmp_path, "rounds=4", "name=cut"), quiet=True)
    shutil.rmtree(tmp_path / "cut" / "checkpoints")
    code, lines = resume(tmp_path / "cut", capsys)
    assert code == 2 and len(lines) == 1 and "cannot resume: no checkpoint in" in lines[0]
    (tmp_path / "cut" / "checkpoints").mkdir()
    (tmp_path / "cut" / "checkpoints" / "state-rank0.pt").write_bytes(b"old")
    code, lines = resume(tmp_path / "cut", capsys)
    assert code == 2 and len(lines) == 1 and "of an older version" in lines[0]


def test_damaged_latest_falls_back_to_the_complete_one_before(tmp_path, capsys):
    """The manifest names round 4 but its file is damaged; round 2's is good: resume from it
    (one line says so), end equal to the uninterrupted run, with the temporary file of a
    crashed write removed and only the last round's file kept."""
    run(cfg(tmp_path, "rounds=6", "name=full"), quiet=True)
    run(cfg(tmp_path, "rounds=2", "name=cut"), quiet=True)
    folder = tmp_path / "cut" / "checkpoints"
    kept = (folder / "state-round2-rank0.pt").read_bytes()
    assert resume(tmp_path / "cut", capsys, rounds=4)[0] == 0
    (folder / "state-round2-rank0.pt").write_bytes(kept)
    checkpoint_path(tmp_path / "cut", 0, 4).write_bytes(b"\x00" * 100)
    (folder / ".state-round6-rank0.pt.tmp-999").write_bytes(b"partial")
    code, lines = resume(tmp_path / "cut", capsys)
    assert code == 0
    assert lines[0].startswith("gossip: resuming from round 2 (the manifest's round 4 is "
                               "incomplete: checkpoint ") and len(lines) == 1
    assert strip_times(read_metrics(tmp_path / "cut")) == strip_times(
        read_metrics(tmp_path / "full"))
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "state-round6-rank0.pt"]
    assert json.loads((folder / "manifest.json").read_text())["round"] == 6


def test_missing_manifest_resumes_from_the_complete_files(tmp_path, capsys):
    """A crash after every file was written but before the manifest: the files are complete."""
    run(cfg(tmp_path, "rounds=6", "name=full"), quiet=True)
    run(cfg(tmp_path, "rounds=4", "name=cut"), quiet=True)
    (tmp_path / "cut" / "checkpoints" / "manifest.json").unlink()
    code, lines = resume(tmp_path / "cut", capsys)
    assert code == 0 and lines == ["gossip: resuming from round 4 (no manifest "
                                   f"{str(tmp_path / 'cut' / 'checkpoints' / 'manifest.json')!r})"]
    assert strip_times(read_metrics(tmp_path / "cut")) == strip_times(
        read_metrics(tmp_path / "full"))


MPI_SETS = ["problem.name=quadratic", "nodes=8", "problem.dim=5", "problem.sigma=0.3",
            "rounds=8", "eval_every=2", "checkpoint_every=1", "dtype=float64"]


def _train(out, name, *extra):
    args = ["--quiet", "--out", str(out), "--name", name]
    for s in MPI_SETS:
        args += ["--set", s]
    return [*extra, *args]


@requires_mpi
def test_rank_killed_while_checkpointing_then_resume_equals_uninterrupted(tmp_path):
    full = run_mpi(4, _train(tmp_path, "full", "-m", "gossip.cli.train"), timeout=120)
    assert full.returncode == 0, full.stderr
    script = REPO_ROOT / "tests" / "run_scripts" / "kill_rank.py"
    cut = run_mpi(4, _train(tmp_path, "cut", script), env={"GOSSIP_TEST_DIE": "2:5"},
                  timeout=120)
    assert cut.returncode != 0
    folder = tmp_path / "cut" / "checkpoints"
    names = sorted(p.name for p in folder.iterdir())
    # the per-rank files disagree (ranks 0, 1, 3 at round 5, rank 2 at round 4), a temporary
    # file is left, the manifest names the last complete round
    assert [f"state-round5-rank{k}.pt" in names for k in range(4)] == [True, True, False, True]
    assert "state-round4-rank2.pt" in names
    assert any(n.startswith(".state-round5-rank2.pt.tmp-") for n in names)
    assert json.loads((folder / "manifest.json").read_text())["round"] == 4
    res = run_mpi(4, ["-m", "gossip.cli.train", "--quiet", "--resume", tmp_path / "cut"],
                  timeout=120)
    assert res.returncode == 0, res.stderr
    assert strip_times(read_metrics(tmp_path / "cut")) == strip_times(
        read_metrics(tmp_path / "full"))
    assert sorted(p.name for p in folder.iterdir()) == [
        "manifest.json", *(f"state-round8-rank{k}.pt" for k in range(4))]
    # a rank's file missing from every round: every rank fails, with the same one line
    (folder / "state-round8-rank2.pt").unlink()
    bad = run_mpi(4, ["-m", "gossip.cli.train", "--quiet", "--resume", tmp_path / "cut"],
                  timeout=60)
    # every rank agrees and exits 2; rank 0 alone prints the line (Open MPI adds its banner)
    lines = [line for line in bad.stderr.splitlines() if line.startswith("gossip train:")]
    assert bad.returncode == 2, bad.stderr
    assert len(lines) == 1 and "no complete checkpoint" in lines[0], bad.stderr
    assert "no complete checkpoint" in lines[0] and "rank 2 has no file state-round8-rank2.pt" \
        in lines[0]


def test_a_state_field_added_later_and_off_resumes_from_an_older_checkpoint():
    """A checkpoint written before a state field existed (``S`` of fedavg, ``R`` of the robust
    server) resumes when the field is ``()`` (its feature off); a missing tensor is refused."""
    from typing import NamedTuple

    from gossip.runner.checkpoint import CheckpointError, restore_state

    class State(NamedTuple):
        X: torch.Tensor
        S: tuple = ()

    X = torch.arange(3.0)
    got = restore_state(State(torch.zeros(3)), {"X": X})
    assert torch.equal(got.X, X) and got.S == ()
    with pytest.raises(CheckpointError, match="state fields \\['X'\\], the algorithm has"):
        restore_state(State(torch.zeros(3), torch.zeros(1)), {"X": X})
