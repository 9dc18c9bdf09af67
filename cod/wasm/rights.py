"""Per-fd rights of preview1 (SPEC 4.5): which rights an fd can hold, and the errno of a missing one.

Every fd holds a base set (the operations allowed on it) and an inheriting set (the most an fd
opened through it may hold). Rights that do not apply to what an fd names are never held: a
directory holds only DIRECTORY, a regular file only FILE, so a directory never has ``fd_seek``
or ``fd_filestat_set_size``. Rights can be dropped (``fd_fdstat_set_rights``), never added.
"""

from __future__ import annotations

from . import abi

FILE = (abi.RIGHT_FD_DATASYNC | abi.RIGHT_FD_READ | abi.RIGHT_FD_SEEK | abi.RIGHT_FD_FDSTAT_SET_FLAGS
        | abi.RIGHT_FD_SYNC | abi.RIGHT_FD_TELL | abi.RIGHT_FD_WRITE | abi.RIGHT_FD_ADVISE | abi.RIGHT_FD_ALLOCATE
        | abi.RIGHT_FD_FILESTAT_GET | abi.RIGHT_FD_FILESTAT_SET_SIZE | abi.RIGHT_FD_FILESTAT_SET_TIMES
        | abi.RIGHT_POLL_FD_READWRITE)
"""The rights that apply to a regular file."""

DIRECTORY = (abi.RIGHT_FD_DATASYNC | abi.RIGHT_FD_FDSTAT_SET_FLAGS | abi.RIGHT_FD_SYNC | abi.RIGHT_FD_ADVISE
             | abi.RIGHT_PATH_CREATE_DIRECTORY | abi.RIGHT_PATH_CREATE_FILE | abi.RIGHT_PATH_LINK_SOURCE
             | abi.RIGHT_PATH_LINK_TARGET | abi.RIGHT_PATH_OPEN | abi.RIGHT_FD_READDIR | abi.RIGHT_PATH_READLINK
             | abi.RIGHT_PATH_RENAME_SOURCE | abi.RIGHT_PATH_RENAME_TARGET | abi.RIGHT_PATH_FILESTAT_GET
             | abi.RIGHT_PATH_FILESTAT_SET_SIZE | abi.RIGHT_PATH_FILESTAT_SET_TIMES | abi.RIGHT_FD_FILESTAT_GET
             | abi.RIGHT_FD_FILESTAT_SET_TIMES | abi.RIGHT_PATH_SYMLINK | abi.RIGHT_PATH_REMOVE_DIRECTORY
             | abi.RIGHT_PATH_UNLINK_FILE)
"""The rights that apply to a directory: every ``path_*`` right, ``fd_readdir``, and the ``fd_*``
rights whose functions work on a directory (sync, datasync, advise, fdstat_set_flags, filestat
get and set_times)."""

PREOPEN_BASE = DIRECTORY
PREOPEN_INHERITING = DIRECTORY | FILE
"""A preopened mount (input or output) starts with every directory right, and can hand every
file and directory right on: the sets of SPEC 4.5 (inputs refuse writes with EROFS, not by rights)."""

_STREAM = (abi.RIGHT_FD_DATASYNC | abi.RIGHT_FD_FDSTAT_SET_FLAGS | abi.RIGHT_FD_SYNC | abi.RIGHT_FD_ADVISE
           | abi.RIGHT_FD_FILESTAT_GET | abi.RIGHT_POLL_FD_READWRITE)
STDIN = _STREAM | abi.RIGHT_FD_READ
STDOUT = _STREAM | abi.RIGHT_FD_WRITE
"""stdin reads, stdout and stderr write; none seeks (they are not seekable), sizes or sets times.
Their inheriting set is empty."""

ACCESS = abi.RIGHT_FD_READ | abi.RIGHT_FD_WRITE


def missing(held: int, needed: int) -> int | None:
    """The errno when an fd holding ``held`` is used for an operation needing ``needed``, else
    None: EBADF when ``fd_read`` or ``fd_write`` is missing (POSIX's answer for a file not open for
    reading or writing, and wasmtime's), ENOTCAPABLE for any other right (preview1's errno)."""
    lacking = needed & ~held
    if not lacking:
        return None
    return abi.EBADF if lacking & ACCESS else abi.ENOTCAPABLE
