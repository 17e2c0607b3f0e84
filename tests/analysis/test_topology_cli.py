"""The ``gossip topology report|show`` subcommand, called through its module."""

from __future__ import annotations

import argparse
import csv
import io
import json
import math

import numpy as np
import pytest

from analysis import topology_cli
from analysis.topology_report import ROW_KEYS, SCHEDULE_KEYS


def call(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gossip topology")
    topology_cli.add_arguments(parser)
    return topology_cli.run(parser.parse_args(argv))


def test_report_table(capsys):
    assert call(["report", "--nodes", "4,8", "--topologies", "ring,torus"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[0].split() == list(ROW_KEYS)
    assert any(line.split()[:4] == ["ring", "8", "metropolis", "0.8047"] for line in lines)
    assert "torus n=8" in out  # skipped note, table format only


def test_report_json_is_only_a_list_of_rows(capsys):
    argv = ["report", "--nodes", "8,16", "--topologies", "ring,hypercube,torus",
            "--schedules", "one_peer_exponential", "--format", "json"]
    assert call(argv) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)  # nothing else on stdout
    assert isinstance(data, list) and len(data) == 2 + 2 + 1 + 2
    assert all(isinstance(row, dict) and set(ROW_KEYS) <= set(row) for row in data)
    ring8 = next(r for r in data if r["topology"] == "ring" and r["nodes"] == 8)
    assert ring8["rho"] == pytest.approx(1 / 3 + 2 / 3 * math.cos(2 * math.pi / 8), abs=1e-12)
    schedule = [r for r in data if r["topology"] == "one_peer_exponential"]
    for row in schedule:
        assert set(SCHEDULE_KEYS) <= set(row)
        assert row["tau"] == int(math.log2(row["nodes"]))
        assert row["effective_p"] == pytest.approx(1.0, abs=1e-12)
    # skipped combinations are noted on stderr, never on stdout
    assert err.splitlines() == [
        "gossip topology: skipped torus n=8: torus needs n to be a perfect square or an "
        "explicit shape=(rows, cols), got n=8"
    ]


def test_report_csv(capsys):
    assert call(["report", "--nodes", "9,16", "--topologies", "torus", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [int(r["nodes"]) for r in rows] == [9, 16]
    assert float(rows[0]["rho"]) == pytest.approx(0.4, abs=1e-12)  # (1 + 2 cos(2pi/3) + 2) / 5


def test_report_out_writes_files(tmp_path, capsys):
    from matplotlib.image import imread

    argv = ["report", "--nodes", "8,16", "--topologies", "ring,hypercube", "--out",
            str(tmp_path), "--format", "json"]
    assert call(argv) == 0
    assert len(json.loads(capsys.readouterr().out)) == 4
    assert (tmp_path / "report.md").read_text().startswith("# Topology report")
    assert len((tmp_path / "report.csv").read_text().splitlines()) == 5
    for name in ("gap_vs_n.png", "spectrum_ring.png", "graph_hypercube.png"):
        image = imread(tmp_path / name)
        assert image.shape[0] >= 400 and image.shape[1] >= 400
        assert np.ptp(image[..., :3]) > 0.1


def test_show_prints_summary_and_matrix(tmp_path, capsys):
    argv = ["show", "torus", "--nodes", "6", "--option", "shape=2x3", "--out", str(tmp_path)]
    assert call(argv) == 0
    out = capsys.readouterr().out
    assert "spectral_gap" in out and "mean_degree" in out and "mixing matrix" in out
    summary = json.loads((tmp_path / "summary.json").read_text())[0]
    assert summary["nodes"] == 6 and summary["weights"] == "metropolis"
    assert (tmp_path / "spectrum_torus.png").exists() and (tmp_path / "graph_torus.png").exists()


def test_show_directed_and_file(tmp_path, capsys):
    assert call(["show", "exponential", "--nodes", "8"]) == 0
    assert "in_uniform" in capsys.readouterr().out
    path = tmp_path / "g.edgelist"
    path.write_text("a b\nb c\nc a\nc d\n")
    assert call(["show", "file", "--option", f"path={path}"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split() == ["nodes", "4"]


def test_show_large_graph_skips_matrix(capsys):
    assert call(["show", "ring", "--nodes", "17"]) == 0
    assert "mixing matrix" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, words",
    [
        (["report", "--nodes", "8,x"], "integers >= 2"),
        (["report", "--nodes", "8,1"], "integers in [2, 8192]"),
        (["report", "--nodes", "8,8193"], "integers in [2, 8192]"),
        (["report", "--nodes", ""], "integers >= 2"),
        (["report", "--nodes", "8", "--topologies", "ring,moebius"], "unknown topology 'moebius'"),
        (["report", "--nodes", "8", "--weights", "boyd"], "unknown mixing rule 'boyd'"),
        (["report", "--nodes", "8", "--schedules", "warp"], "unknown schedule 'warp'"),
        (["report", "--nodes", "8", "--format", "xml"], "--format must be one of"),
        (["report", "--nodes", "8", "--seed", "-1"], "--seed needs an integer >= 0"),
        (["report", "--nodes", "8", "--tau", "0"], "--tau needs an integer >= 1"),
        (["report", "--nodes", "6,12", "--topologies", "hypercube"], "power of two"),
        (["report", "--nodes", "8", "--topologies", "torus"], "perfect square"),
        (["show", "moebius", "--nodes", "8"], "unknown topology 'moebius'"),
        (["show", "ring", "--nodes", "2"], "n >= 3"),
        (["show", "ring", "--nodes", "abc"], "integers >= 2"),
        (["show", "ring"], "needs --nodes"),
        (["show", "hypercube", "--nodes", "12"], "power of two"),
        (["show", "torus", "--nodes", "8"], "perfect square"),
        (["show", "torus", "--nodes", "8", "--option", "shape=3x3"], "rows * cols == n"),
        (["show", "ring", "--nodes", "8", "--weights", "boyd"], "unknown mixing rule"),
        (["show", "exponential", "--nodes", "8", "--weights", "metropolis"], "in_uniform"),
        (["show", "ring", "--nodes", "8", "--option", "shape"], "KEY=VALUE"),
        (["show", "ring", "--nodes", "8", "--option", "k=3"], "no option 'k'"),
        (["show", "file", "--option", "path=/nonexistent/g.edgelist"], "cannot read"),
        ([], "choose a subcommand"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, words, capsys):
    assert call(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("gossip topology: error: ")
    assert words in err


def test_disconnected_or_garbled_file_is_exit_2(tmp_path, capsys):
    split = tmp_path / "split.edgelist"
    split.write_text("0 1\n2 3\n")
    garbled = tmp_path / "bad.graphml"
    garbled.write_text("<graphml><not closed")
    for path, words in ((split, "not connected"), (garbled, "cannot read")):
        assert call(["show", "file", "--option", f"path={path}"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err


def test_unwritable_out_is_exit_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    argv = ["report", "--nodes", "4", "--topologies", "ring", "--out", str(blocker / "sub"),
            "--format", "csv"]
    assert call(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "cannot write" in err


def test_parsers():
    assert topology_cli.parse_nodes(" 8,16 ,8") == [8, 16]
    assert topology_cli.parse_names("ring, torus,") == ["ring", "torus"]
    assert topology_cli.parse_option("shape=4x8") == ("shape", (4, 8))
    assert topology_cli.parse_option("shape=4,8") == ("shape", (4, 8))
    assert topology_cli.parse_option("p=0.25") == ("p", 0.25)
    assert topology_cli.parse_option("degree=3") == ("degree", 3)
    assert topology_cli.parse_option("path=12") == ("path", "12")
