"""The virtual file system a job sees: read-only input mounts and one writable output dir.

Every path a job names is resolved here, one component at a time, inside the mount it
starts from: an absolute path, a ``..`` above the mount root or a symlink whose target
would leave the mount is refused (ENOTCAPABLE). Symlinks in inputs are followed virtually
(their targets are read, never handed to the host), in the output mount too, where a job may
make symlinks and hard links. Nothing the host would add leaks: directory entries come sorted
by name bytes, timestamps are the spec's epoch (or what the job set, kept by
:mod:`cod.wasm.times`), inode numbers are derived from the virtual path (a hard link shares its
source's), the device is 0 and the link count is 1 but for the names path_link gave a file,
counted virtually.

Every limit is virtual and checked before the host is asked (see :mod:`cod.limits`): file
positions live in the handle, never in the host's file description, and all host I/O is
positional and loops over short transfers, so no host's maximum file size, IOV_MAX, PATH_MAX
or partial transfer can decide an outcome. Permissions are virtual too: inputs are
read-only, outputs read-write, and everything a job creates gets mode 0644 (files) or 0755
(directories) whatever the process umask is.

Host errors that depend on the machine (disk full, I/O error, a host permission, a host
limit) are raised as Indeterminate: a job never sees them, and a run that meets one produces
no result.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import Indeterminate, OutputLimitExceeded
from ..limits import MAX_NAME_BYTES, MAX_PATH_BYTES, MAX_SYMLINK_HOPS, MAX_TREE_DEPTH
from . import abi

MAX_OPEN_FDS = 256
MAX_OUTPUT_ENTRIES = 100_000  # files and directories a job may create: past it, ENOSPC
MAX_LINKS = 1000
"""Most names one file of the output mount may have (path_link past it: EMLINK), below every
host's own limit (ext4: 65000), so no host limit decides an outcome."""
MAX_IO_BYTES = 1 << 30
"""Most bytes one fd_read/fd_write/fd_pread/fd_pwrite call transfers: the first MAX_IO_BYTES
bytes of its iovecs, below every host's cap on one transfer (Linux: 0x7ffff000)."""
MAX_OUTPUT_COMPONENTS = MAX_TREE_DEPTH - 1
"""Most components of an entry under the output mount: ``outputs/`` is itself at depth 1 of
the results directory, whose entries may be MAX_TREE_DEPTH deep."""
HOST_IOV_BATCH = 16
"""Most buffers handed to one host preadv/pwritev: POSIX's smallest allowed IOV_MAX, so no host's
IOV_MAX can refuse a transfer cod accepted."""
FILE_MODE = 0o644
DIR_MODE = 0o755


class Errno(Exception):
    """A WASI errno for the job: raised inside the VFS, returned by the WASI layer."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def host_error(exc: OSError) -> Exception:
    """Turn a host OSError into the job's errno, or Indeterminate when the host is at fault."""
    if exc.errno in abi.HOST_FAULTS or exc.errno not in abi.FROM_HOST:
        return Indeterminate("host-io", f"host file system error {exc.errno} ({exc.strerror})")
    return Errno(abi.FROM_HOST[exc.errno])


@dataclass(frozen=True)
class Mount:
    """A host directory seen by the job at ``path``.

    ``files`` makes a directory of single-file inputs (SPEC 4.6): ``host`` is then an empty
    directory and each (name, host file) pair an entry of it, the only entries it has.
    """

    path: str
    host: bytes
    writable: bool
    files: tuple[tuple[bytes, bytes], ...] = ()

    def host_path(self, comps: tuple[bytes, ...]) -> bytes:
        if not comps:
            return self.host
        for name, host_file in self.files:
            if comps[0] == name:
                return os.path.join(host_file, *comps[1:]) if len(comps) > 1 else host_file
        return os.path.join(self.host, *comps)

    def virtual_path(self, comps: tuple[bytes, ...]) -> bytes:
        """The path the job names: mount path + ``/``-joined components; a mount at ``/``
        gives ``/`` + ``/``-joined components (never ``//``)."""
        if self.path == "/":
            return b"/" + b"/".join(comps)
        return b"/".join((self.path.encode(), *comps))


@dataclass
class Budget:
    """A byte cap: writes that would take ``used`` past ``limit`` end the run."""

    name: str
    limit: int
    used: int = 0

    def grow(self, n: int) -> None:
        if n > 0:
            if self.used + n > self.limit:
                raise OutputLimitExceeded(self.name, self.limit)
            self.used += n


