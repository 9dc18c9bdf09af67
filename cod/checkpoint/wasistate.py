"""The WASI part of a checkpoint's state (SPEC 11.6): read from a running :class:`Wasi` and put
back into a fresh one.

Covered: the fd table (every field of each handle, its mount named by its path, the cached
directory listing of fd_readdir), the clock's position, the random stream's position, the bytes
of stdout and stderr so far, the byte and entry budgets of the writable mount, and the tree of
the writable mount with file contents, and its nodes with several names (path_link) or times
the job set. Refused (CheckpointError) rather than approximated: an open file whose path no
longer names it.
"""

from __future__ import annotations

import os
import stat

from ..wasm import abi
from ..wasm.entropy import RandomStream, _chacha20, random_key
from ..wasm.times import identity
from ..wasm.vfs import DIR_MODE, FILE_MODE, Handle, Mount, create_file
from ..wasm.wasi import Wasi
from .errors import CheckpointError
from .state import DIR, FILE, KIND_DIRECTORY, KIND_FILE, KIND_STREAM, MAX_DEPTH, SYMLINK, Entry, Fd, Node

CHACHA_BLOCK = 64


class CountedRandom(RandomStream):
    """The job's random stream, knowing how many bytes it gave; can start at any position."""

    def __init__(self, seed: bytes, position: int = 0) -> None:
        super().__init__(seed)
        self.position = 0
        if position:
            block, skip = divmod(position, CHACHA_BLOCK)
            if block >= 1 << 32:
                raise CheckpointError("the random stream's position is past ChaCha20's 2^32 blocks")
            self._stream = _chacha20(random_key(self._seed), block, bytes(12))
            self._stream.update(bytes(skip))
            self.position = position

    def read(self, n: int) -> bytes:
        out = super().read(n)
        self.position += n
        return out


def stream_bytes(wasi: Wasi, name: str) -> bytes:
    stream = wasi.streams[name]
    return os.pread(stream.fd, stream.size, 0) if stream.size else b""


def fd_table(wasi: Wasi) -> list[Fd]:
    out = []
    for number in sorted(wasi.fds):
        handle = wasi.fds[number]
        listing = tuple(handle.listing) if handle.listing is not None else None
        common = dict(rights=handle.rights, inheriting=handle.inheriting, append=handle.append,
                      kept_flags=handle.kept_flags, position=handle.position, preopen=number in wasi.preopens,
                      listing=listing)
        if handle.stream is not None:
            out.append(Fd(number, handle.filetype, KIND_STREAM, handle.stream.encode(), **common))  # type: ignore[arg-type]
            continue
        assert handle.mount is not None
        kind = KIND_FILE if handle.host_fd is not None else KIND_DIRECTORY
        if handle.host_fd is not None:
            try:
                same = identity(os.fstat(handle.host_fd)) == identity(os.lstat(handle.mount.host_path(handle.comps)))
            except FileNotFoundError:
                same = False
            if not same:
                raise CheckpointError(f"fd {number} is open on a file its path no longer names: "
                                      "not supported by checkpoints")
        out.append(Fd(number, handle.filetype, kind, handle.mount.path.encode(), handle.comps, **common))  # type: ignore[arg-type]
    return out


def nodes(wasi: Wasi, root: bytes) -> tuple[Node, ...]:
    """The nodes of the writable mount at ``root`` that have several names or times the job set,
    in the order of their first path (SPEC 11.6); CheckpointError for kept state (a link count,
    times) of a file that has no name left."""
    found: dict[tuple[int, int], list[tuple[bytes, ...]]] = {}
    stack: list[tuple[bytes, ...]] = [()]
    while stack:
        comps = stack.pop()
        path = os.path.join(root, *comps) if comps else root
        info = os.lstat(path)
        found.setdefault(identity(info), []).append(comps)
        if stat.S_ISDIR(info.st_mode):
            stack.extend(comps + (name,) for name in os.listdir(path))
    times: dict[tuple[int, int], tuple[int, int]] = dict(wasi.times._times)
    keys = set(wasi.fs.links) | set(times) | {key for key, paths in found.items() if len(paths) > 1}
    out = []
    for key in keys:
        paths = found.get(key)
        if paths is None:
            raise CheckpointError("the WASI layer keeps a link count or times for a file with no name left: "
                                  "not supported by checkpoints")
        link = wasi.fs.links.get(key)
        out.append(Node(tuple(sorted(paths)), link[0] if link else 0, link[1] if link else 0, times.get(key)))
    return tuple(sorted(out, key=lambda node: node.paths[0]))


