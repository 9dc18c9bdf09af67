"""UnixFS importer, byte-exact under the IPIP-0499 ``unixfs-v1-2025`` profile.

The profile: CIDv1, sha2-256, raw leaves, fixed 1 MiB chunks, balanced file DAGs of at
most 1024 links a node, dag-pb directories whose links are sorted by name bytes, and HAMT
sharding (fanout 256, murmur3-x64-64) once the serialized flat directory node would be
larger than 256 KiB. No mode and no mtime are ever written. Hidden files are included.

Files are streamed one chunk at a time, so memory stays flat whatever their size. Every
block goes to an optional sink (the CAR writer uses it); without one, blocks are only
hashed.

Host trees are ingested here (SPEC 3.1): the root must be a regular file or a directory,
never a link; the walk is iterative over open directory handles and refuses, naming the
path, any entry past the shared virtual limits (``cod.limits``), any special file and
anything unreadable. ``mount_root`` is the matching no-follow check for a directory about
to be mounted.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO

import mmh3

from ..errors import InputError
from ..limits import MAX_FILE_SIZE, MAX_NAME_BYTES, MAX_PATH_BYTES, MAX_TREE_DEPTH
from . import dagpb
from .cid import CID, DAG_PB, RAW
from .dagpb import Link

CHUNK_SIZE = 1 << 20
MAX_LINKS = 1024
HAMT_THRESHOLD = 256 * 1024
HAMT_FANOUT = 256
HAMT_HASH_BYTES = 8

BlockSink = Callable[[CID, memoryview], None]
EntrySink = Callable[[tuple[bytes, ...], "Entry", bool], None]
"""Told every file and directory of a host tree as it is imported: (its names from the root,
() for the root itself; its entry; whether it is a directory). Symlinks are not told."""


@dataclass(frozen=True)
class Entry:
    """An imported node: its CID, cumulative DAG size (Tsize) and file size."""

    cid: CID
    tsize: int
    filesize: int = 0


class Importer:
    """Builds UnixFS DAGs; one instance may import many files and directories."""

    def __init__(self, sink: BlockSink | None = None, entries: EntrySink | None = None) -> None:
        self._sink = sink
        self._entries = entries
        self._buffer = bytearray(CHUNK_SIZE)

    # -- blocks -------------------------------------------------------------------------
    def _put(self, codec: int, block: bytes | memoryview) -> CID:
        cid = CID.of(codec, block)
        if self._sink is not None:
            self._sink(cid, memoryview(block))
        return cid

    # -- files --------------------------------------------------------------------------
    def stream(self, source: BinaryIO) -> Entry:
        """Import a file from a binary stream, reading one 1 MiB chunk at a time."""
        levels: list[list[Entry]] = [[]]
        view = memoryview(self._buffer)
        first: Entry | None = None
        count = 0
        while True:
            filled = _read_full(source, view)
            if filled == 0 and count > 0:
                break
            leaf = Entry(self._put(RAW, view[:filled]), filled, filled)
            count += 1
            if count == 1:
                first = leaf
            else:
                if count == 2:
                    assert first is not None
                    self._push(levels, 0, first)
                self._push(levels, 0, leaf)
            if filled < CHUNK_SIZE:
                break
        if count == 1:
            assert first is not None
            return first
        return self._finish(levels)

    def file(self, path: str | os.PathLike[str]) -> Entry:
        """Import the regular file at ``path`` (a link there is refused); raises InputError."""
        raw = os.fsencode(path)
        return self._file_at(None, raw, raw)

    def add_bytes(self, data: bytes) -> Entry:
        return self.stream(io.BytesIO(data))

    def _push(self, levels: list[list[Entry]], level: int, entry: Entry) -> None:
        """Add a child at ``level``; a full level folds into one node a level up."""
        if level == len(levels):
            levels.append([])
        levels[level].append(entry)
        if len(levels[level]) == MAX_LINKS:
            node = self._file_node(levels[level])
            levels[level] = []
            self._push(levels, level + 1, node)

    def _finish(self, levels: list[list[Entry]]) -> Entry:
        """Fold the partial levels bottom-up, exactly as the balanced layout batches."""
        level = 0
        while True:
            higher = any(levels[level + 1 :])
            current = levels[level]
            if not higher and len(current) == 1:
                return current[0]
            if current:
                node = self._file_node(current)
                levels[level] = []
                if level + 1 == len(levels):
                    levels.append([])
                levels[level + 1].append(node)
            level += 1

    def _file_node(self, children: list[Entry]) -> Entry:
        links = [Link(c.cid, b"", c.tsize) for c in children if c.filesize > 0]
        sizes = [c.filesize for c in children if c.filesize > 0]
        total = sum(sizes)
        data = dagpb.unixfs_data(dagpb.FILE, filesize=total, blocksizes=sizes)
        block = dagpb.encode_node(data, links)
        return Entry(self._put(DAG_PB, block), len(block) + sum(l.tsize for l in links), total)

    # -- symlinks and directories -------------------------------------------------------
    def symlink(self, target: bytes) -> Entry:
        block = dagpb.encode_node(dagpb.unixfs_data(dagpb.SYMLINK, data=target), [])
        return Entry(self._put(DAG_PB, block), len(block))

    def directory(self, children: Mapping[bytes, Entry]) -> Entry:
        """A directory of named children: flat, or a HAMT when the flat node is too big."""
        links = [Link(children[name].cid, name, children[name].tsize) for name in sorted(children)]
        block = dagpb.encode_node(dagpb.unixfs_data(dagpb.DIRECTORY), links)
        if len(block) <= HAMT_THRESHOLD:
            return Entry(self._put(DAG_PB, block), len(block) + sum(l.tsize for l in links))
        keyed = [(_hamt_hash(name), name, children[name]) for name in sorted(children)]
        return self._shard(keyed, 0)

    def _shard(self, items: list[tuple[bytes, bytes, Entry]], depth: int) -> Entry:
        if depth >= HAMT_HASH_BYTES:
            raise InputError("HAMT hash exhausted: more than 8 levels of collisions")
        buckets: dict[int, list[tuple[bytes, bytes, Entry]]] = {}
        for item in items:
            buckets.setdefault(item[0][depth], []).append(item)
        links: list[Link] = []
        bitfield = 0
        for index in sorted(buckets):
            bitfield |= 1 << index
            prefix = b"%02X" % index
            group = buckets[index]
            if len(group) == 1:
                _, name, entry = group[0]
                links.append(Link(entry.cid, prefix + name, entry.tsize))
            else:
                child = self._shard(group, depth + 1)
                links.append(Link(child.cid, prefix, child.tsize))
        data = dagpb.unixfs_data(
            dagpb.HAMT_SHARD,
            data=bitfield.to_bytes((bitfield.bit_length() + 7) // 8, "big"),
            hash_type=dagpb.MURMUR3_X64_64,
            fanout=HAMT_FANOUT,
        )
        block = dagpb.encode_node(data, links)
        return Entry(self._put(DAG_PB, block), len(block) + sum(l.tsize for l in links))

    # -- host trees ---------------------------------------------------------------------
    def tree(self, path: str | bytes | os.PathLike[str], *, mount: str | None = None) -> Entry:
        """Import a host file or directory (the root), checking every entry as it goes.

        Symlinks inside the tree become UnixFS symlinks, never followed. The root itself must
        be a regular file or a real directory: a symlink root is refused, because a link's CID
        names the link while every host that mounts it would see its own target. ``mount`` is
        the virtual path the tree will be mounted at; when given, every entry's virtual path
        (``mount/a/b``) must fit MAX_PATH_BYTES. Raises InputError for a tree that breaks a
        rule of SPEC section 3 (naming the offending host path), or that cannot be read.
        """
        raw = os.fsencode(path)
        try:
            info = os.lstat(raw)
        except OSError as exc:
            raise InputError(f"cannot read {_show(raw)}: {exc.strerror}") from exc
        if stat.S_ISLNK(info.st_mode):
            raise InputError(
                f"{_show(raw)} is a symlink; cod imports a file or directory itself, never a link to one",
                "name the real path (e.g. `realpath PATH`)",
            )
        if stat.S_ISREG(info.st_mode):
            found = self._file_at(None, raw, raw)
            self._told((), found, False)
            return found
        if stat.S_ISDIR(info.st_mode):
            return self._walk(raw, None if mount is None else mount.encode())
        raise _special(raw, info.st_mode)

    def _walk(self, root: bytes, mount: bytes | None) -> Entry:
        """Depth-first, names in byte order, with an explicit stack: no recursion, so no tree
        depth reaches the interpreter's limits; every directory is held open (dir fds), so a
        path component swapped for a link while we walk cannot lead outside the tree."""
        stack = [_Frame(_open_dir(None, root, root), root, ())]
        try:
            stack[-1].names = _list_dir(stack[-1])
            while True:
                frame = stack[-1]
                if frame.next == len(frame.names):
                    entry = self.directory(frame.children)
                    self._told(frame.rel, entry, True)
                    os.close(stack.pop().fd)
                    if not stack:
                        return entry
                    stack[-1].children[frame.rel[-1]] = entry
                    continue
                name = frame.names[frame.next]
                frame.next += 1
                rel = frame.rel + (name,)
                where = os.path.join(frame.where, name)
                check_entry(rel, mount, where)
                try:
                    info = os.stat(name, dir_fd=frame.fd, follow_symlinks=False)
                except OSError as exc:
                    raise _unreadable(where, exc) from exc
                if stat.S_ISDIR(info.st_mode):
                    child = _Frame(_open_dir(frame.fd, name, where), where, rel)
                    stack.append(child)
                    child.names = _list_dir(child)
                elif stat.S_ISREG(info.st_mode):
                    frame.children[name] = self._file_at(frame.fd, name, where)
                    self._told(rel, frame.children[name], False)
                elif stat.S_ISLNK(info.st_mode):
                    frame.children[name] = self.symlink(_link_target(frame.fd, name, where))
                else:
                    raise _special(where, info.st_mode)
        finally:
            for frame in stack:
                os.close(frame.fd)

    def _told(self, rel: tuple[bytes, ...], entry: Entry, is_dir: bool) -> None:
        if self._entries is not None:
            self._entries(rel, entry, is_dir)

    def _file_at(self, dir_fd: int | None, name: bytes, where: bytes) -> Entry:
        """Import a regular file, opened without following links and without blocking (a
        fifo swapped in after lstat cannot hang the import); sizes past MAX_FILE_SIZE are
        refused before a byte is read."""
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            raise _unreadable(where, exc) from exc
        with open(fd, "rb", buffering=0, closefd=True) as handle:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise _special(where, info.st_mode)
            if info.st_size > MAX_FILE_SIZE:
                raise _too_big(where)
            try:
                entry = self.stream(handle)  # type: ignore[arg-type]
            except OSError as exc:
                raise _unreadable(where, exc) from exc
        if entry.filesize > MAX_FILE_SIZE:
            raise _too_big(where)
        return entry


@dataclass
class _Frame:
    """A directory being walked: its open fd, host path, components from the root, its
    sorted names, the next name to visit and the entries imported so far."""

    fd: int
    where: bytes
    rel: tuple[bytes, ...]
    names: list[bytes] = field(default_factory=list)
    next: int = 0
    children: dict[bytes, Entry] = field(default_factory=dict)


_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW


def check_entry(rel: tuple[bytes, ...], mount: bytes | None, where: bytes) -> None:
    """Refuse an entry (components ``rel`` from the tree's root) that the rest of cod could not
    mount, hash, export or name, in this order: its name is not UTF-8, is over
    MAX_NAME_BYTES, it lies deeper than MAX_TREE_DEPTH, or (when the mount path is known) its
    virtual path is over MAX_PATH_BYTES. Raises InputError naming ``where``."""
    check_name(rel[-1], os.fsdecode(os.path.dirname(where)))
    if len(rel[-1]) > MAX_NAME_BYTES:
        raise InputError(
            f"name of {_show(where)} is {len(rel[-1])} bytes, over the limit of {MAX_NAME_BYTES}",
            "rename it; cod's names fit every common file system",
        )
    if len(rel) > MAX_TREE_DEPTH:
        raise InputError(
            f"{_show(where)} lies {len(rel)} levels deep, over the limit of {MAX_TREE_DEPTH}",
            "flatten the tree; cod's trees are at most 256 levels deep",
        )
    if mount is not None:
        virtual = b"/".join((mount.rstrip(b"/"), *rel))  # a mount at "/" gives "/a/b", never "//a/b"
        if len(virtual) > MAX_PATH_BYTES:
            raise InputError(
                f"{_show(where)} would be {os.fsdecode(virtual[:60])!r}... in the job, "
                f"{len(virtual)} bytes, over the limit of {MAX_PATH_BYTES}",
                "shorten the names or the mount path; a job's paths are at most 1024 bytes",
            )


def mount_root(path: str | bytes | os.PathLike[str]) -> bytes:
    """The host directory to mount for an input, checked without following links.

    The last component of ``path`` must itself be a directory, not a symlink to one (a link
    would let each host mount its own target under the CID of the link); components before
    it are the host's business and are resolved once, here. Returns the resolved absolute
    path as bytes (what ``cod.wasm.vfs.Mount.host`` takes). Raises InputError.
    """
    raw = os.path.abspath(os.fsencode(path))
    try:
        fd = os.open(raw, _DIR_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            what = "a symlink" if os.path.islink(raw) else "not a directory"
            raise InputError(
                f"input mount {_show(raw)} is {what}; cod mounts only real directories",
                "mount the directory itself (e.g. `realpath DIR`)",
            ) from exc
        raise _unreadable(raw, exc) from exc
    os.close(fd)
    return os.path.realpath(raw)


def mount_file(path: str | bytes | os.PathLike[str]) -> bytes:
    """The host file to mount for a single-file input, checked as :func:`mount_root` checks a
    directory: the last component must be a regular file, not a symlink to one. Returns the
    resolved absolute path as bytes. Raises InputError."""
    raw = os.path.abspath(os.fsencode(path))
    try:
        fd = os.open(raw, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"input file {_show(raw)} is a symlink; cod mounts only regular files",
                             "mount the file itself (e.g. `realpath FILE`)") from exc
        raise _unreadable(raw, exc) from exc
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
    if not regular:
        raise InputError(f"input {_show(raw)} is neither a directory nor a regular file",
                         "mount a directory or a regular file")
    return os.path.realpath(raw)


def _open_dir(dir_fd: int | None, name: bytes, where: bytes) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise _unreadable(where, exc) from exc


def _list_dir(frame: _Frame) -> list[bytes]:
    """The directory's names in byte order (never the host's order)."""
    try:
        return sorted(os.fsencode(name) for name in os.listdir(frame.fd))
    except OSError as exc:
        raise _unreadable(frame.where, exc) from exc


def _link_target(dir_fd: int, name: bytes, where: bytes) -> bytes:
    """A symlink's target, at most MAX_PATH_BYTES (the longest path a job may name; hosts
    differ in how long a target they allow, so the limit is cod's, not theirs)."""
    try:
        target = os.readlink(name, dir_fd=dir_fd)
    except OSError as exc:
        raise _unreadable(where, exc) from exc
    if len(target) > MAX_PATH_BYTES:
        raise InputError(
            f"symlink {_show(where)} has a target of {len(target)} bytes, over the limit of {MAX_PATH_BYTES}",
            "shorten the link's target",
        )
    return target


