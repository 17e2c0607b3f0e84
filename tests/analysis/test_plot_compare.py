"""Figures and the comparison table from fake run folders, and their command lines."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from analysis import compare_cli, plot_cli
from analysis.compare import compare_table, format_bytes, rounds_to_target
from analysis.run_figures import FIGURES, plot_runs
from analysis.runs import load_runs


def write_run(folder: Path, algorithm: str, compression: str, records: list[dict], lr=0.1):
    folder.mkdir(parents=True)
    config = {
        "seed": 0, "nodes": 8, "rounds": 40, "eval_every": 10, "name": folder.name,
        "topology": {"name": "ring", "weights": "metropolis"},
        "algorithm": {"name": algorithm, "lr": lr},
        "problem": {"name": "classification"},
        "compression": {"name": compression},
    }
    (folder / "config.toml").write_text(tomli_w.dumps(config))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "summary.json").write_text(json.dumps(records[-1]))
    return folder


def classification(accs, bytes_per_round=1000.0):
    return [
        {"round": 10 * i, "wall_time": 0.5 * i, "train_loss": 2.0 / (i + 1),
         "consensus_distance": 0.1 / (i + 1) if i else 0.0,
         "bytes_sent": bytes_per_round * 10 * i, "test_accuracy": a}
        for i, a in enumerate(accs)
    ]


def quadratic(dists):
    return [
        {"round": 5 * i, "wall_time": 0.01 * i, "train_loss": 1.0 + d,
         "consensus_distance": d / 2, "bytes_sent": 64 * 5 * i, "distance_to_optimum": d}
        for i, d in enumerate(dists)
    ]


@pytest.fixture
def two_runs(tmp_path):
    a = write_run(tmp_path / "dsgd", "dsgd", "none", classification([0.1, 0.6, 0.91, 0.88, 0.95]))
    b = write_run(
        tmp_path / "choco", "choco", "top_k", classification([0.1, 0.5, 0.7, 0.89], 250.0)
    )
    return [a, b]


def table_cells(table: str) -> list[list[str]]:
    lines = table.strip().splitlines()
    assert set(lines[1]) <= {"|", "-"}
    return [[c.strip() for c in line.strip("|").split("|")] for line in [lines[0], *lines[2:]]]


def test_rounds_to_target_is_the_first_crossing():
    pts = [(0, 0.1), (10, 0.9), (20, 0.8), (30, 0.95)]
    assert rounds_to_target(pts, 0.9) == 10
    assert rounds_to_target(pts, 0.95) == 30
    assert rounds_to_target(pts, 0.96) is None
    assert rounds_to_target(pts, 0.0) == 0


def test_format_bytes():
    assert format_bytes(None) == "-"
    assert format_bytes(999) == "999 B"
    assert format_bytes(40_000) == "40 kB"
    assert format_bytes(1_234_567) == "1.23 MB"
    assert format_bytes(2.5e9) == "2.5 GB"


def test_compare_table_values(two_runs):
    header, dsgd, choco = table_cells(compare_table(load_runs(two_runs), target=0.9))
    assert header == [
        "run", "algorithm", "topology", "compression", "final accuracy", "best accuracy",
        "rounds to 0.9", "bytes sent", "wall time (s)",
    ]
    assert dsgd == ["dsgd", "dsgd", "ring", "none", "0.9500", "0.9500", "20", "40 kB", "2.00"]
    assert choco == ["choco", "choco", "ring", "top_k", "0.8900", "0.8900", "-", "7.5 kB", "1.50"]


def test_compare_table_best_differs_from_final(tmp_path):
    run = write_run(tmp_path / "r", "dsgd", "none", classification([0.2, 0.97, 0.93]))
    header, row = table_cells(compare_table(load_runs([run])))
    assert "rounds to" not in " ".join(header)
    assert row[4:6] == ["0.9300", "0.9700"]


def test_compare_table_without_accuracy(tmp_path):
    run = write_run(tmp_path / "q", "gradient_tracking", "none", quadratic([4.0, 1.0, 0.0125]))
    header, row = table_cells(compare_table(load_runs([run]), target=0.9))
    assert header[4:] == [
        "final distance to optimum", "final train loss", "bytes sent", "wall time (s)",
    ]
    assert row[4:] == ["0.0125", "1.012", "640 B", "0.02"]


def test_compare_table_missing_metrics_show_dash(tmp_path):
    run = write_run(tmp_path / "m", "dsgd", "none", [{"round": 0, "test_accuracy": 0.5}])
    (run / "summary.json").unlink()
    _, row = table_cells(compare_table(load_runs([run]), target=0.6))
    assert row[4:] == ["0.5000", "0.5000", "-", "-", "-"]


def read_png(path: Path) -> np.ndarray:
    import matplotlib.image

    return matplotlib.image.imread(path)


def test_plot_runs_writes_readable_non_blank_pngs(two_runs, tmp_path):
    written = plot_runs(load_runs(two_runs), tmp_path / "plots")
    names = [p.name for p in written]
    assert names == [
        "accuracy_vs_round.png", "accuracy_vs_bytes.png", "consensus_distance.png",
        "train_loss.png",
    ]
    for path in written:
        image = read_png(path)
        assert image.shape[:2] == (450, 700)
        pixels = image[..., :3].reshape(-1, 3)
        codes = (np.round(pixels * 255).astype(np.int64) * [65536, 256, 1]).sum(axis=1)
        assert len(np.unique(codes)) > 10
        assert (pixels < 0.5).any() and (pixels > 0.9).any()


def test_plot_runs_draws_accuracy_vs_simulated_time_for_timed_runs(tmp_path):
    records = classification([0.1, 0.6, 0.9])
    for i, r in enumerate(records):
        r["sim_time"] = 2.5 * i
    timed = write_run(tmp_path / "t", "dsgd", "none", records)
    written = [p.name for p in plot_runs(load_runs([timed]), tmp_path / "out")]
    assert written[:3] == ["accuracy_vs_round.png", "accuracy_vs_bytes.png",
                           "accuracy_vs_time.png"]
    assert load_runs([timed])[0].series("test_accuracy", x="sim_time") == (
        [0.0, 2.5, 5.0], [0.1, 0.6, 0.9])


def test_plot_runs_skips_figures_without_data(tmp_path):
    run = write_run(tmp_path / "q", "dsgd", "none", quadratic([4.0, 1.0, 0.25]))
    written = plot_runs(load_runs([run]), tmp_path / "out")
    assert [p.name for p in written] == [
        "consensus_distance.png", "train_loss.png", "distance_to_optimum.png",
    ]
    assert {f.filename for f in FIGURES} >= {p.name for p in written}
    assert plot_runs(load_runs([write_run(tmp_path / "e", "dsgd", "none", [{"round": 0}])]),
                     tmp_path / "none") == []


def test_plot_pngs_are_the_bytes_savefig_writes(two_runs, tmp_path):
    """Written through a temporary file (gossip.runner.atomic.save_figure), a figure is the
    same PNG savefig writes to the path directly; the folder holds no temporary file."""
    import matplotlib.figure

    written = plot_runs(load_runs(two_runs), tmp_path / "atomic")
    direct = matplotlib.figure.Figure.savefig
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(matplotlib.figure.Figure, "savefig",
                      lambda fig, f, format, **kw: direct(fig, tmp_path / "direct.png", **kw))
        plot_runs(load_runs(two_runs), tmp_path / "unused")
        assert (tmp_path / "direct.png").read_bytes() == written[-1].read_bytes()
    assert sorted(p.name for p in (tmp_path / "atomic").iterdir()) == sorted(
        p.name for p in written)


@pytest.mark.parametrize("failure", ["full disk", "drawing"])
def test_plot_failing_writer_keeps_the_old_png_and_no_temporary(two_runs, capsys, monkeypatch,
                                                                failure):
    """savefig writes half a PNG, then fails: a full disk is one line and exit 2, a drawing
    error propagates; either way the figure of the run before stays whole and no temporary
    file is left."""
    import errno
    import os

    import matplotlib.figure

    from gossip.cli import main

    runs = [str(p) for p in two_runs]
    assert main(["plot", *runs]) == 0
    plots = two_runs[0] / "plots"
    before = {p.name: p.read_bytes() for p in plots.iterdir()}

    def failing(fig, f, **kw):
        f.write(b"\x89PNG\r\n\x1a\n half a figure")
        if failure == "drawing":
            raise RuntimeError("the renderer failed")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", failing)
    capsys.readouterr()
    if failure == "drawing":
        with pytest.raises(RuntimeError, match="the renderer failed"):
            main(["plot", *runs])
    else:
        assert main(["plot", *runs]) == 2
        assert capsys.readouterr().err == (
            f"gossip plot: error: cannot write {str(plots / 'accuracy_vs_round.png')!r}: "
            "No space left on device (ENOSPC)\n")
    assert {p.name: p.read_bytes() for p in plots.iterdir()} == before


def parse(module, argv):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(argv)


def test_plot_cli_default_out_and_printed_paths(two_runs, capsys):
    assert plot_cli.run(parse(plot_cli, [str(p) for p in two_runs])) == 0
    printed = capsys.readouterr().out.split()
    assert printed and all(Path(p).parent == two_runs[0] / "plots" for p in printed)
    assert all(Path(p).is_file() for p in printed)


def test_compare_cli_writes_table(two_runs, tmp_path, capsys):
    out = tmp_path / "t" / "compare.md"
    args = parse(compare_cli, [*map(str, two_runs), "--target", "0.9", "--out", str(out)])
    assert compare_cli.run(args) == 0
    text = capsys.readouterr().out
    assert text == out.read_text()
    assert "| 20 " in text


@pytest.mark.parametrize("module,name", [(plot_cli, "plot"), (compare_cli, "compare")])
def test_cli_bad_folder_one_line_exit_2(tmp_path, capsys, module, name):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "config.toml").write_text("seed = 0\n")
    assert module.run(parse(module, [str(tmp_path / "x")])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"gossip {name}: error: ") and "metrics.jsonl is missing" in err


def test_compare_cli_rejects_bad_target():
    with pytest.raises(SystemExit) as info:
        parse(compare_cli, ["r", "--target", "1.5"])
    assert info.value.code == 2
