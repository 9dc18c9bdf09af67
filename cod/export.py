"""UnixFS exporter: rebuild a file or directory tree from verified blocks.

Used where content arrives as a CAR (a node receiving inputs, a requester fetching
results). Blocks must already be checked against their CIDs (``cod.car.read_car`` does);
after writing, the tree is imported again and must hash to the root it came from, so a
DAG in any other layout than cod's profile is refused rather than silently re-hashed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from . import dagpb
from .car import read_car
from .cid import CID, DAG_PB, RAW
from .errors import CIDError, InputError
from .unixfs import cid_of_tree

BlockGetter = Callable[[CID], bytes]


def export(get: BlockGetter, root: CID, dest: Path) -> None:
    """Write the UnixFS node ``root`` at ``dest`` (which must not exist)."""
    _node(get, root, dest, depth=0)


def _node(get: BlockGetter, cid: CID, path: Path, depth: int) -> None:
    if depth > 256:
        raise CIDError("UnixFS tree deeper than 256 levels")
    block = get(cid)
    if cid.codec == RAW:
        _write_file(path, [block])
        return
    if cid.codec != DAG_PB:
        raise CIDError(f"block {cid} is neither raw nor dag-pb")
    try:
        data, links = dagpb.decode_node(block)
        meta = dagpb.decode_unixfs(data)
    except ValueError as exc:
        raise CIDError(f"block {cid} is not a UnixFS node: {exc}") from exc
    if meta.kind == dagpb.FILE:
        _write_file(path, _file_chunks(get, meta.data, links, depth))
    elif meta.kind == dagpb.DIRECTORY:
        path.mkdir()
        for link in links:
            _node(get, link.cid, path / _safe_name(link.name), depth + 1)
    elif meta.kind == dagpb.HAMT_SHARD:
        path.mkdir()
        _shard(get, links, path, depth)
    elif meta.kind == dagpb.SYMLINK:
        os.symlink(meta.data, path)
    else:
        raise CIDError(f"UnixFS node {cid} has unsupported type {meta.kind}")


def _shard(get: BlockGetter, links: list[dagpb.Link], path: Path, depth: int) -> None:
    for link in links:
        if len(link.name) == 2:
            data, sub = dagpb.decode_node(get(link.cid))
            if dagpb.decode_unixfs(data).kind != dagpb.HAMT_SHARD:
                raise CIDError(f"HAMT link {link.name!r} does not lead to a shard")
            _shard(get, sub, path, depth + 1)
        else:
            _node(get, link.cid, path / _safe_name(link.name[2:]), depth + 1)


def _file_chunks(get: BlockGetter, inline: bytes, links: list[dagpb.Link], depth: int) -> Iterable[bytes]:
    if inline:
        yield inline
    for link in links:
        block = get(link.cid)
        if link.cid.codec == RAW:
            yield block
            continue
        data, sub = dagpb.decode_node(block)
        meta = dagpb.decode_unixfs(data)
        if meta.kind != dagpb.FILE or depth > 64:
            raise CIDError(f"file link {link.cid} is not a file node")
        yield from _file_chunks(get, meta.data, sub, depth + 1)


def _write_file(path: Path, chunks: Iterable[bytes]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as out:
        for chunk in chunks:
            out.write(chunk)


def _safe_name(name: bytes) -> str:
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CIDError(f"entry name {name!r} is not UTF-8") from exc
    if not text or text in (".", "..") or "/" in text or "\x00" in text:
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
            except ValueError as exc:
                raise CIDError(f"block {cid} is not a dag-pb node: {exc}") from exc
            stack.extend(link.cid for link in links)


def read_complete_car(data: BinaryIO, expected: CID) -> dict[CID, bytes]:
    """An in-memory CAR rooted at ``expected``: its blocks, checked and complete."""
    roots, blocks = read_car(data)
    if roots != [expected]:
        raise CIDError(f"CAR roots {[str(r) for r in roots]} are not [{expected}]")
    found = dict(blocks)
    check_complete(found, expected)
    return found


def unpack_car(source: BinaryIO, expected: CID, dest: Path, scratch: Path) -> None:
    """Unpack a CAR whose single root must be ``expected`` into ``dest``, atomically.

    Blocks are spooled to a directory under ``scratch`` (flat memory), checked against
    their CIDs, exported, and the result re-imported: it must hash to ``expected``.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=scratch, prefix=".unpack-"))
    try:
        roots, blocks = read_car(source)
        if roots != [expected]:
            raise CIDError(f"CAR roots {[str(r) for r in roots]} are not [{expected}]")
        store = work / "blocks"
        store.mkdir()
        for cid, data in blocks:
            (store / str(cid)).write_bytes(data)

        def get(cid: CID) -> bytes:
            try:
                return (store / str(cid)).read_bytes()
            except FileNotFoundError:
                raise CIDError(f"CAR lacks block {cid}") from None

        tree = work / "tree"
        export(get, expected, tree)
        actual = cid_of_tree(tree)
        if actual != expected:
            raise InputError(
                f"the content of the CAR hashes to {actual}, not to {expected}",
                "cod takes content in its UnixFS profile (unixfs-v1-2025); pack it with cod or ipfs-car",
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(tree, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
