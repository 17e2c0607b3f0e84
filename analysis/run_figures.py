"""Figures from run folders: one PNG per metric, one labelled line per run.

Figures (each skipped when no run has the metric):

- ``accuracy_vs_round.png``: test accuracy of the mean model vs communication round;
- ``accuracy_vs_bytes.png``: test accuracy vs bytes sent by all nodes (log x), the
  communication-efficiency view of compressed gossip (Koloskova et al. 2019, Fig. 3);
- ``accuracy_vs_time.png``: test accuracy vs simulated time (``sim_time``, the ``[time]``
  model of :mod:`gossip.network.sim_time`: compute, stragglers, latency, bandwidth on the real
  bytes), for runs with a time model;
- ``consensus_distance.png``: ``1/n sum_i ||x_i - x_bar||^2`` vs round (log y), the quantity the
  D-SGD rates bound (Koloskova et al. 2020);
- ``train_loss.png``: mean training loss over nodes vs round (log y);
- ``distance_to_optimum.png``: ``||x_bar - x*||^2`` vs round (log y) for problems with a known
  optimum, and ``distance_to_optimum_vs_time.png`` vs simulated time.

Matplotlib (Agg backend) is imported inside :func:`plot_runs` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from analysis.runs import Run
from gossip.runner.atomic import save_figure

__all__ = ["FIGURES", "Figure", "plot_runs"]


@dataclass(frozen=True)
class Figure:
    """One figure: file name, y metric, x metric, axis labels and log scales."""

    filename: str
    y: str
    x: str
    ylabel: str
    xlabel: str
    logx: bool = False
    logy: bool = False


FIGURES: tuple[Figure, ...] = (
    Figure("accuracy_vs_round.png", "test_accuracy", "round", "test accuracy", "round"),
    Figure(
        "accuracy_vs_bytes.png", "test_accuracy", "bytes_sent", "test accuracy",
        "bytes sent (all nodes)", logx=True,
    ),
    Figure("accuracy_vs_time.png", "test_accuracy", "sim_time", "test accuracy",
           "simulated time (s)"),
    Figure(
        "consensus_distance.png", "consensus_distance", "round",
        "consensus distance 1/n sum ||x_i - x_bar||^2", "round", logy=True,
    ),
    Figure("train_loss.png", "train_loss", "round", "train loss (mean over nodes)", "round",
           logy=True),
    Figure(
        "distance_to_optimum.png", "distance_to_optimum", "round", "distance to optimum",
        "round", logy=True,
    ),
    Figure(
        "distance_to_optimum_vs_time.png", "distance_to_optimum", "sim_time",
        "distance to optimum", "simulated time (s)", logy=True,
    ),
)


_STYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "D", "v")


def _points(run: Run, fig: Figure) -> tuple[list[float], list[float]]:
    """The run's points for ``fig``, without those a log axis cannot show (<= 0)."""
    xs, ys = run.series(fig.y, x=fig.x)
    keep = [
        (a, b) for a, b in zip(xs, ys) if (not fig.logx or a > 0) and (not fig.logy or b > 0)
    ]
    return [a for a, _ in keep], [b for _, b in keep]


def plot_runs(runs: Sequence[Run], out_dir: str | Path) -> list[Path]:
    """Write the figures of :data:`FIGURES` that at least one run has data for.

    Parameters
    ----------
    runs : list of Run
        Runs from :func:`analysis.runs.load_runs`; each is one line labelled ``run.label``.
    out_dir : path
        Folder for the PNGs (created if missing).

    Returns
    -------
    list of Path
        The written files, in :data:`FIGURES` order.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fig in FIGURES:
        lines = [(run.label, *_points(run, fig)) for run in runs]
        lines = [line for line in lines if line[1]]
        if not lines:
            continue
        figure, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
        try:
            for k, (label, xs, ys) in enumerate(lines):
                # line style and marker vary too, so runs with equal curves stay visible
                ax.plot(
                    xs, ys, linestyle=_STYLES[k % len(_STYLES)],
                    marker=_MARKERS[k % len(_MARKERS)] if len(xs) < 30 else None,
                    markersize=3, label=label,
                )
            if fig.logx:
                ax.set_xscale("log")
            if fig.logy:
                ax.set_yscale("log")
            ax.set_xlabel(fig.xlabel)
            ax.set_ylabel(fig.ylabel)
            ax.grid(True, which="major", alpha=0.3)
            ax.legend(fontsize="small")
            figure.tight_layout()
            path = out / fig.filename
            save_figure(figure, path)
            written.append(path)
        finally:
            plt.close(figure)
    return written
