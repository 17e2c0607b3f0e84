"""The run loop: run folder contents, metric keys, lr schedules, resume, NaN stop."""

from __future__ import annotations

import json
import math
import tomllib

import pytest

from gossip.config import load_config
from gossip.runner.loop import TrainingDiverged, lr_schedule, run
from gossip.runner.rundir import read_metrics
from tests.crashing_comm import CrashingComm

BASE = ["problem.name=quadratic", "nodes=6", "problem.dim=4"]
TIMES = ("wall_time", "compute_time", "comm_time")


def cfg(tmp_path, *extra):
    return load_config(None, [*BASE, f"out='{tmp_path}'", *extra])


def strip_times(records):
    return [{k: v for k, v in r.items() if k not in TIMES} for r in records]


def test_run_folder_and_metric_keys(tmp_path):
    summary = run(cfg(tmp_path, "rounds=7", "eval_every=3", "name=r"), quiet=True)
    folder = tmp_path / "r"
    assert summary["run_dir"] == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == [
        ".lock", "checkpoints", "config.toml", "metrics.jsonl", "summary.json"
    ]
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == [
        "manifest.json", "state-round7-rank0.pt"]
    records = read_metrics(folder)
    assert [r["round"] for r in records] == [3, 6, 7]
    for key in ("wall_time", "compute_time", "comm_time", "lr", "train_loss",
                "consensus_distance", "bytes_sent", "bytes_sent_per_node",
                "distance_to_optimum"):
        assert key in records[-1], key
    # ring of 6 nodes, dim 4 float32: 12 messages of 16 bytes per round
    assert [r["bytes_sent"] for r in records] == [12 * 16 * t for t in (3, 6, 7)]
    assert records[-1]["bytes_sent_per_node"] == records[-1]["bytes_sent"] / 6
    saved = json.loads((folder / "summary.json").read_text())
    assert saved["final"] == records[-1] and saved["status"] == "finished"
    assert saved["world_size"] == 1 and saved["placement"][0]["count"] == 6
    assert 0 < saved["topology"]["spectral_gap"] < 1
    assert saved["algorithm"]["name"] == "dsgd"
    resolved = tomllib.loads((folder / "config.toml").read_text())
    assert resolved["name"] == "r" and resolved["problem"]["dim"] == 4
    assert resolved["algorithm"]["local_steps"] == 1


def test_consensus_distance_of_allreduce_is_zero(tmp_path):
    run(cfg(tmp_path, "rounds=3", "eval_every=1", "name=a", "algorithm.name=allreduce"),
        quiet=True)
    assert all(r["consensus_distance"] < 1e-10 for r in read_metrics(tmp_path / "a"))


def test_default_name_and_existing_folder(tmp_path):
    summary = run(cfg(tmp_path, "rounds=1"), quiet=True)
    assert summary["run_dir"].split("/")[-1].startswith("dsgd-ring-")
    run(cfg(tmp_path, "rounds=1", "name=x"), quiet=True)
    with pytest.raises(Exception, match="already holds a run"):
        run(cfg(tmp_path, "rounds=1", "name=x"), quiet=True)


def test_lr_schedules():
    alg = {"lr": 1.0, "lr_schedule": "constant", "warmup_rounds": 0, "lr_min": 0.0,
           "lr_decay_rounds": 3, "lr_decay_factor": 0.5}
    assert [lr_schedule(alg, 10)(t) for t in (0, 9)] == [1.0, 1.0]
    step = lr_schedule({**alg, "lr_schedule": "step"}, 10)
    assert [step(t) for t in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    cos = lr_schedule({**alg, "lr_schedule": "cosine", "warmup_rounds": 2}, 12)
    assert cos(0) == 0.5 and cos(1) == 1.0 and cos(2) == 1.0
    assert math.isclose(cos(7), 0.5) and math.isclose(cos(12), 0.0, abs_tol=1e-12)


@pytest.mark.parametrize("extra", [[], ["algorithm.momentum=0.9", "problem.sigma=0.5",
                                        "algorithm.lr_schedule=cosine"]])
def test_resume_after_crash_equals_uninterrupted(tmp_path, extra):
    common = ["rounds=20", "eval_every=5", "checkpoint_every=10", *extra]
    run(cfg(tmp_path, *common, "name=full"), quiet=True)
    with pytest.raises(RuntimeError, match="node lost"):
        run(cfg(tmp_path, *common, "name=cut"), comm=CrashingComm(6, 15), quiet=True)
    assert [r["round"] for r in read_metrics(tmp_path / "cut")] == [5, 10, 15]
    summary = run(resume=tmp_path / "cut", quiet=True)
    full, cut = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "cut")
    assert strip_times(cut) == strip_times(full)
    assert summary["rounds_done"] == 20


def test_resume_with_more_rounds(tmp_path):
    run(cfg(tmp_path, "rounds=20", "eval_every=5", "name=full"), quiet=True)
    run(cfg(tmp_path, "rounds=10", "eval_every=5", "name=short"), quiet=True)
    longer = cfg(tmp_path, "rounds=20", "eval_every=5", "name=short")
    run(longer, resume=tmp_path / "short", quiet=True)
    assert strip_times(read_metrics(tmp_path / "short")) == strip_times(
        read_metrics(tmp_path / "full"))
    with pytest.raises(Exception, match="'seed'"):
        run(cfg(tmp_path, "rounds=30", "seed=4", "name=short"), resume=tmp_path / "short")


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path):
    import torch

    with pytest.raises(TrainingDiverged, match="smaller algorithm.lr") as info:
        run(cfg(tmp_path, "rounds=400", "eval_every=2", "checkpoint_every=2",
                "algorithm.lr=5.0", "name=nan"), quiet=True)
    assert "\n" not in str(info.value)
    summary = json.loads((tmp_path / "nan" / "summary.json").read_text())
    assert summary["status"] == "diverged"
    folder = tmp_path / "nan" / "checkpoints"
    last = json.loads((folder / "manifest.json").read_text())["round"]
    saved = torch.load(folder / f"state-round{last}-rank0.pt", weights_only=True)
    assert saved["rounds_done"] == last <= summary["rounds_done"]
    assert torch.isfinite(saved["state"]["X"]).all()
    assert all(math.isfinite(r["train_loss"]) for r in read_metrics(tmp_path / "nan"))
