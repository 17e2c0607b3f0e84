"""Durable file writes: a file is either its old content or its new one, never half of each.

:func:`write_atomic` writes into a temporary file next to the target (``.NAME.tmp-PID``),
``fsync``s it, renames it over the target and ``fsync``s the folder (so the rename itself
survives a power cut); when any step fails (full disk, read-only file system) the temporary
file is removed and :class:`~gossip.errors.OutputError` says which file and why, in one line.
:class:`AppendLog` appends whole lines the same way: one ``write`` of the full line, ``fsync``,
and on failure the file is cut back to its last complete line.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> write_atomic(folder / "a.txt", b"one\\n")
>>> (folder / "a.txt").read_text(), sorted(p.name for p in folder.iterdir())
('one\\n', ['a.txt'])
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from gossip.errors import OutputError

__all__ = ["AppendLog", "cannot_write", "fsync_dir", "save_figure", "temp_path",
           "write_atomic"]


def cannot_write(path: str | Path, err: OSError, what: str = "write") -> OutputError:
    """The one-line error for an OSError met while writing ``path``: ``cannot write
    '/x/y': No space left on device (ENOSPC)``."""
    code = errno.errorcode.get(err.errno or 0)
    reason = err.strerror or type(err).__name__
    if isinstance(err, FileExistsError | NotADirectoryError):
        blocker = next((p for p in [Path(path), *Path(path).parents] if p.is_file()), None)
        if blocker is not None:
            reason, code = f"{str(blocker)!r} is a file, not a folder", None
    return OutputError(f"cannot {what} {str(path)!r}: {reason}" + (f" ({code})" if code else ""))


def temp_path(path: Path) -> Path:
    """The temporary file :func:`write_atomic` uses for ``path``: ``.NAME.tmp-PID``."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def fsync_dir(folder: Path) -> None:
    """``fsync`` a folder, so that a rename inside it is durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | Path, data: bytes | Callable[[BinaryIO], None]) -> None:
    """Replace ``path`` by ``data`` (bytes, or a function writing into a binary file) atomically.

    Raises
    ------
    OutputError
        The file cannot be written (the temporary file is removed first).
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as err:
        _remove(tmp)
        raise cannot_write(path, err) from None
    except BaseException:
        _remove(tmp)
        raise


def save_figure(figure, path: str | Path, **savefig: object) -> Path:
    """``figure.savefig`` (a matplotlib figure) into ``path`` through :func:`write_atomic`: a
    reader never sees half a PNG, an old figure stays whole until the new one replaces it, and
    when drawing or writing fails the temporary file is removed (OutputError for an OSError).

    The temporary name has no suffix, so the format is named from ``path``'s (``.png`` ->
    ``"png"``); a ``path`` without one gets ``.png``, as ``savefig`` does by default. Returns
    the path written."""
    path = Path(path)
    if not path.suffix:
        path = path.with_name(f"{path.name}.png")
    kind = path.suffix[1:].lower()
    write_atomic(path, lambda f: figure.savefig(f, format=kind, **savefig))
    return path


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass  # the folder itself became unwritable: nothing more can be done


class AppendLog:
    """A file of lines, appended one whole line at a time.

    ``AppendLog(path, lines)`` replaces ``path`` atomically by ``lines`` (so a resumed run
    starts from exactly the records of its checkpoint, dropping a line a crash cut short), then
    :meth:`append` adds lines: each is one ``os.write`` of the full line in append mode, then
    ``fsync``. When a write fails the file is truncated back to its last complete line and
    :class:`~gossip.errors.OutputError` is raised, so a reader never meets half a record.
    """

    def __init__(self, path: str | Path, lines: list[str] | None = None) -> None:
        self.path = Path(path)
        self._fd = -1
        write_atomic(self.path, "".join(f"{line}\n" for line in lines or []).encode())
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            self._size = os.fstat(self._fd).st_size
        except OSError as err:
            raise cannot_write(self.path, err, "open") from None

    def append(self, line: str) -> None:
        """Append ``line`` and a newline durably (see the class docstring)."""
        data = f"{line}\n".encode()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
        except OSError as err:
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                pass
            raise cannot_write(self.path, err) from None
        self._size += len(data)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
