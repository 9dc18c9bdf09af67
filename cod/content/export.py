"""UnixFS exporter: rebuild a file or directory tree from verified blocks, within caps.

Used where content arrives as a CAR (a node receiving inputs, a requester fetching
results). Blocks must already be checked against their CIDs (``cod.content.car`` does). Before a
byte is written, the DAG is walked from its root over the blocks at hand (``plan``): the
root must be a directory or a regular file, every name valid and unique in its directory,
and the sizes it declares (a block counted every time it is linked), its entries and its
depth within ``TreeCaps``. So a small CAR that links one big block a million times is
refused, not unpacked. After writing, the tree is imported again and must hash to the
root it came from, so a DAG in any other layout than cod's profile is refused rather than
silently re-hashed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import CapExceeded, CIDError, InputError, LocalPathError
from ..limits import MAX_NAME_BYTES, MAX_PATH_BYTES, MAX_TREE_DEPTH
from . import dagpb
from .car import index_car, read_car
from .cid import CID, DAG_PB, RAW
from .unixfs import EntrySink, Importer

BlockGetter = Callable[[CID], bytes]

DEFAULT_MAX_CAR_BYTES = 8 << 30
"""Default cap on the bytes of one CAR received (a node's max_upload_bytes, and what one job may
make it fetch)."""
DEFAULT_MAX_UNPACKED_BYTES = 8 << 30
"""Default cap on the bytes a CAR may unpack to (sum of its files' sizes)."""
DEFAULT_MAX_ENTRIES = 1 << 17
"""Default cap on a tree's entries (files, directories and symlinks below the root); above
the 100000 creations a job may make plus the five names of a results directory."""
DEFAULT_MAX_CAR_BLOCKS = 1 << 18
"""Default cap on the blocks of one CAR (duplicates counted)."""
MAX_FILE_LEVELS = 8
"""Most levels of dag-pb file nodes above the leaves; a 1 TiB file of 1 MiB chunks in cod's
1024-wide layout needs 2."""

FILE, DIRECTORY = "file", "directory"


@dataclass(frozen=True)
class TreeCaps:
    """What a CAR may unpack to; the names are those a node publishes in /v1/info ``limits``."""

    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES
    max_entries: int = DEFAULT_MAX_ENTRIES
    max_car_blocks: int = DEFAULT_MAX_CAR_BLOCKS
    max_tree_depth: int = MAX_TREE_DEPTH


@dataclass(frozen=True)
class Plan:
    """What a DAG unpacks to: its root's kind, its files' bytes, its entries and its depth."""

    kind: str
    size: int
    entries: int
    depth: int


def plan(get: BlockGetter, root: CID, caps: TreeCaps = TreeCaps()) -> Plan:
    """Walk the DAG under ``root`` without writing anything and decide whether it may be unpacked.

    Raises CIDError for a missing or malformed block, a root that is not a directory or a
    regular file, an unsafe or duplicate name; CapExceeded naming the cap that is exceeded.
    """
    return _Planner(get, caps).root(root)


class _Planner:
    """Memoized walk: each block is decoded once, and its totals are added once per link."""

    def __init__(self, get: BlockGetter, caps: TreeCaps) -> None:
        self.get = get
        self.caps = caps
        self.memo: dict[CID, tuple[int, int, int]] = {}  # entry -> (bytes, entries, height)
        self.files: dict[CID, int] = {}  # file node or leaf -> bytes
        self.shards: dict[CID, list[tuple[bytes, CID]]] = {}  # HAMT shard -> its entries

    def root(self, cid: CID) -> Plan:
        kind = self._kind(cid)
        size, entries, height = self._entry(cid, 0)
        return Plan(kind, size, entries, height)

    def _kind(self, cid: CID) -> str:
        if cid.codec == RAW:
            return FILE
        meta, _ = self._decode(cid)
        if meta.kind == dagpb.FILE:
            return FILE
        if meta.kind in (dagpb.DIRECTORY, dagpb.HAMT_SHARD):
            return DIRECTORY
        what = "a symlink" if meta.kind == dagpb.SYMLINK else f"of UnixFS type {meta.kind}"
        raise CIDError(f"the root {cid} is {what}, not a directory or a regular file",
                       "upload a directory (as a CAR) or a file; a root symlink is refused")

    def _decode(self, cid: CID) -> tuple[dagpb.UnixFSData, list[dagpb.Link]]:
        if cid.codec != DAG_PB:
            raise CIDError(f"block {cid} is neither raw nor dag-pb")
        block = self._block(cid)
        try:
            data, links = dagpb.decode_node(block)
            return dagpb.decode_unixfs(data), links
        except (ValueError, IndexError) as exc:
            raise CIDError(f"block {cid} is not a UnixFS node: {exc}") from exc

    def _block(self, cid: CID) -> bytes:
        try:
            return self.get(cid)
        except KeyError:
            raise CIDError(f"the CAR lacks block {cid}") from None

    def _entry(self, cid: CID, depth: int) -> tuple[int, int, int]:
        """Totals of the entry ``cid`` at ``depth``; checks that its deepest entry is within the cap."""
        if depth > self.caps.max_tree_depth:
            raise CapExceeded("max_tree_depth", self.caps.max_tree_depth, "the depth of the tree")
        totals = self.memo.get(cid)
        if totals is None:
            totals = self._totals(cid, depth)
            self.memo[cid] = totals
        if depth + totals[2] > self.caps.max_tree_depth:
            raise CapExceeded("max_tree_depth", self.caps.max_tree_depth, "the depth of the tree")
        return totals

    def _totals(self, cid: CID, depth: int) -> tuple[int, int, int]:
        if cid.codec == RAW:
            return self._check_size(len(self._block(cid))), 0, 0
        meta, links = self._decode(cid)
        if meta.kind == dagpb.FILE:
            return self._file(cid, meta, links, 0), 0, 0
        if meta.kind == dagpb.SYMLINK:
            _check_link(cid, meta.data, links)
            return 0, 0, 0
        if meta.kind == dagpb.DIRECTORY:
            return self._directory(cid, [(link.name, link.cid) for link in links], depth)
        if meta.kind == dagpb.HAMT_SHARD:
            return self._directory(cid, self._shard_entries(cid, links, 0), depth)
        raise CIDError(f"UnixFS node {cid} has unsupported type {meta.kind}")

    def _directory(self, cid: CID, children: list[tuple[bytes, CID]], depth: int) -> tuple[int, int, int]:
        if len(children) > self.caps.max_entries:
            raise CapExceeded("max_entries", self.caps.max_entries, "the number of entries of the tree")
        names: set[bytes] = set()
        size, entries, height = 0, 0, 0
        for name, child in children:
            _safe_name(name)
            if name in names:
                raise CIDError(f"directory {cid} holds the name {name!r} twice")
            names.add(name)
            child_size, child_entries, child_height = self._entry(child, depth + 1)
            size = self._check_size(size + child_size)
            entries += 1 + child_entries
            if entries > self.caps.max_entries:
                raise CapExceeded("max_entries", self.caps.max_entries, "the number of entries of the tree")
            height = max(height, 1 + child_height)
        return size, entries, height

    def _shard_entries(self, cid: CID, links: list[dagpb.Link], level: int) -> list[tuple[bytes, CID]]:
        """The (name, CID) entries of a HAMT directory, through its sub-shards (memoized).

        Each bucket appears once per shard and a sub-shard holds at least two entries, as the
        importer makes them; so walking a HAMT costs at most its entries, however it is linked.
        """
        known = self.shards.get(cid)
        if known is not None:
            return known
        if level >= 8:
            raise CIDError(f"HAMT {cid} is deeper than 8 levels")
        out: list[tuple[bytes, CID]] = []
        buckets: set[bytes] = set()
        for link in links:
            bucket = link.name[:2]
            if len(bucket) < 2 or bucket in buckets:
                raise CIDError(f"HAMT {cid} has a link without a bucket prefix of its own")
            buckets.add(bucket)
            if len(link.name) == 2:
                meta, sub = self._decode(link.cid)
                if meta.kind != dagpb.HAMT_SHARD:
                    raise CIDError(f"HAMT link {link.name!r} does not lead to a shard")
                entries = self._shard_entries(link.cid, sub, level + 1)
                if len(entries) < 2:
                    raise CIDError(f"HAMT sub-shard {link.cid} holds fewer than two entries")
                out.extend(entries)
            else:
                out.append((link.name[2:], link.cid))
            if len(out) > self.caps.max_entries:
                raise CapExceeded("max_entries", self.caps.max_entries, "the number of entries of the tree")
        self.shards[cid] = out
        return out

    def _file(self, cid: CID, meta: dagpb.UnixFSData, links: list[dagpb.Link], level: int) -> int:
        """The bytes of a file node; every child holds at least one byte (as the importer makes
        them), so writing a file costs at most its size however often a block is linked."""
        if level >= MAX_FILE_LEVELS:
            raise CIDError(f"file node {cid} is more than {MAX_FILE_LEVELS} levels deep")
        size = len(meta.data)
        for link in links:
            child = self.files.get(link.cid)
            if child is None:
                if link.cid.codec == RAW:
                    child = len(self._block(link.cid))
                else:
                    sub_meta, sub_links = self._decode(link.cid)
                    if sub_meta.kind != dagpb.FILE:
                        raise CIDError(f"file link {link.cid} is not a file node")
                    child = self._file(link.cid, sub_meta, sub_links, level + 1)
                self.files[link.cid] = child
            if child == 0:
                raise CIDError(f"file node {cid} links an empty block {link.cid}")
            size = self._check_size(size + child)
        if meta.filesize is not None and meta.filesize != size:
            raise CIDError(f"file node {cid} declares {meta.filesize} bytes but its blocks hold {size}")
        return size

    def _check_size(self, size: int) -> int:
        if size > self.caps.max_unpacked_bytes:
            raise CapExceeded("max_unpacked_bytes", self.caps.max_unpacked_bytes, "the unpacked size of the CAR")
        return size


def export(get: BlockGetter, root: CID, dest: Path, caps: TreeCaps = TreeCaps()) -> Plan:
    """Write the UnixFS DAG ``root`` at ``dest`` (which must not exist), after ``plan`` allowed it.

    Raises what ``plan`` raises; the writer counts bytes too (CapExceeded past the plan).
    """
    decided = plan(get, root, caps)
    _Writer(get, decided.size).node(root, dest)
    return decided


class _Writer:
    """Writes a planned DAG without following any link: every entry is made relative to a
    descriptor of the directory this writer made for it (mkdir, then opened with O_NOFOLLOW),
    files with O_EXCL | O_NOFOLLOW, symlinks as links whose targets are never resolved. So a
    symlink of the DAG, or one that something else puts in place of a directory while the
    writer works, cannot make it write outside ``dest``."""

    def __init__(self, get: BlockGetter, budget: int) -> None:
        self.get = get
        self.budget = budget  # what the plan counted: writing more means the plan was wrong

    def node(self, cid: CID, path: Path) -> None:
        """Write the entry ``cid`` at ``path`` (which must not exist; its parent is the caller's)."""
        try:
            parent = os.open(path.parent, _DIR_FLAGS & ~os.O_NOFOLLOW)  # the caller's directory, as named
        except OSError as exc:
            raise _unwritable(path.parent, exc) from exc
        try:
            self._entry(cid, parent, path.name, path)
        finally:
            os.close(parent)

    def _entry(self, cid: CID, dir_fd: int, name: str, where: Path) -> None:
        block = self.get(cid)
        if cid.codec == RAW:
            self._write_file(dir_fd, name, where, [block])
            return
        data, links = dagpb.decode_node(block)
        meta = dagpb.decode_unixfs(data)
        if meta.kind == dagpb.FILE:
            self._write_file(dir_fd, name, where, self._file_chunks(meta.data, links))
        elif meta.kind in (dagpb.DIRECTORY, dagpb.HAMT_SHARD):
            fd = self._mkdir(dir_fd, name, where)
            try:
                if meta.kind == dagpb.DIRECTORY:
                    for link in links:
                        child = _safe_name(link.name)
                        self._entry(link.cid, fd, child, where / child)
                else:
                    self._shard(links, fd, where)
            finally:
                os.close(fd)
        elif meta.kind == dagpb.SYMLINK:
            try:
                os.symlink(meta.data, name, dir_fd=dir_fd)
            except OSError as exc:
                raise _unwritable(where, exc) from exc

    def _shard(self, links: list[dagpb.Link], dir_fd: int, where: Path) -> None:
        for link in links:
            if len(link.name) == 2:
                _, sub = dagpb.decode_node(self.get(link.cid))
                self._shard(sub, dir_fd, where)
            else:
                child = _safe_name(link.name[2:])
                self._entry(link.cid, dir_fd, child, where / child)

    @staticmethod
    def _mkdir(dir_fd: int, name: str, where: Path) -> int:
        try:
            os.mkdir(name, 0o777, dir_fd=dir_fd)
            return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)  # ELOOP when a link took its place
        except OSError as exc:
            raise _unwritable(where, exc) from exc

    def _file_chunks(self, inline: bytes, links: list[dagpb.Link]) -> Iterable[bytes]:
        if inline:
            yield inline
        for link in links:
            block = self.get(link.cid)
            if link.cid.codec == RAW:
                yield block
                continue
            data, sub = dagpb.decode_node(block)
            yield from self._file_chunks(dagpb.decode_unixfs(data).data, sub)

    def _write_file(self, dir_fd: int, name: str, where: Path, chunks: Iterable[bytes]) -> None:
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                         dir_fd=dir_fd)
        except OSError as exc:
            raise _unwritable(where, exc) from exc
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                self.budget -= len(chunk)
                if self.budget < 0:
                    raise CapExceeded("max_unpacked_bytes", 0, "the bytes written beyond the planned size")
                out.write(chunk)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _unwritable(where: Path, exc: OSError) -> LocalPathError:
    return LocalPathError(f"cannot write {str(where)!r}: {exc.strerror}",
                          "nothing else may change the directory a download is written to while it is written")


