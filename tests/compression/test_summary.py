"""``summary.json`` reports the compression: operator, bytes per row, nominal and measured
ratio; a compressed allreduce with error feedback resumes from its checkpoint exactly."""

from __future__ import annotations

import json

import pytest

from gossip.config import load_config
from gossip.runner.loop import run
from gossip.runner.rundir import read_metrics

DIM, N, ROUNDS = 40, 6, 5
BASE = ["problem.name=quadratic", f"nodes={N}", f"problem.dim={DIM}", "algorithm.lr=0.1",
        f"rounds={ROUNDS}", "eval_every=1"]
TIMES = ("wall_time", "compute_time", "comm_time")


def cfg(tmp_path, *extra):
    return load_config(None, [*BASE, f"out='{tmp_path}'", *extra])


@pytest.mark.parametrize("alg", ["choco", "beer", "allreduce", "fedavg"])
def test_summary_gives_operator_row_bytes_and_ratios(tmp_path, alg):
    # topk k=4 of 40 float32 entries: 4 values (16 B) + 4 uint8 indices (4 B) = 20 B per row
    summary = run(cfg(tmp_path, f"algorithm.name='{alg}'", "compression.name='topk'",
                      "compression.k=4", "name=r"), quiet=True)
    saved = json.loads((tmp_path / "r" / "summary.json").read_text())
    entry = saved["compression"]
    assert entry == summary["compression"]
    assert entry["name"] == "topk" and entry["options"]["k"] == 4
    assert entry["payload_row_bytes"] == 20 and entry["dense_row_bytes"] == DIM * 4
    assert entry["ratio"] == DIM * 4 / 20
    rows = 2 if alg == "beer" else 1  # beer: copies of X and of V in one message
    assert entry["dense_bytes"] == saved["messages"] * rows * DIM * 4
    assert entry["measured_ratio"] == entry["dense_bytes"] / saved["bytes_sent"]
    assert saved["compression_ratio"] == entry["measured_ratio"]
    if alg in ("choco", "beer"):  # every message is encoded rows only: measured = nominal
        assert entry["measured_ratio"] == entry["ratio"]
    else:  # payload up, dense model down: 2 * 160 / (20 + 160)
        assert entry["measured_ratio"] == pytest.approx(2 * 160 / 180, rel=1e-12)


def test_uncompressed_run_has_no_compression_entry(tmp_path):
    summary = run(cfg(tmp_path, "name=u"), quiet=True)
    assert "compression" not in summary and "compression_ratio" not in summary


@pytest.mark.parametrize("alg", ["allreduce", "fedavg"])
def test_compressed_run_with_error_feedback_resumes_exactly(tmp_path, alg):
    extra = [f"algorithm.name='{alg}'", "compression.name='topk'", "compression.k=3",
             "problem.heterogeneity=3.0"]
    run(cfg(tmp_path, *extra, "name=full"), quiet=True)
    run(cfg(tmp_path, *extra, "name=cut", "rounds=2"), quiet=True)
    run(cfg(tmp_path, *extra, "name=cut"), quiet=True, resume=tmp_path / "cut")
    full, cut = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "cut")
    strip = [[{k: v for k, v in r.items() if k not in TIMES} for r in rs] for rs in (full, cut)]
    assert strip[0] == strip[1] and len(full) == ROUNDS
