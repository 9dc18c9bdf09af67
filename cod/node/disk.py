"""A disk the node cannot write, recognised wherever it surfaces: full (an OSError ENOSPC or
EDQUOT, SQLite's SQLITE_FULL "database or disk is full") or read-only (EROFS: a file system
remounted read-only, as ext4 does after an I/O error; SQLite's SQLITE_READONLY) or, for a path
in the node's data directory, not writable (EPERM, EACCES: an immutable ``chattr +i`` directory,
another owner), raised itself or as the cause of another error. All are 507 InsufficientStorage:
nothing of the request is kept, what is stored stays readable, and the same request succeeds
once the disk takes writes."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from ..errors import InsufficientStorage

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
READ_ONLY_ERRNOS = frozenset({errno.EROFS})
DENIED_ERRNOS = frozenset({errno.EPERM, errno.EACCES})
SQLITE_FULL = 13  # sqlite3.h: "Insertion failed because database is full"
SQLITE_READONLY = 8  # sqlite3.h: "Attempt to write a readonly database"
SQLITE_IOERR = 10  # sqlite3.h: "Some kind of disk I/O error occurred" (a write on a file system remounted ro)
MAX_CHAIN = 16  # causes followed, at most
FULL, READ_ONLY, NOT_WRITABLE = "full", "read-only", "not writable (permission denied)"
HINT = "free space on the node's disk (or give --data-dir a larger one), then try again"
READ_ONLY_HINT = ("make the node's data directory writable again (a file system turns read-only after an I/O "
                  "error: check the disk, then remount it read-write), then try again; the node serves what it "
                  "stores meanwhile")
NOT_WRITABLE_HINT = ("give the node's user write access to its data directory (`chattr -i` clears an immutable "
                     "flag; check the owner and mode), then try again; the node serves what it stores meanwhile")
HINTS = {FULL: HINT, READ_ONLY: READ_ONLY_HINT, NOT_WRITABLE: NOT_WRITABLE_HINT}


def unwritable(exc: BaseException | None, home: Path | None = None) -> str | None:
    """FULL, READ_ONLY or NOT_WRITABLE when ``exc`` or an exception it was raised from is such a
    disk, else None. NOT_WRITABLE only with ``home`` (the data directory) and for a path in it:
    elsewhere a permission error is no fault of the node's disk (a job's local input, a bug)."""
    for _ in range(MAX_CHAIN):
        if exc is None:
            return None
        if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
            return FULL
        if isinstance(exc, OSError) and exc.errno in READ_ONLY_ERRNOS:
            return READ_ONLY
        if isinstance(exc, OSError) and exc.errno in DENIED_ERRNOS and home is not None and _inside(exc, home):
            return NOT_WRITABLE
        if isinstance(exc, sqlite3.Error):
            code = getattr(exc, "sqlite_errorcode", None)
            if code == SQLITE_FULL or "database or disk is full" in str(exc):
                return FULL
            if code is not None and code & 0xFF == SQLITE_READONLY:  # extended codes keep the primary in the low byte
                return READ_ONLY
            if code is not None and code & 0xFF == SQLITE_IOERR and home is not None and _mounted_read_only(home):
                return READ_ONLY  # SQLite says only "disk I/O error"; the mount says why
        exc = exc.__cause__ or exc.__context__
    return None


def _inside(exc: OSError, home: Path) -> bool:
    """Whether the path ``exc`` names is ``home`` or under it."""
    if not isinstance(exc.filename, (str, bytes)):
        return False
    path = Path(os.path.realpath(os.fsdecode(exc.filename)))
    return path.is_relative_to(Path(os.path.realpath(home)))


def _mounted_read_only(home: Path) -> bool:
    """Whether the file system (or bind mount) holding ``home`` is mounted read-only."""
    try:
        return bool(os.statvfs(home).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def is_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` or an exception it was raised from is a full disk."""
    return unwritable(exc) == FULL


def full(doing: str, why: str = FULL) -> InsufficientStorage:
    """The error of a full (or read-only) disk met while ``doing`` (e.g. "storing the upload")."""
    return InsufficientStorage(f"the node's disk is {why}: it cannot go on {doing}; nothing of it was kept", HINTS[why])