def _check_link(cid: CID, target: bytes, links: list[dagpb.Link]) -> None:
    """A symlink node a host and the importer can hold: no links, a target of 1 to
    MAX_PATH_BYTES bytes without NUL (what it points to is never looked at)."""
    if links or not target or b"\x00" in target or len(target) > MAX_PATH_BYTES:
        raise CIDError(f"symlink node {cid} has links, or a target that is empty, holds NUL or is over "
                       f"{MAX_PATH_BYTES} bytes")


def _safe_name(name: bytes) -> str:
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CIDError(f"entry name {name!r} is not UTF-8") from exc
    if not text or text in (".", "..") or "/" in text or "\x00" in text or len(name) > MAX_NAME_BYTES:
        raise CIDError(f"entry name {text!r} is not a safe file name")
    return text


def check_complete(blocks: dict[CID, bytes], root: CID) -> None:
    """Every block reachable from ``root`` is present (their hashes were checked on reading).

    Then the blocks are exactly the content that ``root`` names: no export and re-import is
    needed to know it. Raises CIDError naming the first missing block.
    """
    stack, seen = [root], set()
    while stack:
        cid = stack.pop()
        if cid in seen:
            continue
        seen.add(cid)
        block = blocks.get(cid)
        if block is None:
            raise CIDError(f"the CAR lacks block {cid}, reachable from {root}")
        if cid.codec == DAG_PB:
            try:
                _, links = dagpb.decode_node(block)
            except (ValueError, IndexError) as exc:
                raise CIDError(f"block {cid} is not a dag-pb node: {exc}") from exc
            stack.extend(link.cid for link in links)


