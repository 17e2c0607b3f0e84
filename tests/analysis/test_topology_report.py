"""Rows, formatters and figures of the topology report."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest

import topologies
from analysis.topology_figures import draw_graph, plot_gap_vs_n, plot_spectrum, write_report
from analysis.topology_report import (
    ROW_KEYS,
    SCHEDULE_KEYS,
    default_tau,
    format_table,
    format_value,
    report_rows,
    to_csv,
    to_json,
)
from topologies import TopologyError


@pytest.fixture(scope="module")
def rows():
    return report_rows(["ring", "hypercube", "torus", "complete", "exponential"], [4, 8, 16])


def test_ring_rows_match_closed_form_and_topologies():
    out = report_rows(["ring"], [3, 5, 8, 12])
    assert [r["nodes"] for r in out] == [3, 5, 8, 12]
    for row in out:
        n = row["nodes"]
        assert list(row) == list(ROW_KEYS)
        # Metropolis on a cycle: eigenvalues 1/3 + 2/3 cos(2 pi k / n); rho is the largest
        # modulus over k != 0 (k = 1, or k = n/2 with value -1/3 when it is larger).
        lam = [1 / 3 + 2 / 3 * math.cos(2 * math.pi * k / n) for k in range(1, n)]
        expected = max(abs(v) for v in lam)
        assert row["rho"] == pytest.approx(expected, abs=1e-12)
        if n >= 4:
            assert expected == pytest.approx(1 / 3 + 2 / 3 * math.cos(2 * math.pi / n))
        W = topologies.mixing_matrix(topologies.ring(n))
        assert row["rho"] == pytest.approx(topologies.rho(W), abs=1e-12)
        assert row["spectral_gap"] == pytest.approx(1 - expected, abs=1e-12)
        assert row["p"] == pytest.approx(1 - expected**2, abs=1e-12)
        assert row["lambda_2"] == pytest.approx(max(lam), abs=1e-12)
        assert row["edges"] == n and row["max_degree"] == 2 and row["diameter"] == n // 2
        assert row["weights"] == "metropolis"
        t = row["mixing_time"]
        assert expected**t <= 1e-3 < expected ** (t - 1)


def test_hypercube_and_complete_closed_forms(rows):
    for row in rows:
        n = row["nodes"]
        if row["topology"] == "hypercube":
            d = int(math.log2(n))
            # Metropolis = (I + A) / (d + 1): eigenvalues (d + 1 - 2k) / (d + 1)
            assert row["rho"] == pytest.approx((d - 1) / (d + 1), abs=1e-12)
            assert row["edges"] == n * d // 2 and row["diameter"] == d
        if row["topology"] == "complete":
            assert row["rho"] == pytest.approx(0.0, abs=1e-12)
            assert row["mixing_time"] == 1 and row["edges"] == n * (n - 1) // 2


def test_directed_topology_uses_in_uniform(rows):
    expo = [r for r in rows if r["topology"] == "exponential"]
    assert expo and all(r["weights"] == "in_uniform" and r["lambda_2"] is None for r in expo)


def test_skipped_combinations_are_noted_not_raised():
    skipped = []
    out = report_rows(["torus", "hypercube", "ring"], [6, 9], skipped=skipped)
    assert {(r["topology"], r["nodes"]) for r in out} == {("torus", 9), ("ring", 6), ("ring", 9)}
    assert len(skipped) == 3
    assert any(s.startswith("hypercube n=6: ") and "power of two" in s for s in skipped)
    assert any(s.startswith("torus n=6: ") and "perfect square" in s for s in skipped)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"topologies": ["hypercube"], "nodes": [6, 12]}, "power of two"),
        ({"topologies": ["torus"], "nodes": [8]}, "perfect square"),
        ({"topologies": ["ring"], "nodes": [2]}, "n >= 3"),
        ({"topologies": ["moebius"], "nodes": [8]}, "unknown topology 'moebius'"),
        ({"topologies": ["ring"], "nodes": [8], "weights": "nope"}, "unknown mixing rule"),
        ({"topologies": ["ring"], "nodes": [1]}, "integer >= 2"),
        ({"topologies": [], "schedules": ["static"], "nodes": [8]}, "needs a base graph"),
    ],
)
def test_only_unfitting_request_raises(kwargs, words):
    with pytest.raises(TopologyError, match=words):
        report_rows(**kwargs)


def test_schedule_rows_have_effective_p_and_tau():
    out = report_rows([], [4, 8, 16], schedules=["one_peer_exponential", "random_matching"])
    assert len(out) == 6
    for row in out:
        assert list(row) == [*ROW_KEYS, *SCHEDULE_KEYS]
        assert row["tau"] == default_tau(row["nodes"])
        assert 0.0 <= row["effective_p"] <= 1.0 + 1e-12
    for row in out[:3]:  # one-peer exponential averages exactly after log2 n rounds
        n = row["nodes"]
        assert row["tau"] == int(math.log2(n))
        assert row["effective_p"] == pytest.approx(1.0, abs=1e-12)
        assert row["rho"] == pytest.approx(0.0, abs=1e-6)
        assert row["mixing_time"] == row["tau"]
        # union of rounds 0..tau-1 is the static exponential graph: n * log2 n directed edges
        assert row["edges"] == n * row["tau"] and row["max_degree"] == row["tau"]
    one_round = report_rows([], [8], schedules=["one_peer_exponential"], tau=1)[0]
    schedule = topologies.make_schedule("one_peer_exponential", 8)
    # worst single round over 8 windows: hop 2 on 8 nodes splits into two 4-cycles (rho = 1)
    worst = max(topologies.rho(schedule.matrix(t)) for t in range(8))
    assert worst == pytest.approx(1.0)
    # deterministic: every window must meet the rate, so effective_p is the worst window
    assert one_round["worst_window_p"] == pytest.approx(1 - worst**2, abs=1e-12) == 0.0
    assert one_round["effective_p"] == one_round["worst_window_p"]
    assert one_round["effective_p_se"] == 0.0


def test_random_matching_row_reports_the_expected_rate():
    # tau = 1: E[W^T W] = (I + (J - I)/(n - 1))/2, so p = n / (2 (n - 1))
    rows = report_rows([], [8, 16], schedules=["random_matching"], tau=1)
    for row in rows:
        n = row["nodes"]
        assert 0 < row["effective_p_se"] < 0.05
        assert abs(row["effective_p"] - n / (2 * (n - 1))) <= 4 * row["effective_p_se"]
        assert row["worst_window_p"] == pytest.approx(0.0, abs=1e-12)
        assert row["rho"] == pytest.approx(math.sqrt(1 - row["effective_p"]))
    assert rows == report_rows([], [8, 16], schedules=["random_matching"], tau=1)


def test_format_value_and_table(rows):
    assert format_value(0.123456) == "0.1235" and format_value(123456.0) == "1.235e+05"
    assert format_value(math.inf) == "inf" and format_value(None) == "-"
    lines = format_table(rows).splitlines()
    assert lines[0].split() == list(ROW_KEYS)
    assert len(lines) == 2 + len(rows)
    assert len({len(line) for line in lines[:2]}) == 1  # header and rule aligned
    ring8 = next(line for line in lines if line.split()[:2] == ["ring", "8"])
    assert ring8.split()[3] == "0.8047"


def test_json_and_csv_round_trip(rows):
    data = json.loads(to_json(rows))
    assert isinstance(data, list) and len(data) == len(rows)
    assert all(list(d) == list(ROW_KEYS) for d in data)
    assert data[0]["rho"] == rows[0]["rho"]
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert len(parsed) == len(rows) and list(parsed[0]) == list(ROW_KEYS)
    for got, row in zip(parsed, rows):
        assert float(got["rho"]) == row["rho"] and int(got["nodes"]) == row["nodes"]
        assert got["lambda_2"] == ("" if row["lambda_2"] is None else repr(row["lambda_2"]))


def test_json_maps_infinity_to_null():
    out = report_rows([], [8], schedules=["one_peer_exponential"], tau=1)
    assert out[0]["mixing_time"] == math.inf  # hop 2 alone never mixes 8 nodes
    assert json.loads(to_json(out))[0]["mixing_time"] is None


def _check_png(path, shape=None):
    from matplotlib.image import imread

    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    if shape is not None:
        assert image.shape[:2] == shape
    assert np.ptp(image[..., :3]) > 0.1  # not one colour


def test_figures_are_drawn(tmp_path, rows):
    _check_png(plot_gap_vs_n(rows, tmp_path / "gap.png"), (550, 800))
    W = topologies.mixing_matrix(topologies.ring(8))
    _check_png(plot_spectrum(W, tmp_path / "s.png", "ring"), (400, 600))
    _check_png(draw_graph(topologies.torus(16), tmp_path / "g.png"), (500, 500))
    with pytest.raises(TopologyError, match="at most 64"):
        draw_graph(topologies.ring(65), tmp_path / "big.png")


def test_write_report(tmp_path):
    skipped = []
    out = report_rows(["ring", "torus"], [8, 16], skipped=skipped)
    files = write_report(out, tmp_path, skipped=skipped)
    names = {p.name for p in files}
    assert {"report.md", "report.csv", "gap_vs_n.png", "spectrum_ring.png"} <= names
    assert {"graph_ring.png", "spectrum_torus.png", "graph_torus.png"} <= names
    md = (tmp_path / "report.md").read_text()
    assert "| ring | 8 | metropolis | 0.8047 |" in md and "![" in md and "torus n=8" in md
    for name in names:
        if name.endswith(".png"):
            assert f"({name})" in md
            _check_png(tmp_path / name)
    assert len(list(csv.DictReader(io.StringIO((tmp_path / "report.csv").read_text())))) == 3


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_row_invariants_on_random_families(seed):
    names = ["erdos_renyi", "random_regular", "small_world"]
    for row in report_rows(names, [10, 16], seed=seed, weights="lazy_metropolis"):
        r = row["rho"]
        assert 0.0 <= r < 1.0 and row["weights"] == "lazy_metropolis"
        assert row["spectral_gap"] == pytest.approx(1 - r) and row["p"] == pytest.approx(1 - r * r)
        assert 0.0 <= row["lambda_2"] <= r + 1e-12  # lazy: spectrum in [0, 1]
        assert r ** row["mixing_time"] <= 1e-3 < r ** (row["mixing_time"] - 1)
        graph = topologies.build(row["topology"], row["nodes"], seed=seed)
        assert row["edges"] == graph.number_of_edges()
        assert row["diameter"] == topologies.graph_stats(graph)["diameter"]
    again = report_rows(names, [10], seed=seed)
    assert again == report_rows(names, [10], seed=seed)  # seeded: reproducible


def test_ring_gap_follows_the_drawn_slope():
    # 1 - rho = 2/3 (1 - cos(2 pi / n)) -> n^2 (1 - rho) -> 4 pi^2 / 3, the n^-2 reference line
    out = report_rows(["ring"], [64, 256])
    scaled = [r["spectral_gap"] * r["nodes"] ** 2 for r in out]
    assert scaled[1] == pytest.approx(4 * math.pi**2 / 3, rel=1e-4)
    assert abs(scaled[1] - 4 * math.pi**2 / 3) < abs(scaled[0] - 4 * math.pi**2 / 3)


def test_drop_columns_measure_the_rate_under_lost_messages():
    """Complete graph, W = J: the closed form 1 - q^2 - 2 q (1 - q) / n, and the Monte Carlo
    measurement within 4 standard errors of it; the report with --drop and a bad q."""
    (row,) = report_rows(["complete"], [4], drop=0.5)
    assert row["drop_p_exact"] == pytest.approx(1 - 0.25 - 2 * 0.25 / 4, abs=1e-12)
    assert abs(row["drop_p"] - row["drop_p_exact"]) < 4 * row["drop_p_se"]
    assert 0 < row["drop_p_directed"] < 1 and row["drop"] == 0.5
    assert "drop_p" not in report_rows(["complete"], [4])[0]
    with pytest.raises(TopologyError, match="drop must be a number in"):
        report_rows(["ring"], [8], drop=1.0)
