"""``gossip train`` through its module: exit codes, --help, overrides, resume, configs/."""

from __future__ import annotations

import glob
import subprocess
import sys

import pytest

from gossip.cli import train as train_cli
from gossip.config import load_config
from gossip.runner.rundir import read_metrics
from tests.mpi_util import REPO_ROOT

Q = ["--set", "problem.name=quadratic", "--set", "nodes=4", "--quiet"]


def main(argv):
    return train_cli.main([str(a) for a in argv])


def test_run_prints_folder_and_writes_it(tmp_path, capsys):
    assert main([*Q, "--out", tmp_path, "--name", "x", "--set", "rounds=3"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "x")
    assert len(read_metrics(tmp_path / "x")) == 1


def test_not_quiet_closes_with_final_metrics_on_stderr(tmp_path, capsys):
    args = [a for a in Q if a != "--quiet"]
    assert main([*args, "--out", tmp_path, "--name", "y", "--set", "rounds=4"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(tmp_path / "y")  # stdout stays the run folder alone
    last = err.strip().splitlines()[-1]
    assert last.startswith("gossip train: finished after 4 rounds: distance_to_optimum ")
    assert "bytes_sent" in last and last.endswith(" s") and ", rounds " in last
    rounds, total = (float(p.split()[1]) for p in last.split(", ")[-2:])
    assert 0 <= rounds <= total  # the total includes evaluation and writing


@pytest.mark.parametrize("bad", [["--set", "nodes=1"], ["--set", "algorithm.lr=-1"],
                                 ["--set", "topology.name=hypercube", "--set", "nodes=12"],
                                 ["--config", "/nonexistent.toml"], ["--set", "bogus=3"],
                                 ["--resume", "/nonexistent"]])
def test_bad_input_exit_code_2_one_line(tmp_path, capsys, bad):
    assert main([*Q, "--out", tmp_path, *bad]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gossip train: error: ") and "\n" not in err


def test_help_lists_every_key(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for key in ("--config", "--resume", "topology.schedule", "algorithm.lr_schedule",
                "problem.dim", "checkpoint_every"):
        assert key in out


def test_resume_continues_to_more_rounds(tmp_path):
    args = [*Q, "--out", tmp_path, "--set", "eval_every=2"]
    assert main([*args, "--name", "full", "--set", "rounds=6"]) == 0
    assert main([*args, "--name", "part", "--set", "rounds=4"]) == 0
    assert main(["--resume", tmp_path / "part", "--set", "rounds=6", "--quiet"]) == 0
    strip = [{k: v for k, v in r.items() if not k.endswith("_time")}
             for r in read_metrics(tmp_path / "part")]
    assert strip == [{k: v for k, v in r.items() if not k.endswith("_time")}
                     for r in read_metrics(tmp_path / "full")]


@pytest.mark.parametrize(
    "path", sorted(glob.glob(str(REPO_ROOT / "configs" / "**" / "*.toml"), recursive=True))
)
def test_every_shipped_config_parses_and_quadratic_ones_run(tmp_path, path):
    cfg = load_config(path)
    if cfg["problem"]["name"] == "quadratic":
        assert main(["--config", path, "--set", "rounds=3", "--out", tmp_path, "--quiet"]) == 0


def test_python_dash_m(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "gossip.cli.train", *Q, "--out", tmp_path, "--name", "m",
         "--set", "rounds=2"], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(tmp_path / "m")
