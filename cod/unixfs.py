"""UnixFS importer, byte-exact under the IPIP-0499 ``unixfs-v1-2025`` profile.

The profile: CIDv1, sha2-256, raw leaves, fixed 1 MiB chunks, balanced file DAGs of at
most 1024 links a node, dag-pb directories whose links are sorted by name bytes, and HAMT
sharding (fanout 256, murmur3-x64-64) once the serialized flat directory node would be
larger than 256 KiB. No mode and no mtime are ever written. Hidden files are included.

Files are streamed one chunk at a time, so memory stays flat whatever their size. Every
block goes to an optional sink (the CAR writer uses it); without one, blocks are only
hashed.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import BinaryIO

import mmh3

from . import dagpb
from .cid import CID, DAG_PB, RAW
from .dagpb import Link
from .errors import InputError

CHUNK_SIZE = 1 << 20
MAX_LINKS = 1024
HAMT_THRESHOLD = 256 * 1024
HAMT_FANOUT = 256
HAMT_HASH_BYTES = 8

BlockSink = Callable[[CID, memoryview], None]


@dataclass(frozen=True)
class Entry:
    """An imported node: its CID, cumulative DAG size (Tsize) and file size."""

    cid: CID
    tsize: int
    filesize: int = 0


class Importer:
    """Builds UnixFS DAGs; one instance may import many files and directories."""

    def __init__(self, sink: BlockSink | None = None) -> None:
        self._sink = sink
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
        try:
            with open(path, "rb", buffering=0) as handle:
                return self.stream(handle)  # type: ignore[arg-type]
        except OSError as exc:
            raise InputError(f"cannot read {os.fspath(path)!r}: {exc.strerror}") from exc

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
    def tree(self, path: str | bytes | os.PathLike[str]) -> Entry:
        """Import a host file or directory; symlinks become UnixFS symlinks, never followed."""
        raw = os.fsencode(path)
        try:
            info = os.lstat(raw)
        except OSError as exc:
            raise InputError(f"cannot read {os.fsdecode(raw)!r}: {exc.strerror}") from exc
        if stat.S_ISLNK(info.st_mode):
            return self.symlink(os.readlink(raw))
        if stat.S_ISREG(info.st_mode):
            return self.file(os.fsdecode(raw))
        if stat.S_ISDIR(info.st_mode):
            children: dict[bytes, Entry] = {}
            try:
                names = sorted(os.listdir(raw))
            except OSError as exc:
                raise InputError(f"cannot list {os.fsdecode(raw)!r}: {exc.strerror}") from exc
            for name in names:
                check_name(name, os.fsdecode(raw))
                children[name] = self.tree(os.path.join(raw, name))
            return self.directory(children)
        raise InputError(
            f"{os.fsdecode(raw)!r} is neither a file, a directory nor a symlink",
            "inputs and outputs may hold only regular files, directories and symlinks",
        )


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