def restore_nodes(wasi: Wasi, root: bytes, entries: tuple[Entry, ...], found: tuple[Node, ...]) -> None:
    """Give the restored tree its hard links, link counts and times (after :func:`write_tree`)."""
    seen: set[tuple[bytes, ...]] = set()
    for node in found:
        if not node.paths or len(set(node.paths)) != len(node.paths) or seen & set(node.paths):
            raise CheckpointError("malformed snapshot: a node without paths, or a path in two nodes")
        seen.update(node.paths)
        first = _entry(entries, node.paths[0])
        for other in node.paths[1:]:
            entry = _entry(entries, other)
            if entry.filetype == DIR or entry != Entry(entry.name, first.filetype, first.data):
                raise CheckpointError("malformed snapshot: names of one node that are not the same file")
            host = os.path.join(root, *other)
            os.unlink(host)
            os.link(os.path.join(root, *node.paths[0]), host, follow_symlinks=False)
        host = os.path.join(root, *node.paths[0]) if node.paths[0] else root
        key = identity(os.lstat(host))
        if node.nlink:
            wasi.fs.links[key] = [node.ino, node.nlink]
        if node.times is not None:
            wasi.times.set(key, *node.times)


def _entry(entries: tuple[Entry, ...], comps: tuple[bytes, ...]) -> Entry:
    if not comps:
        return Entry(b"", DIR, children=entries)
    for entry in entries:
        if entry.name == comps[0]:
            return entry if len(comps) == 1 else _entry(entry.children, comps[1:])
    raise CheckpointError("malformed snapshot: a node names a path the tree does not have")


def read_tree(root: bytes) -> tuple[Entry, ...]:
    """The entries of the host directory ``root`` (the writable mount), sorted by name bytes."""
    return _read(root, 0)


def _read(host: bytes, depth: int) -> tuple[Entry, ...]:
    if depth > MAX_DEPTH:
        raise CheckpointError(f"the output tree is over {MAX_DEPTH} deep")
    out = []
    for name in sorted(os.listdir(host)):
        path = os.path.join(host, name)
        info = os.lstat(path)
        if stat.S_ISDIR(info.st_mode):
            out.append(Entry(name, DIR, children=_read(path, depth + 1)))
        elif stat.S_ISREG(info.st_mode):
            with open(path, "rb") as f:
                out.append(Entry(name, FILE, f.read()))
        elif stat.S_ISLNK(info.st_mode):
            out.append(Entry(name, SYMLINK, os.readlink(path)))
        else:
            raise CheckpointError(f"the output tree holds {name!r}, neither file, directory nor symlink")
    return tuple(out)


def write_tree(root: bytes, entries: tuple[Entry, ...]) -> None:
    """Make ``entries`` in the empty host directory ``root``."""
    stack = [(root, entries)]
    while stack:
        host, items = stack.pop()
        for entry in items:
            path = os.path.join(host, entry.name)
            if entry.filetype == DIR:
                os.mkdir(path, DIR_MODE)
                os.chmod(path, DIR_MODE)
                stack.append((path, entry.children))
            elif entry.filetype == FILE:
                fd = create_file(path)
                try:
                    view, done = memoryview(entry.data), 0
                    while done < len(view):
                        done += os.write(fd, view[done:])
                finally:
                    os.close(fd)
                os.chmod(path, FILE_MODE)
            else:
                try:
                    os.symlink(entry.data, path)
                except ValueError as exc:
                    raise CheckpointError("malformed snapshot: a symlink target with a NUL byte") from exc


