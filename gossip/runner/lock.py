"""The run folder's lock: one process at a time works in a run folder.

:class:`RunLock` takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``RUN/.lock`` and holds it until
:meth:`RunLock.release` or the process ends (the kernel drops a ``flock`` with its last open
file, also after ``kill -9``, so a crashed run never leaves a stale lock). The file keeps the
holder's pid, for the message a second process gets. Under ``mpiexec`` rank 0 alone holds it
for the run (:meth:`gossip.runner.experiment.Experiment.begin` and ``restore``).

>>> import tempfile
>>> folder = tempfile.mkdtemp()
>>> first = RunLock(folder)
>>> try:
...     RunLock(folder)
... except ConfigError as err:
...     print(str(err).split(";")[0].endswith(f"(pid {os.getpid()})"))
True
>>> first.release()
>>> RunLock(folder).release()
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from gossip.errors import ConfigError
from gossip.runner.atomic import cannot_write

__all__ = ["LOCK_FILE", "RunLock"]

LOCK_FILE = ".lock"


class RunLock:
    """An exclusive lock on a run folder (see the module docstring).

    Raises
    ------
    ConfigError
        Another process holds the lock (one line naming the folder and the holder's pid).
    OutputError
        The lock file cannot be created (a read-only folder).
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise cannot_write(self.path, err, "create the lock file") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            self._fd = -1
            raise ConfigError(
                f"run folder {str(self.path.parent)!r} is in use by another gossip process "
                f"(pid {holder}); wait until it ends (two processes in one run folder would "
                "mix their metrics and checkpoints)") from None
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # a full disk: the lock holds, only the pid for the message is missing

    def release(self) -> None:
        """Drop the lock (the file stays; it is harmless without a holder)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.release()
