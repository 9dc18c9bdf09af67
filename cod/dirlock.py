"""One process per directory: an exclusive lock on ``DIR/cod.lock``, held for the process's life.

A node's data directory (`cod serve --data-dir`) and a devstack's base directory (`cod devstack
--base-dir`) each belong to one process: two nodes on one data dir would share a key (the same
node ID on two ports), one SQLite database and one results directory. The lock is a
``flock(LOCK_EX | LOCK_NB)`` on a file in the directory; the kernel drops it when the process
ends, even by SIGKILL, so a killed node never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import LocalPathError

LOCK_FILE = "cod.lock"


class DirLock:
    """The lock of one directory, held until :meth:`release` (or the process ends)."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def take(cls, directory: Path, what: str, option: str) -> "DirLock":
        """Lock ``directory`` (which must exist) for this process; raises LocalPathError when
        another process (or another holder in this one) has it, naming ``what`` and ``option``."""
        path = directory / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise LocalPathError(f"cannot lock {what} {str(directory)!r}: {exc.strerror}",
                                 f"give {option} a directory you can write") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise LocalPathError(f"{what} {str(directory)!r} is in use by another cod process",
                                 f"stop that process first, or give this one another {option}") from None
        return cls(fd, path)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor of the open file drops the flock
            self._fd = None
