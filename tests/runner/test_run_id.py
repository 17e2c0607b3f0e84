"""Resume across versions: a run folder written before ``[faults]``, ``[time]`` and ``[attack]``
existed resumes to the numbers of an uninterrupted run; a changed value is refused naming its
key (gossip/runner/run_id.py)."""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path

import pytest
import tomli_w
import torch

import gossip.network.faults
from gossip.cli.train import main
from gossip.config import load_config
from gossip.options import Option
from gossip.runner.loop import run
from gossip.runner.resume import _decide
from gossip.runner.run_id import differences, legacy_run_id, run_id
from gossip.runner.rundir import read_metrics

BASE = ["problem.name=quadratic", "nodes=4", "problem.dim=3", "problem.sigma=0.3",
        "eval_every=2", "checkpoint_every=2"]
TIMES = ("wall_time", "compute_time", "comm_time")
NEW_SECTIONS = ("faults", "time", "attack")

#: config.toml as written by commit 92d4867 (before [faults], [time], [attack]) for
#: ``train --set problem.name=quadratic --set nodes=4 --set problem.dim=3 --set eval_every=2
#: --set rounds=4 --out /tmp/rel-runs --name old``, and the run id its checkpoints carried.
OLD_FILE = """\
seed = 0
nodes = 4
rounds = 4
eval_every = 2
threads = 0
device = "auto"
dtype = "float32"
checkpoint_every = 0
out = "/tmp/rel-runs"
name = "old"

[topology]
name = "ring"
weights = "metropolis"
schedule = "static"
seed = 0

[algorithm]
name = "dsgd"
lr = 0.1
lr_schedule = "constant"
lr_decay_rounds = 100
lr_decay_factor = 0.1
warmup_rounds = 0
lr_min = 0.0
local_steps = 1
momentum = 0.0
momentum_kind = "local"
nesterov = false

[problem]
name = "quadratic"
dim = 3
heterogeneity = 1.0
a_min = 1.0
a_max = 4.0
sigma = 0.0
init_scale = 0.0

[compression]
name = "none"
"""
OLD_ID = "a273ac44016ea1e6"


def strip_times(records):
    return [{k: v for k, v in r.items() if k not in TIMES} for r in records]


def as_older_version(run_dir: Path) -> str:
    """Turn a run folder into what a version before ``[faults]``/``[time]``/``[attack]`` wrote:
    ``config.toml`` without those sections, every checkpoint file and the manifest carrying
    that version's id (SHA-256 of the whole stored config but the resumable keys)."""
    path = run_dir / "config.toml"
    stored = tomllib.loads(path.read_text())
    for section in NEW_SECTIONS:
        del stored[section]
    path.write_text(tomli_w.dumps(stored))
    kept = {k: v for k, v in stored.items()
            if k not in ("rounds", "eval_every", "checkpoint_every", "device")}
    old = hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]
    folder = run_dir / "checkpoints"
    for file in folder.glob("state-round*-rank*.pt"):
        payload = torch.load(file, weights_only=True)
        payload["run_id"] = old
        torch.save(payload, file)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "run_id": old}))
    return old


def resume(run_dir, capsys, *sets):
    capsys.readouterr()
    code = main(["--resume", str(run_dir), *(a for s in sets for a in ("--set", s)), "--quiet"])
    return code, capsys.readouterr().err.splitlines()


def test_legacy_id_is_the_one_the_old_version_wrote():
    assert legacy_run_id(tomllib.loads(OLD_FILE)) == OLD_ID


def test_folder_of_an_older_version_resumes_to_the_uninterrupted_numbers(tmp_path, capsys):
    """Also when the first resume stops before it writes a checkpoint of its own (rounds as
    done): the rewritten config.toml keeps the file's keys, so the old id stays valid."""
    out = f"out='{tmp_path}'"
    run(load_config(None, [*BASE, out, "rounds=6", "name=full"]), quiet=True)
    run(load_config(None, [*BASE, out, "rounds=4", "name=cut"]), quiet=True)
    cut = tmp_path / "cut"
    old = as_older_version(cut)
    assert resume(cut, capsys, "rounds=4") == (0, [])
    manifest = json.loads((cut / "checkpoints" / "manifest.json").read_text())
    assert manifest["run_id"] == old and legacy_run_id(
        tomllib.loads((cut / "config.toml").read_text())) == old
    assert resume(cut, capsys, "rounds=6") == (0, [])
    assert strip_times(read_metrics(cut)) == strip_times(read_metrics(tmp_path / "full"))
    stored = tomllib.loads((cut / "config.toml").read_text())
    assert stored["rounds"] == 6 and not set(NEW_SECTIONS) & set(stored)
    manifest = json.loads((cut / "checkpoints" / "manifest.json").read_text())
    assert manifest["round"] == 6 and manifest["run_id"] == run_id(load_config(cut / "config.toml"))


@pytest.mark.parametrize("sets, named", [
    (["algorithm.lr=0.05"], "'algorithm.lr' (saved 0.1, given 0.05)"),
    (["algorithm.lr=0.05", "seed=3"],
     "'algorithm.lr' (saved 0.1, given 0.05), 'seed' (saved 0, given 3)"),
    (["faults.drop=0.5"], "'faults.drop' (saved 0.0, given 0.5)"),
])
def test_a_changed_value_is_refused_naming_its_keys(tmp_path, capsys, sets, named):
    """The stored file lacks [faults]: it equals its defaults, so only the keys really given
    differ; nothing is written."""
    run(load_config(None, [*BASE, f"out='{tmp_path}'", "rounds=4", "name=cut"]), quiet=True)
    cut = tmp_path / "cut"
    as_older_version(cut)
    before = {p.name: p.read_bytes() for p in cut.rglob("*") if p.is_file()}
    code, lines = resume(cut, capsys, "rounds=6", *sets)
    assert code == 2 and lines == [f"gossip train: error: cannot resume with a different "
                                   f"{named}; only rounds, eval_every, checkpoint_every, "
                                   "device may change"]
    assert {p.name: p.read_bytes() for p in cut.rglob("*") if p.is_file()} == before


def test_run_id_ignores_a_new_key_at_its_default_and_not_a_changed_one(monkeypatch):
    """A later version adding a key (here one more [faults] option) leaves the id of a config
    that does not use it as it was; the whole-config (legacy) id changes."""
    given = [*BASE, "algorithm.lr=0.05"]
    before = load_config(None, given)
    new = Option("new_key", float, 0.0, "a key of a later version")
    faults = gossip.network.faults
    monkeypatch.setattr(faults, "FAULT_OPTIONS", [*faults.FAULT_OPTIONS, new])
    after = load_config(None, given)
    assert after["faults"]["new_key"] == 0.0
    assert run_id(after) == run_id(before)
    assert legacy_run_id(after.to_dict()) != legacy_run_id(before.to_dict())
    assert differences(before, after) == [("faults.new_key", None, 0.0)]
    assert run_id(load_config(None, [*given, "faults.new_key=0.5"])) != run_id(before)
    assert run_id(load_config(None, [*BASE, "algorithm.lr=0.1"])) == run_id(
        load_config(None, BASE)) != run_id(before)


def test_ranks_that_read_different_configs_all_stop(tmp_path):
    """Rank 0 compares every rank's ids before it picks a round (every rank gets the error)."""
    decision = _decide(tmp_path / "checkpoints", [{4: None}, {4: None}], 2,
                       [("aaaa", "bbbb"), ("cccc",)])
    assert decision[0] == "error" and "rank 1 reads another config than rank 0 (run id cccc, " \
        "rank 0 has aaaa)" in decision[1]