@dataclass
class Handle:
    """An open file description: what an fd refers to."""

    filetype: int
    mount: Mount | None = None
    comps: tuple[bytes, ...] = ()
    host_fd: int | None = None
    rights: int = 0  # the base rights (SPEC 4.5): what the fd may be used for
    inheriting: int = 0  # the most an fd opened through this one may hold
    append: bool = False
    kept_flags: int = 0  # fdflags other than APPEND given at open: reported, without effect
    stream: str | None = None  # "stdin", "stdout", "stderr"
    position: int = 0  # the virtual file position: the host's lseek position is never used
    listing: list[tuple[bytes, int, int]] | None = field(default=None, repr=False)

    @property
    def readable(self) -> bool:
        return bool(self.rights & abi.RIGHT_FD_READ)

    @property
    def writable(self) -> bool:
        return bool(self.rights & abi.RIGHT_FD_WRITE)


def inode(virtual: bytes) -> int:
    """Inode number: the first 8 bytes (little-endian) of SHA-256 of the virtual path."""
    return int.from_bytes(hashlib.sha256(virtual).digest()[:8], "little")


def filetype_of(mode: int) -> int:
    if stat.S_ISDIR(mode):
        return abi.FILETYPE_DIRECTORY
    if stat.S_ISREG(mode):
        return abi.FILETYPE_REGULAR_FILE
    if stat.S_ISLNK(mode):
        return abi.FILETYPE_SYMBOLIC_LINK
    return abi.FILETYPE_UNKNOWN


def readlink(path: bytes) -> bytes:
    try:
        return os.readlink(path)
    except OSError as exc:
        raise host_error(exc) from exc


def _lstat(path: bytes) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise host_error(exc) from exc


