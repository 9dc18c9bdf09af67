"""Numbers of the wasi_snapshot_preview1 ABI that cod's WASI layer uses."""

from __future__ import annotations

import errno as host_errno

MODULE = "wasi_snapshot_preview1"

# errno
SUCCESS = 0
E2BIG = 1
EACCES = 2
EBADF = 8
EEXIST = 20
EFAULT = 21
EFBIG = 22
EILSEQ = 25
EINVAL = 28
EIO = 29
EISDIR = 31
ELOOP = 32
EMFILE = 33
EMLINK = 34
ENAMETOOLONG = 37
ENOENT = 44
ENOSPC = 51
ENOSYS = 52
ENOTDIR = 54
ENOTEMPTY = 55
ENOTSOCK = 57
ENOTSUP = 58
EOVERFLOW = 61
EPERM = 63
EROFS = 69
ESPIPE = 70
EXDEV = 75
ENOTCAPABLE = 76

# filetype
FILETYPE_UNKNOWN = 0
FILETYPE_CHARACTER_DEVICE = 2
FILETYPE_DIRECTORY = 3
FILETYPE_REGULAR_FILE = 4
FILETYPE_SYMBOLIC_LINK = 7

# clocks
CLOCK_REALTIME = 0
CLOCK_MONOTONIC = 1
CLOCK_PROCESS_CPUTIME = 2
CLOCK_THREAD_CPUTIME = 3
CLOCKS = (CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME, CLOCK_THREAD_CPUTIME)

# whence
WHENCE_SET = 0
WHENCE_CUR = 1
WHENCE_END = 2

# oflags
O_CREAT = 1
O_DIRECTORY = 2
O_EXCL = 4
O_TRUNC = 8

# fdflags
FDFLAG_APPEND = 1

# lookupflags
LOOKUP_SYMLINK_FOLLOW = 1

# rights (preview1's bit numbers)
RIGHT_FD_DATASYNC = 1 << 0
RIGHT_FD_READ = 1 << 1
RIGHT_FD_SEEK = 1 << 2
RIGHT_FD_FDSTAT_SET_FLAGS = 1 << 3
RIGHT_FD_SYNC = 1 << 4
RIGHT_FD_TELL = 1 << 5
RIGHT_FD_WRITE = 1 << 6
RIGHT_FD_ADVISE = 1 << 7
RIGHT_FD_ALLOCATE = 1 << 8
RIGHT_PATH_CREATE_DIRECTORY = 1 << 9
RIGHT_PATH_CREATE_FILE = 1 << 10
RIGHT_PATH_LINK_SOURCE = 1 << 11
RIGHT_PATH_LINK_TARGET = 1 << 12
RIGHT_PATH_OPEN = 1 << 13
RIGHT_FD_READDIR = 1 << 14
RIGHT_PATH_READLINK = 1 << 15
RIGHT_PATH_RENAME_SOURCE = 1 << 16
RIGHT_PATH_RENAME_TARGET = 1 << 17
RIGHT_PATH_FILESTAT_GET = 1 << 18
RIGHT_PATH_FILESTAT_SET_SIZE = 1 << 19
RIGHT_PATH_FILESTAT_SET_TIMES = 1 << 20
RIGHT_FD_FILESTAT_GET = 1 << 21
RIGHT_FD_FILESTAT_SET_SIZE = 1 << 22
RIGHT_FD_FILESTAT_SET_TIMES = 1 << 23
RIGHT_PATH_SYMLINK = 1 << 24
RIGHT_PATH_REMOVE_DIRECTORY = 1 << 25
RIGHT_PATH_UNLINK_FILE = 1 << 26
RIGHT_POLL_FD_READWRITE = 1 << 27
RIGHT_SOCK_SHUTDOWN = 1 << 28
RIGHT_SOCK_ACCEPT = 1 << 29
RIGHTS_ALL = (1 << 30) - 1

# fstflags
FST_ATIM = 1
FST_ATIM_NOW = 2
FST_MTIM = 4
FST_MTIM_NOW = 8

# events and subscriptions
EVENTTYPE_CLOCK = 0
EVENTTYPE_FD_READ = 1
EVENTTYPE_FD_WRITE = 2
SUBCLOCKFLAG_ABSTIME = 1
SUBSCRIPTION_SIZE = 48
EVENT_SIZE = 32

# sizes of structs
FILESTAT_SIZE = 64
FDSTAT_SIZE = 24
DIRENT_HEADER_SIZE = 24

# host errno -> WASI errno, for errors that the job's own actions cause. cod decides these
# virtually before asking the host wherever it can; the mapping is a backstop. Every other
# host errno is the host's fault and never reaches a job (the run is Indeterminate).
FROM_HOST = {
    host_errno.ENOENT: ENOENT,
    host_errno.EEXIST: EEXIST,
    host_errno.ENOTDIR: ENOTDIR,
    host_errno.EISDIR: EISDIR,
    host_errno.ENOTEMPTY: ENOTEMPTY,
    host_errno.EINVAL: EINVAL,
    host_errno.ELOOP: ELOOP,
    host_errno.EXDEV: EXDEV,
    host_errno.EBADF: EBADF,
}

# host errors that depend on the machine, not on the job: never shown to a job. Permissions
# are virtual (a host EACCES/EPERM means the node's own files are unreadable), and so are the
# limits on names, paths and file sizes (a host ENAMETOOLONG/EFBIG means a host limit spoke).
HOST_FAULTS = frozenset({host_errno.ENOSPC, host_errno.EDQUOT, host_errno.EIO, host_errno.EMFILE,
                         host_errno.ENFILE, host_errno.ENOMEM, host_errno.EROFS, host_errno.EACCES,
                         host_errno.EPERM, host_errno.ENAMETOOLONG, host_errno.EFBIG})