def restore(wasi: Wasi, fds: list[Fd], clock: int, stdout: bytes, stderr: bytes, output_bytes: int,
            entries: int) -> None:
    """Put the snapshot's WASI state into ``wasi`` (fresh, its writable mount already holding the
    snapshot's tree; its random stream set by the caller)."""
    wasi.clock.now = clock
    for name, data in (("stdout", stdout), ("stderr", stderr)):
        stream = wasi.streams[name]
        if len(data) > stream.budget.limit:
            raise CheckpointError(f"the snapshot's {name} is over the spec's limit")
        view, done = memoryview(data), 0
        while done < len(view):
            done += os.pwrite(stream.fd, view[done:], done)
        stream.size = stream.budget.used = len(data)
    wasi.fs.outputs.used = output_bytes
    wasi.fs.created = entries
    mounts = {m.path.encode(): m for m in wasi.fs.mounts}
    wasi.fds, wasi.preopens = {}, {}
    for record in fds:
        wasi.fds[record.fd] = _handle(record, mounts)
        if record.preopen:
            mount = wasi.fds[record.fd].mount
            if mount is None:
                raise CheckpointError(f"malformed snapshot: stream fd {record.fd} marked as a preopen")
            wasi.preopens[record.fd] = mount


def _check_path(mount: Mount, record: Fd) -> None:
    """Every component of the fd's path but the last is a real directory of the mount (never a
    symlink the host would follow), the last one a directory or regular file as the fd says."""
    comps = record.comps
    for n in range(1, len(comps) + 1):
        try:
            info = os.lstat(mount.host_path(comps[:n]))
        except OSError:
            raise CheckpointError(f"the snapshot's fd {record.fd} names a path that does not exist") from None
        last = n == len(comps)
        wanted = stat.S_ISREG if last and record.kind == KIND_FILE else stat.S_ISDIR
        if not wanted(info.st_mode):
            raise CheckpointError(f"the snapshot's fd {record.fd} names a path through something that is not "
                                  "a directory, or not the file it says")
    if not comps and record.kind == KIND_FILE:
        raise CheckpointError(f"malformed snapshot: file fd {record.fd} names its mount's root")


def _handle(record: Fd, mounts: dict[bytes, Mount]) -> Handle:
    listing = list(record.listing) if record.listing is not None else None
    common = dict(rights=record.rights, inheriting=record.inheriting, append=record.append,
                  kept_flags=record.kept_flags, position=record.position, listing=listing)
    if record.kind == KIND_STREAM:
        if record.where not in (b"stdin", b"stdout", b"stderr"):
            raise CheckpointError(f"malformed snapshot: fd {record.fd} is the stream {record.where!r}")
        return Handle(record.filetype, stream=record.where.decode(), **common)  # type: ignore[arg-type]
    mount = mounts.get(record.where)
    for comp in record.comps:
        if not comp or b"/" in comp or b"\x00" in comp or comp in (b".", b".."):
            raise CheckpointError(f"malformed snapshot: fd {record.fd} names a path component {comp!r}")
    if mount is None:
        raise CheckpointError(f"the snapshot's fd {record.fd} is on the mount {record.where!r}, which the spec "
                              "does not have")
    wanted = abi.FILETYPE_DIRECTORY if record.kind == KIND_DIRECTORY else abi.FILETYPE_REGULAR_FILE
    if record.filetype != wanted:
        raise CheckpointError(f"malformed snapshot: fd {record.fd} of kind {record.kind} has filetype "
                              f"{record.filetype}")
    _check_path(mount, record)
    if record.kind == KIND_DIRECTORY:
        return Handle(abi.FILETYPE_DIRECTORY, mount=mount, comps=record.comps, **common)  # type: ignore[arg-type]
    path = mount.host_path(record.comps)
    try:
        host_fd = os.open(path, (os.O_RDWR if mount.writable else os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise CheckpointError(f"the snapshot's fd {record.fd} names {os.fsdecode(path)!r}, which cannot be "
                              f"opened: {exc.strerror}") from exc
    return Handle(record.filetype, mount=mount, comps=record.comps, host_fd=host_fd, **common)  # type: ignore[arg-type]