class FileSystem:
    """Mounts, path resolution and the byte budget of outputs/."""

    def __init__(self, mounts: list[Mount], output_limit: int) -> None:
        """Raises Indeterminate when a writable mount's mode cannot be set."""
        self.mounts = sorted(mounts, key=lambda m: m.path.encode())
        self.outputs = Budget("output", output_limit)
        self.created = 0
        self.links: dict[tuple[int, int], list[int]] = {}
        """Files of the output mount that have more than one name (path_link): host identity
        (st_dev, st_ino) -> [virtual inode number, virtual link count]."""
        for mount in self.mounts:
            if mount.writable:  # made by the executor under the process umask
                try:
                    os.chmod(mount.host, DIR_MODE)
                except OSError as exc:
                    raise host_error(exc) from exc

    # -- resolution ---------------------------------------------------------------------
    def resolve(
        self, mount: Mount, base: tuple[bytes, ...], path: bytes, follow: bool
    ) -> tuple[tuple[bytes, ...], os.stat_result | None]:
        """Resolve ``path`` from directory ``base`` of ``mount``.

        Returns the components of the final entry and its lstat (None when the final entry
        does not exist; every directory before it does). Raises Errno.
        """
        comps, info, _ = self.resolve_named(mount, base, path, follow)
        return comps, info

    def resolve_named(
        self, mount: Mount, base: tuple[bytes, ...], path: bytes, follow: bool
    ) -> tuple[tuple[bytes, ...], os.stat_result | None, bool]:
        """:meth:`resolve`, and whether the final entry was named with a trailing slash, by
        ``path`` or by the target of a link followed to it: only a directory may be made at a
        missing entry named so (open(2) with O_CREAT: EISDIR)."""
        if b"\x00" in path:
            raise Errno(abi.EINVAL)
        if path.startswith(b"/"):
            raise Errno(abi.ENOTCAPABLE)
        if len(mount.virtual_path(base + (path,))) > MAX_PATH_BYTES:  # the directory's path + "/" + path
            raise Errno(abi.ENAMETOOLONG)
        if base:
            self.check_dir(mount, base)
        hops = [0]
        comps, info, dir_only = self._walk(mount, list(base), path, follow, hops, len(base))
        if len(mount.virtual_path(comps)) > MAX_PATH_BYTES:
            raise Errno(abi.ENAMETOOLONG)
        return comps, info, dir_only

    def _walk(
        self, mount: Mount, comps: list[bytes], path: bytes, follow: bool, hops: list[int], floor: int
    ) -> tuple[tuple[bytes, ...], os.stat_result | None, bool]:
        """Walk ``path`` from ``comps``; a ``..`` may not go above the directory fd (the first
        ``floor`` components), as in preview1's capability model: ENOTCAPABLE. The third value:
        the entry was named with a trailing slash (only a directory may be made there)."""
        parts = [p for p in path.split(b"/") if p not in (b"", b".")]
        must_be_dir = path.endswith(b"/")
        info: os.stat_result | None = _lstat(mount.host_path(tuple(comps))) if not parts else None
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if part == b"..":
                if len(comps) <= floor:
                    raise Errno(abi.ENOTCAPABLE)
                comps.pop()
                info = _lstat(mount.host_path(tuple(comps)))
                continue
            if len(part) > MAX_NAME_BYTES:
                raise Errno(abi.ENAMETOOLONG)
            comps.append(part)
            info = _lstat(mount.host_path(tuple(comps)))
            if info is None:
                if not last:
                    raise Errno(abi.ENOENT)
                return tuple(comps), None, must_be_dir
            if stat.S_ISLNK(info.st_mode) and (follow or not last or must_be_dir):
                hops[0] += 1
                if hops[0] > MAX_SYMLINK_HOPS:
                    raise Errno(abi.ELOOP)
                target = readlink(mount.host_path(tuple(comps)))
                if target.startswith(b"/"):
                    raise Errno(abi.ENOTCAPABLE)  # an absolute target names the host's tree
                comps.pop()
                resolved, info, dir_only = self._walk(mount, comps, target, True, hops, floor)
                comps = list(resolved)
                if info is None:
                    if not last:
                        raise Errno(abi.ENOENT)
                    return tuple(comps), None, dir_only or must_be_dir
            if not last and not stat.S_ISDIR(info.st_mode):
                raise Errno(abi.ENOTDIR)
        if must_be_dir and info is not None and not stat.S_ISDIR(info.st_mode):
            raise Errno(abi.ENOTDIR)
        return tuple(comps), info, must_be_dir

    @staticmethod
    def check_dir(mount: Mount, comps: tuple[bytes, ...]) -> os.stat_result:
        """The lstat of the directory a directory fd names, checking that every component of
        its path is still a real directory: a fd names a path (SPEC 4.5), and after the job
        renamed it away and put a symlink there, the host must never be led through that link.
        ENOENT when the path no longer names a real directory."""
        info = _lstat(mount.host_path(()))
        for n in range(1, len(comps) + 1):
            info = _lstat(mount.host_path(comps[:n]))
            if info is None or not stat.S_ISDIR(info.st_mode):
                raise Errno(abi.ENOENT)
        if info is None:
            raise Errno(abi.ENOENT)
        return info

    # -- metadata -----------------------------------------------------------------------
    def ino(self, mount: Mount, comps: tuple[bytes, ...], info: os.stat_result) -> int:
        """The inode number of the entry at ``comps``: derived from its virtual path, or, for a
        file of the output mount with several names, the number its first name had."""
        known = self.links.get((info.st_dev, info.st_ino)) if mount.writable else None
        return known[0] if known is not None else inode(mount.virtual_path(comps))

    def nlink(self, mount: Mount, info: os.stat_result) -> int:
        """The link count: the names path_link gave a file of the output mount, else 1."""
        known = self.links.get((info.st_dev, info.st_ino)) if mount.writable else None
        return known[1] if known is not None else 1

    def fd_nlink(self, handle: Handle) -> int:
        """The link count of an open file (how many times its bytes are in the results)."""
        assert handle.host_fd is not None and handle.mount is not None
        if not self.links:
            return 1
        try:
            return self.nlink(handle.mount, os.fstat(handle.host_fd))
        except OSError as exc:
            raise host_error(exc) from exc

    def check_link(self, mount: Mount, info: os.stat_result) -> None:
        """The entry of lstat ``info`` may get one more name: EMLINK at MAX_LINKS names."""
        if self.nlink(mount, info) >= MAX_LINKS:
            raise Errno(abi.EMLINK)

    def add_link(self, mount: Mount, comps: tuple[bytes, ...], info: os.stat_result) -> None:
        """The entry at ``comps`` (lstat ``info``) got one more name."""
        key = (info.st_dev, info.st_ino)
        known = self.links.setdefault(key, [self.ino(mount, comps, info), 1])
        known[1] += 1

    def drop_name(self, info: os.stat_result) -> None:
        """A name of the entry of lstat ``info`` was removed (unlinked or renamed over); its
        last name gone, the host may reuse its inode, so its record goes."""
        key = (info.st_dev, info.st_ino)
        known = self.links.get(key)
        if known is not None:
            known[1] -= 1
            if known[1] <= 0:
                del self.links[key]

    def listing(self, mount: Mount, comps: tuple[bytes, ...]) -> list[tuple[bytes, int, int]]:
        """``.``, ``..`` and the entries of a directory sorted by name bytes: (name, ino, type)."""
        self.check_dir(mount, comps)
        here = mount.virtual_path(comps)
        parent = mount.virtual_path(comps[:-1]) if comps else here
        try:
            names = os.listdir(mount.host_path(comps))
        except OSError as exc:
            raise host_error(exc) from exc
        if not comps and mount.files:
            names = list({*names, *(name for name, _ in mount.files)})
        names.sort()
        out = [(b".", inode(here), abi.FILETYPE_DIRECTORY), (b"..", inode(parent), abi.FILETYPE_DIRECTORY)]
        for name in names:
            info = _lstat(mount.host_path(comps + (name,)))
            if info is None:
                continue
            out.append((name, self.ino(mount, comps + (name,), info), filetype_of(info.st_mode)))
        return out

    def size(self, handle: Handle) -> int:
        """The current size of an open regular file (the bytes written through cod)."""
        assert handle.host_fd is not None
        try:
            return os.fstat(handle.host_fd).st_size
        except OSError as exc:
            raise host_error(exc) from exc

    def count_new_entry(self) -> None:
        """Every file or directory a job creates counts; past the cap the job gets ENOSPC."""
        if self.created >= MAX_OUTPUT_ENTRIES:
            raise Errno(abi.ENOSPC)
        self.created += 1

    @staticmethod
    def check_new_name(comps: tuple[bytes, ...]) -> None:
        """Decide whether a job may create an entry at ``comps`` of the output mount.

        The mount root exists already (EEXIST); deeper than MAX_OUTPUT_COMPONENTS is
        ENAMETOOLONG (the results tree must stay importable); a name that is not UTF-8 is
        EILSEQ (UnixFS names are strings). The virtual path length was checked by resolve.
        """
        if not comps:
            raise Errno(abi.EEXIST)
        if len(comps) > MAX_OUTPUT_COMPONENTS:
            raise Errno(abi.ENAMETOOLONG)
        try:
            comps[-1].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Errno(abi.EILSEQ) from exc

    @staticmethod
    def check_move(mount: Mount, old: tuple[bytes, ...], new: tuple[bytes, ...]) -> None:
        """Decide whether directory ``old`` may move to ``new`` under the virtual limits.

        Every entry of the moved subtree must stay within MAX_OUTPUT_COMPONENTS components
        and MAX_PATH_BYTES of virtual path at its new place (ENAMETOOLONG); a directory
        cannot move into itself (EINVAL).
        """
        if new[: len(old)] == old:
            raise Errno(abi.EINVAL)
        depth, suffix = subtree_extent(mount.host_path(old))
        if len(new) + depth > MAX_OUTPUT_COMPONENTS:
            raise Errno(abi.ENAMETOOLONG)
        if len(mount.virtual_path(new)) + suffix > MAX_PATH_BYTES:
            raise Errno(abi.ENAMETOOLONG)

    @staticmethod
    def is_empty_dir(mount: Mount, comps: tuple[bytes, ...]) -> bool:
        try:
            with os.scandir(mount.host_path(comps)) as entries:
                return next(entries, None) is None
        except OSError as exc:
            raise host_error(exc) from exc


