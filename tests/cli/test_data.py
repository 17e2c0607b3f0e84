"""``gossip data show`` through its module (the lead wires it into the CLI)."""

import argparse

import numpy as np
import pytest

from gossip.cli import data as show_cli
from gossip.data import class_counts, load_dataset, make_partition
from gossip.errors import ConfigError


def parse(argv):
    parser = argparse.ArgumentParser(prog="gossip data")
    show_cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_show_prints_the_class_table(capsys, tmp_path):
    png = tmp_path / "p.png"
    args = parse(["show", "--dataset", "synthetic", "--partition", "shards",
                  "--shards-per-node", "3", "--nodes", "5", "--seed", "2", "--plot", str(png)])
    assert show_cli.run(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "synthetic, shards k=3, 5 nodes, seed 2"
    rows = [line.split() for line in out[2:7]]
    labels = load_dataset("synthetic", seed=2).train_y.numpy()
    counts = class_counts(make_partition("shards", labels, 5, seed=2, shards_per_node=3),
                          labels, 10)
    for i, row in enumerate(rows):
        assert int(row[0]) == i and int(row[1]) == counts[i].sum() and int(row[2]) == 3
        assert [int(v) for v in row[3:]] == counts[i].tolist()
    assert out[7].split()[:2] == ["all", "2000"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_show_errors():
    with pytest.raises(ConfigError, match="unknown partition"):
        show_cli.run(parse(["show", "--dataset", "synthetic", "--partition", "nope"]))
    with pytest.raises(SystemExit):
        parse([])  # the sub-command is required


def test_format_table_alignment():
    text = show_cli.format_table(np.array([[1, 0], [0, 12345]]))
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1  # columns aligned
    assert lines[-1].split() == ["all", "12346", "2", "1", "12345"]