def _single_root(roots: list[CID], expected: CID) -> None:
    if len(roots) != 1:
        raise CIDError(f"the CAR names {len(roots)} roots; cod takes a CAR of exactly one root",
                       "pack one directory or file per CAR")
    if roots[0] != expected:
        raise CIDError(f"the CAR's roots [{roots[0]}] are not [{expected}]")


def read_complete_car(data: BinaryIO, expected: CID, caps: TreeCaps = TreeCaps()) -> dict[CID, bytes]:
    """An in-memory CAR rooted at ``expected``: its blocks, checked and complete."""
    roots, blocks = read_car(data, caps.max_car_blocks)
    _single_root(roots, expected)
    found = dict(blocks)
    check_complete(found, expected)
    return found


def unpack_car(source: BinaryIO, expected: CID, dest: Path, scratch: Path, caps: TreeCaps = TreeCaps(),
               entries: EntrySink | None = None) -> Plan:
    """Unpack a seekable CAR whose single root must be ``expected`` into ``dest``, atomically.

    Blocks are indexed where they lie in ``source`` (checked against their CIDs, at most
    ``caps.max_car_blocks``), the DAG is planned within ``caps``, exported to a directory
    under ``scratch``, and re-imported: it must hash to ``expected``. Raises CIDError,
    CapExceeded or InputError (content outside cod's UnixFS profile); nothing is left then.
    ``entries`` is told every file and directory of the re-import (cod.content.unixfs.EntrySink).
    """
    scratch.mkdir(parents=True, exist_ok=True)
    roots, index = index_car(source, caps.max_car_blocks)
    _single_root(roots, expected)

    def get(cid: CID) -> bytes:
        offset, length = index[cid]  # KeyError: a missing block, reported by the planner
        source.seek(offset)
        return source.read(length)

    decided = plan(get, expected, caps)
    work = Path(tempfile.mkdtemp(dir=scratch, prefix=".unpack-"))
    try:
        tree = work / "tree"
        _Writer(get, decided.size).node(expected, tree)
        actual = Importer(entries=entries).tree(tree).cid
        if actual != expected:
            raise InputError(
                f"the content of the CAR hashes to {actual}, not to {expected}",
                "cod takes content in its UnixFS profile (unixfs-v1-2025); pack it with cod or ipfs-car",
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(tree, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return decided
