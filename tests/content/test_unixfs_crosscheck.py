"""The importer against independent implementations where the fixtures cannot reach: a file
of more than 1024 chunks (a second level of the balanced tree) and directories of symlinks.

js-ipfs-unixfs (tests/js/unixfs-cid.mjs, profile unixfs-v1-2025) records a symlink as a UnixFS
symlink node, as cod and kubo do; ipfs-car follows symlinks (its file walker stats through
them), so it is compared only on the symlink-free file (SPEC 7.3).
"""

from __future__ import annotations

import os
from pathlib import Path

from cod.content import dagpb
from cod.content.cid import CID, DAG_PB, RAW
from cod.content.unixfs import CHUNK_SIZE, MAX_LINKS, Importer, cid_of_tree

from ..helpers import VECTORS, ipfs_car_cid, js_unixfs_cid

TAIL = 12345


def _big_file(path: Path) -> int:
    """1025 full chunks and a 12345-byte tail: sparse zeros, each chunk stamped with its
    index at its start so no two chunks are equal. Costs no disk and no time to make."""
    size = (MAX_LINKS + 1) * CHUNK_SIZE + TAIL
    with open(path, "wb") as out:
        out.truncate(size)
        for index in range(MAX_LINKS + 2):
            out.seek(index * CHUNK_SIZE)
            out.write(index.to_bytes(8, "little") * 4)
    return size


def test_file_of_more_than_1024_chunks(tmp_path: Path) -> None:
    # ~1 GiB hashed three times (cod, js-ipfs-unixfs, ipfs-car): 10 s alone on 2 cores (sparse, so no disk)
    path = tmp_path / "big.bin"
    size = _big_file(path)
    blocks: dict[CID, bytes] = {}
    root = Importer(sink=lambda cid, data: blocks.__setitem__(cid, bytes(data))).tree(path)
    assert str(root.cid) == js_unixfs_cid(path)
    car = tmp_path / "big.car"
    assert str(root.cid) == ipfs_car_cid(path, car)
    car.unlink()  # a 1 GiB CAR: gone at once, not at session end
    # the shape, derived by hand from SPEC 7.2: 1026 leaves -> a node of the first 1024 and a
    # node of the last 2 -> one root over those two nodes
    data, links = dagpb.decode_node(blocks[root.cid])
    meta = dagpb.decode_unixfs(data)
    assert meta.kind == dagpb.FILE and meta.filesize == size
    assert meta.blocksizes == (MAX_LINKS * CHUNK_SIZE, CHUNK_SIZE + TAIL)
    assert [link.cid.codec for link in links] == [DAG_PB, DAG_PB] and all(link.name == b"" for link in links)
    first, second = (dagpb.decode_node(blocks[link.cid]) for link in links)
    assert len(first[1]) == MAX_LINKS and len(second[1]) == 2
    assert all(link.cid.codec == RAW for link in first[1] + second[1])
    assert root.tsize == len(blocks[root.cid]) + sum(link.tsize for link in links)


def test_directory_of_symlinks_matches_js_importer(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    (root / "dir" / "deeper").mkdir(parents=True)
    (root / "file.txt").write_bytes(b"a file")
    (root / "dir" / "deeper" / "leaf").write_bytes(b"leaf")
    links = {
        "relative": "file.txt",
        "to-dir": "dir",
        "dir/up-and-over": "../file.txt",
        "dir/deeper/climbing": "../../dir/deeper/leaf",
        "dangling": "does-not-exist",
        "absolute": "/etc/passwd",
        "self-loop": "self-loop",
        "ünïcødé link": "ünïcødé target",
        "dir/empty-dir-link": "deeper",
    }
    for name, target in links.items():
        os.symlink(target, root / name)
    (root / "only-links").mkdir()
    os.symlink("../file.txt", root / "only-links" / "a")
    ours = cid_of_tree(root)
    assert str(ours) == js_unixfs_cid(root)
    # each link is its target's text, never what it points to
    os.unlink(root / "to-dir")
    os.symlink("dir/", root / "to-dir")
    assert cid_of_tree(root) != ours
    assert str(cid_of_tree(root)) == js_unixfs_cid(root)


def test_symlink_node_bytes_follow_the_unixfs_spec() -> None:
    # UnixFS spec (specs.ipfs.tech/unixfs, "Symlink"): a dag-pb node with no links whose Data
    # is {Type: Symlink (4), Data: the target's bytes}; written out by hand here
    block = bytes.fromhex("0a0c" "0804" "1208") + b"file.txt"
    entry = Importer().symlink(b"file.txt")
    assert entry.cid == CID.of(DAG_PB, block) and entry.tsize == len(block)


def test_escape_vector_tree_matches_js_importer() -> None:
    # the input of the escape vector holds absolute, climbing, looping and inner symlinks
    escape = VECTORS / "data" / "escape"
    assert str(cid_of_tree(escape)) == js_unixfs_cid(escape)
