"""The virtual file system a job sees: read-only input mounts and one writable output dir.

Every path a job names is resolved here, one component at a time, inside the mount it
starts from: an absolute path, a ``..`` above the mount root or a symlink whose target
would leave the mount is refused (ENOTCAPABLE). Symlinks in inputs are followed virtually
(their targets are read, never handed to the host). Nothing the host would add leaks:
directory entries come sorted by name bytes, timestamps are the spec's epoch, inode numbers
are derived from the virtual path, the device is 0 and the link count 1.

Host errors that depend on the machine (disk full, I/O error) are raised as Indeterminate:
a job never sees them, and a run that meets one produces no result.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import Indeterminate, OutputLimitExceeded
from . import abi

MAX_SYMLINK_HOPS = 32
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 1024
MAX_OPEN_FDS = 256
MAX_OUTPUT_ENTRIES = 100_000  # files and directories a job may create: past it, ENOSPC


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
    """A host directory seen by the job at ``path``."""

    path: str
    host: bytes
    writable: bool

    def host_path(self, comps: tuple[bytes, ...]) -> bytes:
        return os.path.join(self.host, *comps) if comps else self.host

    def virtual_path(self, comps: tuple[bytes, ...]) -> bytes:
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
    readable: bool = True
    writable: bool = False
    append: bool = False
    stream: str | None = None  # "stdin", "stdout", "stderr"
    listing: list[tuple[bytes, int, int]] | None = field(default=None, repr=False)


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
        self.mounts = sorted(mounts, key=lambda m: m.path.encode())
        self.outputs = Budget("output", output_limit)
        self.created = 0

    # -- resolution ---------------------------------------------------------------------
    def resolve(
        self, mount: Mount, base: tuple[bytes, ...], path: bytes, follow: bool
    ) -> tuple[tuple[bytes, ...], os.stat_result | None]:
        """Resolve ``path`` from directory ``base`` of ``mount``.

        Returns the components of the final entry and its lstat (None when the final entry
        does not exist; every directory before it does). Raises Errno.
        """
        if b"\x00" in path:
            raise Errno(abi.EINVAL)
        if path.startswith(b"/"):
            raise Errno(abi.ENOTCAPABLE)
        if len(mount.virtual_path(base)) + 1 + len(path) > MAX_PATH_BYTES:
            raise Errno(abi.ENAMETOOLONG)
        hops = [0]
        comps, info = self._walk(mount, list(base), path, follow, hops)
        if len(mount.virtual_path(comps)) > MAX_PATH_BYTES:
            raise Errno(abi.ENAMETOOLONG)
        return comps, info

    def _walk(
        self, mount: Mount, comps: list[bytes], path: bytes, follow: bool, hops: list[int]
    ) -> tuple[tuple[bytes, ...], os.stat_result | None]:
        parts = [p for p in path.split(b"/") if p not in (b"", b".")]
        must_be_dir = path.endswith(b"/")
        info: os.stat_result | None = _lstat(mount.host_path(tuple(comps))) if not parts else None
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if part == b"..":
                if not comps:
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
                return tuple(comps), None
            if stat.S_ISLNK(info.st_mode) and (follow or not last or must_be_dir):
                hops[0] += 1
                if hops[0] > MAX_SYMLINK_HOPS:
                    raise Errno(abi.ELOOP)
                target = os.readlink(mount.host_path(tuple(comps)))
                if target.startswith(b"/"):
                    raise Errno(abi.ENOTCAPABLE)  # an absolute target names the host's tree
                comps.pop()
                resolved, info = self._walk(mount, comps, target, True, hops)
                comps = list(resolved)
                if info is None:
                    if not last:
                        raise Errno(abi.ENOENT)
                    return tuple(comps), None
            if not last and not stat.S_ISDIR(info.st_mode):
                raise Errno(abi.ENOTDIR)
        if must_be_dir and info is not None and not stat.S_ISDIR(info.st_mode):
            raise Errno(abi.ENOTDIR)
        return tuple(comps), info

    # -- metadata -----------------------------------------------------------------------
    def listing(self, mount: Mount, comps: tuple[bytes, ...]) -> list[tuple[bytes, int, int]]:
        """``.``, ``..`` and the entries of a directory sorted by name bytes: (name, ino, type)."""
        here = mount.virtual_path(comps)
        parent = mount.virtual_path(comps[:-1]) if comps else here
        try:
            names = sorted(os.listdir(mount.host_path(comps)))
        except OSError as exc:
            raise host_error(exc) from exc
        out = [(b".", inode(here), abi.FILETYPE_DIRECTORY), (b"..", inode(parent), abi.FILETYPE_DIRECTORY)]
        for name in names:
            info = _lstat(mount.host_path(comps + (name,)))
            if info is None:
                continue
            out.append((name, inode(here + b"/" + name), filetype_of(info.st_mode)))
        return out

    def count_new_entry(self) -> None:
        """Every file or directory a job creates counts; past the cap the job gets ENOSPC."""
        if self.created >= MAX_OUTPUT_ENTRIES:
            raise Errno(abi.ENOSPC)
        self.created += 1

    @staticmethod
    def check_new_name(comps: tuple[bytes, ...]) -> None:
        """A name a job creates must be UTF-8 (UnixFS names are strings)."""
        try:
            comps[-1].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Errno(abi.EILSEQ) from exc
        except IndexError as exc:
            raise Errno(abi.EEXIST) from exc


def iter_iovecs(raw: memoryview, ptr: int, count: int) -> Iterator[tuple[int, int]]:
    """(buf, len) pairs of an iovec array in guest memory."""
    for i in range(count):
        base = ptr + 8 * i
        yield (int.from_bytes(raw[base : base + 4], "little"), int.from_bytes(raw[base + 4 : base + 8], "little"))