def _show(path: bytes) -> str:
    """A host path for a message: quoted, and shortened in the middle when very long."""
    text = os.fsdecode(path)
    return repr(text if len(text) <= 300 else text[:140] + "..." + text[-140:])


def _unreadable(where: bytes, exc: OSError) -> InputError:
    return InputError(
        f"cannot read {_show(where)}: {exc.strerror}",
        "input permissions are decided at ingest: make every file and directory readable, or leave it out",
    )


def _special(where: bytes, mode: int) -> InputError:
    kind = {stat.S_IFIFO: "a fifo", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
            stat.S_IFBLK: "a block device"}.get(stat.S_IFMT(mode), "not a regular file, directory or symlink")
    return InputError(
        f"{_show(where)} is {kind}",
        "inputs may hold only regular files, directories and symlinks; remove it or copy its bytes into a file",
    )


def _too_big(where: bytes) -> InputError:
    return InputError(f"{_show(where)} is larger than {MAX_FILE_SIZE} bytes (1 TiB)", "split it into smaller files")


def check_name(name: bytes, where: str) -> None:
    """UnixFS names are UTF-8 strings: refuse a host name that is not."""
    try:
        name.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"file name {name!r} in {where!r} is not valid UTF-8", "rename it; UnixFS names are UTF-8"
        ) from exc


def _hamt_hash(name: bytes) -> bytes:
    """First 64 bits of murmur3-x64-128 (seed 0), big-endian, as boxo's HAMT uses them."""
    h1, _ = mmh3.hash64(name, seed=0, x64arch=True, signed=False)
    return int(h1).to_bytes(8, "big")


def _read_full(source: BinaryIO, view: memoryview) -> int:
    """Fill ``view`` from ``source`` unless the stream ends first; returns bytes read."""
    filled = 0
    while filled < len(view):
        got = source.readinto(view[filled:])  # type: ignore[attr-defined]
        if not got:
            break
        filled += got
    return filled


def cid_of_tree(path: str | bytes | os.PathLike[str]) -> CID:
    """The UnixFS CID of a host file or directory."""
    return Importer().tree(path).cid


def module_cid(wasm: bytes) -> str:
    """A module's CID: the UnixFS CID of its bytes, as ``ipfs add`` would give it."""
    return str(Importer().add_bytes(wasm).cid)
