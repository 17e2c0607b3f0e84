"""The run machinery: the experiment and its training loop, metric records, checkpoints, the run
folder, sweeps, and the MPI launch environment."""
