"""A full disk, recognised wherever it surfaces: an OSError (ENOSPC, EDQUOT) or SQLite's
SQLITE_FULL ("database or disk is full"), raised itself or as the cause of another error."""

from __future__ import annotations

import errno
import sqlite3

from ..errors import InsufficientStorage

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
SQLITE_FULL = 13  # sqlite3.h: "Insertion failed because database is full"
MAX_CHAIN = 16  # causes followed, at most
HINT = "free space on the node's disk (or give --data-dir a larger one), then try again"


def is_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` or an exception it was raised from is a full disk."""
    for _ in range(MAX_CHAIN):
        if exc is None:
            return False
        if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
            return True
        if isinstance(exc, sqlite3.Error) and (getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL
                                               or "database or disk is full" in str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def full(doing: str) -> InsufficientStorage:
    """The error of a full disk met while ``doing`` (e.g. "storing the upload")."""
    return InsufficientStorage(f"the node's disk is full: it cannot go on {doing}; nothing of it was kept", HINT)
