"""Interrupts: SIGINT (Ctrl-C) and SIGTERM stop a run at a round boundary, with a checkpoint.

While :func:`gossip.runner.loop.run` runs, :class:`StopSignals` replaces the handlers of
SIGINT and SIGTERM. The first signal only sets a flag. The loop already sums the round's
losses over ranks every round; the flags travel in the same ``allreduce`` (two more numbers),
so every rank sees the request after the same round ``t`` with no extra collective. Then every
rank finishes that round's record, writes the checkpoint of round ``t + 1`` together
(:func:`~gossip.runner.checkpoint.save_checkpoint`) and raises :class:`RunInterrupted`, whose
one line names the run folder, the checkpoint and the command that resumes it; the command
line prints it once (rank 0) and exits with ``128 + signal``: 130 for SIGINT, 143 for SIGTERM.

A second signal before that (or a signal before the rounds start, or in a run with no round
left) raises :class:`RunInterrupted` at once; its line names the last complete checkpoint,
which the manifest keeps (the folder is consistent at every instant).

Open MPI 5's ``mpiexec`` does not pass a SIGINT/SIGTERM it receives itself on as such: it
sends SIGTERM to every rank, stops forwarding their output, kills them (SIGKILL) about a
quarter of a second later and exits with 1. The run folder then holds the last complete
checkpoint (the new one when the ranks finished it in time), and ``--resume`` continues. A
signal sent to the ranks themselves (a batch system's ``scancel``, ``kill`` of the rank
processes) gives the full behaviour, and ``mpiexec`` passes the exit code 130/143 through.
"""

from __future__ import annotations

import shlex
import signal
import sys
import threading
from pathlib import Path

__all__ = ["RunInterrupted", "StopSignals", "resume_command"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by SIGINT or SIGTERM.

    Attributes
    ----------
    signum : int
        The signal (SIGTERM when ranks got different ones).
    message : str
        The one line for the user.
    agreed : bool
        True when every rank stopped at the same round boundary (and so may simply exit);
        False for an immediate stop, where other ranks may be inside a collective.
    """

    def __init__(self, signum: int, message: str, agreed: bool) -> None:
        super().__init__(message)
        self.signum, self.message, self.agreed = signum, message, agreed

    @property
    def exit_code(self) -> int:
        """``128 + signum``: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum


def resume_command(run_dir: str | Path, world_size: int) -> str:
    """The command that resumes ``run_dir``.

    >>> resume_command("runs/a b", 1).split(" train ")[1]
    "--resume 'runs/a b'"
    """
    main = sys.argv[0] if sys.argv else ""
    program = "python -m gossip" if main.endswith(("__main__.py", "-c")) or not main else "gossip"
    launcher = f"mpiexec -n {world_size} " if world_size > 1 else ""
    return f"{launcher}{program} train --resume {shlex.quote(str(run_dir))}"


def stopped_line(signum: int, run_dir: Path | None, checkpoint: int | None,
                 world_size: int, *, at: int | None = None) -> str:
    """The line of an interrupted run; ``at`` is the round a checkpoint was just written at.

    >>> stopped_line(2, Path("runs/x"), 4, 1, at=4).split("; ")[0]
    'interrupted by SIGINT after round 4: checkpoint of round 4 written in runs/x'
    """
    name = signal.Signals(signum).name
    if run_dir is None:
        return f"interrupted by {name} before the first round; no round was run"
    if at is not None:
        head = f"interrupted by {name} after round {at}: checkpoint of round {at} written in " \
               f"{run_dir}"
    elif checkpoint is None:
        return f"interrupted by {name}; no checkpoint was written in {run_dir}, so there is " \
               "nothing to resume: start the run again"
    else:
        head = f"interrupted by {name}; the last complete checkpoint is of round {checkpoint} " \
               f"in {run_dir}"
    return f"{head}; resume with: {resume_command(run_dir, world_size)}"


class StopSignals:
    """SIGINT/SIGTERM handlers for one run (a context manager; see the module docstring).

    ``armed`` is set by the loop while rounds run: then the first signal only sets
    ``requested``; otherwise (or for a second signal) the handler raises :class:`RunInterrupted`
    with the line ``describe(signum)`` gives. Outside the main thread it installs nothing.
    """

    def __init__(self) -> None:
        self.requested: int = 0
        self.armed = False
        self.describe = lambda signum: stopped_line(signum, None, None, 1)
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if self.armed and not self.requested:
            self.requested = signum
            return
        raise RunInterrupted(signum, self.describe(signum), agreed=False)

    def flags(self) -> list[float]:
        """``[SIGINT requested, SIGTERM requested]`` as 0/1, to be summed over ranks."""
        return [float(self.requested == signal.SIGINT), float(self.requested == signal.SIGTERM)]


def agreed_signal(summed: list[float]) -> int:
    """The signal every rank stops for, from the summed :meth:`StopSignals.flags` (0: none)."""
    if summed[1] > 0:
        return int(signal.SIGTERM)
    return int(signal.SIGINT) if summed[0] > 0 else 0
