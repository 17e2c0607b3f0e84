"""Figures of the topology report (matplotlib, Agg backend only) and ``write_report``.

* :func:`plot_gap_vs_n` — spectral gap ``1 - rho`` against ``n`` on log-log axes, one line per
  topology, with the theoretical slopes as dashed references: ring ``1 - rho = Theta(1/n^2)``
  (Metropolis on a cycle, ``1 - rho = 2/3 (1 - cos(2 pi / n)) ~ 4 pi^2 / (3 n^2)``) and 2-D
  torus ``Theta(1/n)`` (Boyd et al., 2006, "Randomized gossip algorithms"; Nedić et al., 2018,
  "Network topology and communication-computation tradeoffs in decentralized optimization").
* :func:`plot_spectrum` — the sorted eigenvalues of one mixing matrix (moduli when ``W`` is not
  symmetric).
* :func:`draw_graph` — a networkx drawing, only for graphs of at most :data:`DRAW_MAX` nodes.
* :func:`write_report` — ``report.md``, ``report.csv`` and the PNGs in one folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from analysis.topology_report import columns, format_value, to_csv
from gossip.runner.atomic import save_figure

__all__ = [
    "DRAW_MAX",
    "SPECTRUM_MAX",
    "REFERENCE_SLOPES",
    "plot_gap_vs_n",
    "plot_spectrum",
    "draw_graph",
    "write_report",
    "markdown_table",
]

#: Largest graph drawn by :func:`draw_graph`.
DRAW_MAX = 64
#: Largest ``n`` whose full spectrum the report computes (dense eigendecomposition).
SPECTRUM_MAX = 512
#: Theoretical ``spectral_gap ~ C n**slope`` drawn as dashed lines.
REFERENCE_SLOPES = {"ring": -2.0, "torus": -1.0}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_gap_vs_n(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    """Log-log plot of ``spectral_gap`` against ``nodes``, one line per topology.

    For ``ring`` and ``torus`` a dashed line ``C n**slope`` (:data:`REFERENCE_SLOPES`) is
    anchored at the topology's smallest ``n``. Rows with a zero gap (complete graph,
    exact schedules) cannot sit on a log axis and are left out of the lines.
    """
    plt = _pyplot()
    series: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        gap = row.get("spectral_gap")
        if gap is not None and gap > 0:
            series.setdefault(row["topology"], []).append((row["nodes"], gap))
    fig, ax = plt.subplots(figsize=(8, 5.5))
    colours = plt.get_cmap("tab20").colors
    markers = "osD^v<>phX*"
    for k, (name, points) in enumerate(series.items()):
        points.sort()
        ns = [n for n, _ in points]
        gaps = [g for _, g in points]
        (line,) = ax.plot(ns, gaps, marker=markers[k % len(markers)],
                          color=colours[(2 * k) % 20 + (k // 10) % 2], label=name)
        slope = REFERENCE_SLOPES.get(name)
        if slope is not None and len(ns) >= 2:
            c = gaps[0] / ns[0] ** slope
            ax.plot(
                ns, [c * n**slope for n in ns], linestyle="--", color=line.get_color(),
                alpha=0.6, label=f"{name} theory ~ n^{slope:g}",
            )
    if not series:
        ax.text(0.5, 0.5, "no positive spectral gap to plot", ha="center",
                transform=ax.transAxes)
    else:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.legend(fontsize=7, ncol=2)
    ax.set_xlabel("nodes n")
    ax.set_ylabel("spectral gap 1 - rho")
    ax.set_title("Spectral gap vs n")
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def _eigenvalues(W) -> tuple[list[float], str]:
    import numpy as np
    import scipy.sparse as sp

    M = W.toarray() if sp.issparse(W) else np.asarray(W, dtype=float)
    if np.allclose(M, M.T, atol=1e-12):
        return sorted(np.linalg.eigvalsh(M).tolist(), reverse=True), "eigenvalue"
    return sorted(np.abs(np.linalg.eigvals(M)).tolist(), reverse=True), "|eigenvalue|"


def plot_spectrum(W, path: str | os.PathLike, title: str) -> Path:
    """Sorted eigenvalues of ``W`` (largest first; moduli when ``W`` is not symmetric).

    Raises
    ------
    TopologyError
        ``W`` larger than :data:`SPECTRUM_MAX` (the dense decomposition would be slow).
    """
    from topologies import TopologyError

    if W.shape[0] > SPECTRUM_MAX:
        raise TopologyError(
            f"plot_spectrum decomposes W densely and allows n <= {SPECTRUM_MAX}, got n={W.shape[0]}"
        )
    values, label = _eigenvalues(W)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(range(1, len(values) + 1), values, marker=".", linestyle="-")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel("index k (sorted, largest first)")
    ax.set_ylabel(label)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def draw_graph(graph, path: str | os.PathLike, title: str | None = None) -> Path:
    """Draw ``graph`` with networkx (circular layout for rings, spring layout otherwise).

    Raises
    ------
    TopologyError
        More than :data:`DRAW_MAX` nodes.
    """
    import networkx as nx

    from topologies import TopologyError

    n = graph.number_of_nodes()
    if n > DRAW_MAX:
        raise TopologyError(f"draw_graph draws graphs of at most {DRAW_MAX} nodes, got n={n}")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    name = graph.graph.get("name", "")
    if "shape" in graph.graph:
        rows, cols = graph.graph["shape"]
        pos = {i: (i % cols, -(i // cols)) for i in graph.nodes()}
    elif name in ("ring", "exponential"):
        pos = nx.circular_layout(graph)
    else:
        pos = nx.spring_layout(graph, seed=0)
    straight, wrapped = list(graph.edges()), []
    if "shape" in graph.graph:  # torus wrap-around edges as arcs, so they do not hide others
        straight = [(u, v) for u, v in graph.edges()
                    if abs(pos[u][0] - pos[v][0]) + abs(pos[u][1] - pos[v][1]) <= 1]
        wrapped = [e for e in graph.edges() if e not in set(straight)]
    nx.draw_networkx_nodes(graph, pos, ax=ax, node_size=120 if n > 16 else 300,
                           node_color="#4c72b0")
    nx.draw_networkx_labels(graph, pos, ax=ax, font_size=6 if n > 16 else 9, font_color="white")
    nx.draw_networkx_edges(graph, pos, edgelist=straight, ax=ax, edge_color="#555555",
                           arrows=graph.is_directed())
    if wrapped:
        nx.draw_networkx_edges(graph, pos, edgelist=wrapped, ax=ax, edge_color="#c44e52",
                               arrows=True, arrowstyle="-", connectionstyle="arc3,rad=0.25")
    ax.set_title(title or f"{name or 'graph'} (n={n})")
    ax.set_axis_off()
    return _save(fig, path)


def _save(fig, path: str | os.PathLike) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    try:
        save_figure(fig, path, dpi=100)
    finally:
        plt.close(fig)
    return path


def markdown_table(rows: Sequence[dict]) -> str:
    """Rows as a GitHub Markdown table (floats to 4 significant digits)."""
    keys = columns(rows)
    lines = ["| " + " | ".join(keys) + " |", "|" + "|".join("---" for _ in keys) + "|"]
    lines += ["| " + " | ".join(format_value(row.get(k)) for k in keys) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _static_rows(rows: Sequence[dict]) -> dict[str, list[dict]]:
    """Rows of static topologies (no ``effective_p``), by topology, sorted by ``n``."""
    by_name: dict[str, list[dict]] = {}
    for row in rows:
        if "effective_p" not in row:
            by_name.setdefault(row["topology"], []).append(row)
    return {k: sorted(v, key=lambda r: r["nodes"]) for k, v in by_name.items()}


def write_report(
    rows: Sequence[dict],
    out_dir: str | os.PathLike,
    *,
    skipped: Sequence[str] = (),
    seed: int = 0,
) -> list[Path]:
    """Write ``report.md``, ``report.csv`` and the PNGs into ``out_dir``.

    PNGs: ``gap_vs_n.png``; per static topology ``spectrum_<name>.png`` (its largest
    ``n <= SPECTRUM_MAX``) and ``graph_<name>.png`` (its smallest ``n``, if ``<= DRAW_MAX``).
    Graphs are rebuilt from each row's ``topology``, ``nodes``, ``weights`` and ``seed``
    (the seed the rows were made with).

    Returns
    -------
    list of Path
        The files written, ``report.md`` first.
    """
    import topologies

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, Path]] = []
    figures.append(("Spectral gap vs n", plot_gap_vs_n(rows, out / "gap_vs_n.png")))
    for name, group in _static_rows(rows).items():
        fitting = [r for r in group if r["nodes"] <= SPECTRUM_MAX]
        if fitting:
            row = fitting[-1]
            graph = topologies.build(name, row["nodes"], seed=seed)
            W = topologies.mixing_matrix(graph, row["weights"])
            title = f"{name}, n={row['nodes']}, {row['weights']}"
            path = plot_spectrum(W, out / f"spectrum_{name}.png", f"Spectrum: {title}")
            figures.append((f"Spectrum of {title}", path))
        if group[0]["nodes"] <= DRAW_MAX:
            graph = topologies.build(name, group[0]["nodes"], seed=seed)
            path = draw_graph(graph, out / f"graph_{name}.png")
            figures.append((f"{name} graph, n={group[0]['nodes']}", path))
    csv_path = out / "report.csv"
    csv_path.write_text(to_csv(rows))
    lines = ["# Topology report", "", markdown_table(rows), "## Figures", ""]
    lines += [f"![{caption}]({path.name})" for caption, path in figures]
    if skipped:
        lines += ["", "## Skipped", ""]
        lines += [f"- {note}" for note in skipped]
    md_path = out / "report.md"
    md_path.write_text("\n".join(lines) + "\n")
    return [md_path, csv_path] + [path for _, path in figures]