def subtree_extent(root: bytes) -> tuple[int, int]:
    """(deepest entry in components, longest ``/``-prefixed relative path in bytes) below ``root``.

    Iterative, so no tree depth can reach Python's recursion limit; (0, 0) for an empty
    directory.
    """
    deepest = longest = 0
    stack: list[tuple[bytes, bytes, int]] = [(root, b"", 0)]
    try:
        while stack:
            host, rel, depth = stack.pop()
            with os.scandir(host) as entries:
                for entry in entries:
                    name = entry.name
                    assert isinstance(name, bytes)
                    sub = rel + b"/" + name
                    deepest = max(deepest, depth + 1)
                    longest = max(longest, len(sub))
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((os.path.join(host, name), sub, depth + 1))
    except OSError as exc:
        raise host_error(exc) from exc
    return deepest, longest


def create_file(path: bytes) -> int:
    """Create a new regular file for reading and writing, mode FILE_MODE whatever the umask."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        raise host_error(exc) from exc
    try:
        os.fchmod(fd, FILE_MODE)
    except OSError as exc:
        os.close(fd)
        raise host_error(exc) from exc
    return fd


def check_link_target(target: bytes) -> None:
    """Decide whether a job may create a symlink holding ``target`` (SPEC 4.5): a symlink's
    target is bytes, checked only as far as the results must hold it. NUL: EINVAL; empty:
    ENOENT (symlinkat); absolute: EPERM (as wasmtime: it names the host's tree); longer
    than MAX_PATH_BYTES: ENAMETOOLONG (the importer's limit); not UTF-8: EILSEQ (UnixFS
    importers read a target as text). A target climbing out of the mount is allowed: it is
    refused when followed."""
    if b"\x00" in target:
        raise Errno(abi.EINVAL)
    if not target:
        raise Errno(abi.ENOENT)
    if target.startswith(b"/"):
        raise Errno(abi.EPERM)
    if len(target) > MAX_PATH_BYTES:
        raise Errno(abi.ENAMETOOLONG)
    try:
        target.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Errno(abi.EILSEQ) from exc


def create_symlink(target: bytes, path: bytes) -> None:
    try:
        os.symlink(target, path)
    except OSError as exc:
        raise host_error(exc) from exc


def create_link(old: bytes, new: bytes) -> None:
    """A hard link ``new`` to ``old``; a symlink ``old`` is linked itself, never followed."""
    try:
        os.link(old, new, follow_symlinks=False)
    except OSError as exc:
        raise host_error(exc) from exc


def create_dir(path: bytes) -> None:
    """Create a directory of mode DIR_MODE whatever the umask."""
    try:
        os.mkdir(path, DIR_MODE)
        os.chmod(path, DIR_MODE)
    except OSError as exc:
        raise host_error(exc) from exc


def clip(bufs: list[memoryview], limit: int) -> list[memoryview]:
    """The first ``limit`` bytes of ``bufs``, as buffers; empty buffers are dropped."""
    out: list[memoryview] = []
    for buf in bufs:
        if limit <= 0:
            break
        if len(buf):
            out.append(buf[:limit])
            limit -= len(out[-1])
    return out


def _advance(bufs: list[memoryview], n: int) -> list[memoryview]:
    while n and bufs:
        if n >= len(bufs[0]):
            n -= len(bufs[0])
            bufs = bufs[1:]
        else:
            bufs = [bufs[0][n:], *bufs[1:]]
            n = 0
    return bufs


def read_at(host_fd: int, bufs: list[memoryview], offset: int) -> int:
    """Fill ``bufs`` from ``offset`` until they are full or the file ends; returns the count.

    Loops over short host reads, so the count depends only on the file's content and size.
    """
    done = 0
    pending = [b for b in bufs if len(b)]
    try:
        while pending:
            batch = pending[:HOST_IOV_BATCH]
            n = os.preadv(host_fd, batch, offset + done)
            if n == 0:
                break
            done += n
            pending = pending[len(batch):] if n == sum(map(len, batch)) else _advance(pending, n)
    except OSError as exc:
        raise host_error(exc) from exc
    return done


def write_at(host_fd: int, bufs: list[memoryview], offset: int) -> int:
    """Write all of ``bufs`` at ``offset``, looping over short host writes; returns the count."""
    done = 0
    pending = [b for b in bufs if len(b)]
    try:
        while pending:
            batch = pending[:HOST_IOV_BATCH]
            n = os.pwritev(host_fd, batch, offset + done)
            if n <= 0:
                raise Indeterminate("host-io", "the host file system accepted no bytes of a write")
            done += n
            pending = pending[len(batch):] if n == sum(map(len, batch)) else _advance(pending, n)
    except OSError as exc:
        raise host_error(exc) from exc
    return done


def iter_iovecs(raw: memoryview, ptr: int, count: int) -> Iterator[tuple[int, int]]:
    """(buf, len) pairs of an iovec array in guest memory (the caller checks MAX_IOVECS)."""
    for i in range(count):
        base = ptr + 8 * i
        yield (int.from_bytes(raw[base : base + 4], "little"), int.from_bytes(raw[base + 4 : base + 8], "little"))
