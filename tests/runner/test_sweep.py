"""``gossip sweep``: grid parsing, point names, and real sweeps on the quadratic problem."""

from __future__ import annotations

import argparse
import math

import pytest

from gossip.cli import sweep as sweep_cli
from gossip.errors import ConfigError
from gossip.runner.sweep import grid_points, parse_grid, point_name, run_sweep, split_values
from tests.mpi_util import requires_mpi

BASE = ["problem.name=quadratic", "nodes=4", "rounds=6", "eval_every=3", "topology.name=ring"]


def parse(argv):
    parser = argparse.ArgumentParser()
    sweep_cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_grid_is_the_cartesian_product_in_order():
    grid = parse_grid(["algorithm.lr=0.1,0.05,0.01", "topology.name=ring,chain",
                       "topology.shape=[2, 2],[1, 4]"])
    points = grid_points(grid)
    assert len(points) == 3 * 2 * 2
    assert points[0] == {"algorithm.lr": "0.1", "topology.name": "ring",
                         "topology.shape": "[2, 2]"}
    assert points[1]["topology.shape"] == "[1, 4]" and points[2]["topology.name"] == "chain"
    assert len({tuple(p.values()) for p in points}) == len(points)
    names = [point_name(p) for p in points]
    assert len(set(names)) == len(names)
    assert names[1] == "algorithm.lr-0.1_topology.name-ring_topology.shape-1-4"
    assert all("/" not in n and " " not in n for n in names)


def test_split_values_respects_brackets_and_quotes():
    assert split_values("1, 2 ,3") == ["1", "2", "3"]
    assert split_values('"a,b",c') == ['"a,b"', "c"]
    assert split_values("[1, [2, 3]],{x = 1, y = 2}") == ["[1, [2, 3]]", "{x = 1, y = 2}"]


@pytest.mark.parametrize(
    "texts,message",
    [
        (["algorithm.lr"], "must look like key=v1,v2"),
        (["algorithm.lr="], "has an empty value"),
        (["algorithm.lr=0.1,,0.2"], "has an empty value"),
        (["=0.1"], "has an empty key"),
        (["algorithm.=0.1"], "has an empty key"),
        (["nodes=4", "nodes=8"], "is given twice"),
        ([], "at least one --grid"),
    ],
)
def test_bad_grid_raises(texts, message):
    with pytest.raises(ConfigError, match=message):
        parse_grid(texts)


@pytest.mark.parametrize("grid", ["nodes", "nodes=", "nodes=4,"])
def test_cli_bad_grid_one_line_exit_2(tmp_path, capsys, grid):
    assert sweep_cli.run(parse(["--grid", grid, "--out", str(tmp_path / "s")])) == 2
    err = capsys.readouterr().err
    assert err.startswith("gossip sweep: error: --grid") and err.count("\n") == 1
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("grid, extra, needle, first", [
    ("topology.name=ring,no_such_graph", [], "no_such_graph", "topology.name-ring"),
    ("nodes=4,6", ["topology.name=hypercube"], "hypercube", "nodes-4"),  # only building shows
])
def test_bad_point_fails_before_any_run(tmp_path, capsys, grid, extra, needle, first):
    args = parse(["--grid", grid, "--out", str(tmp_path / "s"),
                  *(x for s in [*BASE, *extra] for x in ("--set", s))])
    assert sweep_cli.run(args) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "s" / first).exists()


def final(folder, key):
    import json

    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return json.loads(lines[-1])[key]


def test_in_process_sweep_matches_single_runs(tmp_path, capsys):
    from gossip.config import load_config
    from gossip.runner.loop import run

    out = tmp_path / "sweep"
    args = parse(["--grid", "algorithm.lr=0.1,0.05", "--out", str(out),
                  *(x for s in BASE for x in ("--set", s))])
    assert sweep_cli.run(args) == 0
    printed = capsys.readouterr().out
    folders = [out / "algorithm.lr-0.1", out / "algorithm.lr-0.05"]
    for folder in folders:
        assert (folder / "summary.json").is_file(), folder
        assert folder.name in printed
    assert (out / "compare.md").read_text() in printed
    rows = (out / "compare.md").read_text().strip().splitlines()
    assert len(rows) == 4 and "final distance to optimum" in rows[0]
    assert rows[2].startswith("| algorithm.lr-0.1 ") and rows[3].startswith("| algorithm.lr-0.05")
    assert (out / "distance_to_optimum.png").is_file() and (out / "train_loss.png").is_file()

    alone = run(load_config(None, [*BASE, "algorithm.lr=0.05", f"out='{tmp_path}'",
                                   "name='alone'"]), quiet=True)
    assert alone["rounds_done"] == 6
    a = final(folders[1], "distance_to_optimum")
    b = final(tmp_path / "alone", "distance_to_optimum")
    assert math.isclose(a, b, rel_tol=1e-12)
    assert final(folders[0], "distance_to_optimum") != a

    with pytest.raises(ConfigError, match="already holds a run"):
        run_sweep(None, parse_grid(["algorithm.lr=0.1"]), out, sets=BASE)


@requires_mpi
def test_mpi_sweep_matches_in_process(tmp_path):
    grid = parse_grid(["topology.name=ring"])
    mpi_folders, table, _ = run_sweep(None, grid, tmp_path / "mpi", sets=BASE, mpi=2)
    local_folders, _, _ = run_sweep(None, grid, tmp_path / "local", sets=BASE)
    a = final(mpi_folders[0], "distance_to_optimum")
    b = final(local_folders[0], "distance_to_optimum")
    assert math.isclose(a, b, rel_tol=1e-6)
    assert "topology.name-ring" in table


def test_a_point_the_algorithm_is_not_defined_on_fails_before_the_first_run(tmp_path):
    """d2 on an even ring with Metropolis weights (lambda_min = -1/3) is refused by the check of
    every point, so the dsgd point before it never runs."""
    with pytest.raises(ConfigError, match=r"lambda_min\(W\) > -1/3"):
        run_sweep(None, {"algorithm.name": ["dsgd", "d2"]}, tmp_path,
                  sets=["problem.name=quadratic", "nodes=4", "rounds=2"])
    assert not list(tmp_path.glob("**/config.toml"))
