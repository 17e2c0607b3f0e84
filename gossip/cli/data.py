"""``gossip data show``: the per-node class table of a partition, optionally plotted.

Example: ``gossip data show --dataset mnist --partition dirichlet --alpha 0.1 --nodes 16``.
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "format_table", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``show`` sub-command to the ``data`` parser."""
    sub = parser.add_subparsers(dest="data_command", metavar="{show}", required=True)
    show = sub.add_parser("show", help="print the per-node class table of a partition",
                          description="Print (and plot) how a partition splits the classes.")
    show.add_argument("--dataset", default="mnist",
                      help="mnist, fashion_mnist, cifar10 or synthetic (default mnist)")
    show.add_argument("--root", default=None, help="folder of the data set files")
    show.add_argument("--partition", default="dirichlet",
                      help="iid, dirichlet, dirichlet_balanced, shards or quantity_skew "
                           "(default dirichlet)")
    show.add_argument("--alpha", type=float, default=0.1, help="Dirichlet alpha (default 0.1)")
    show.add_argument("--shards-per-node", type=int, default=2, help="classes per node (shards)")
    show.add_argument("--min-size", type=int, default=10, help="least samples per node")
    show.add_argument("--group-size", type=int, default=10,
                      help="nodes per group (dirichlet_balanced, default 10)")
    show.add_argument("--min-fraction", type=float, default=0.5,
                      help="least size relative to the group's mean (dirichlet_balanced, "
                           "default 0.5)")
    show.add_argument("--nodes", type=int, default=16, help="number of nodes (default 16)")
    show.add_argument("--seed", type=int, default=0, help="partition seed (default 0)")
    show.add_argument("--plot", default=None, metavar="FILE.png",
                      help="also save a stacked bar chart of the table")


def format_table(counts, names: list[str] | None = None) -> str:
    """The ``(n, classes)`` counts as text: one row per node, with its size and class count."""
    n, c = counts.shape
    names = names or [str(k) for k in range(c)]
    w = max(5, max(len(str(int(v))) for v in counts.flat) if counts.size else 1)
    head = f"{'node':>4} {'size':>6} {'cls':>3}  " + " ".join(f"{h:>{w}}" for h in names)
    lines = [head]
    for i in range(n):
        row = counts[i]
        cells = " ".join(f"{int(v):>{w}}" for v in row)
        lines.append(f"{i:>4} {int(row.sum()):>6} {int((row > 0).sum()):>3}  {cells}")
    tot = counts.sum(0)
    lines.append(f"{'all':>4} {int(tot.sum()):>6} {int((tot > 0).sum()):>3}  "
                 + " ".join(f"{int(v):>{w}}" for v in tot))
    return "\n".join(lines)


def _plot(counts, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from gossip.runner.atomic import save_figure

    n, c = counts.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * n + 2), 3.5))
    bottom = np.zeros(n)
    cmap = plt.get_cmap("tab10" if c <= 10 else "tab20")
    for k in range(c):
        ax.bar(np.arange(n), counts[:, k], bottom=bottom, color=cmap(k % cmap.N), label=str(k))
        bottom += counts[:, k]
    ax.set_xlabel("node")
    ax.set_ylabel("training samples")
    ax.set_title(title, fontsize=9)
    ax.legend(title="class", fontsize=7, ncol=2, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    try:
        save_figure(fig, path, dpi=120)
    finally:
        plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """Prints the table (and writes the plot); returns 0."""
    from gossip.data.partition import class_counts, make_partition
    from gossip.data.registry import load_dataset

    ds = load_dataset(args.dataset, args.root, seed=args.seed)
    labels = ds.train_y.numpy()
    parts = make_partition(args.partition, labels, args.nodes, seed=args.seed, alpha=args.alpha,
                           shards_per_node=args.shards_per_node, min_size=args.min_size,
                           group_size=args.group_size, min_fraction=args.min_fraction)
    counts = class_counts(parts, labels, int(ds.info["classes"]))
    detail = {"dirichlet": f" alpha={args.alpha}", "quantity_skew": f" alpha={args.alpha}",
              "dirichlet_balanced": f" alpha={args.alpha} group_size={args.group_size} "
                                    f"min_fraction={args.min_fraction}",
              "shards": f" k={args.shards_per_node}"}.get(args.partition, "")
    title = f"{args.dataset}, {args.partition}{detail}, {args.nodes} nodes, seed {args.seed}"
    print(title)
    print(format_table(counts))
    if args.plot:
        _plot(counts, args.plot, title)
        print(f"plot: {args.plot}")
    return 0
