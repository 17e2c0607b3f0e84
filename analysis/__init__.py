"""Reports and figures from topologies and run folders.

Modules
-------
``analysis.topology_report``
    Spectral-gap rows for (topology, n) pairs and their text / JSON / CSV formatters.
``analysis.topology_figures``
    Matplotlib (Agg) figures: spectral gap vs n, eigenvalue spectra, graph drawings, and
    ``write_report`` which puts ``report.md``, ``report.csv`` and the PNGs in one folder.
``analysis.topology_cli``
    The ``gossip topology report|show`` subcommand.

Modules on run folders (comparisons, curves) live beside these.

This package never imports torch or mpi4py; matplotlib is imported only inside the
functions that draw. The package itself imports nothing, so ``gossip --help`` stays fast.
"""
