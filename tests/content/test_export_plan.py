"""The CAR plan (cod/content/export.py) on its own: totals against an independent walk of the host
tree, HAMT abuse, the writer's own byte count, and a requester fetching a bomb."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from cod.content import dagpb
from cod.content.car import write_car
from cod.content.cid import CID
from cod.content.dagpb import Link
from cod.content.export import DIRECTORY, FILE, TreeCaps, _Writer, export, plan, read_complete_car
from cod.content.unixfs import Importer
from cod.errors import CapExceeded, CIDError

from ..helpers import VECTORS
from ..node_kit import car, pb, raw


def _blocks(path: Path) -> tuple[CID, dict[CID, bytes]]:
    found: dict[CID, bytes] = {}

    def keep(cid: CID, data: memoryview) -> None:
        found[cid] = bytes(data)

    root = Importer(sink=keep).tree(path).cid
    return root, found


def _walk(path: Path) -> tuple[int, int, int]:
    """(bytes of regular files, entries, depth) by os.walk: the independent count."""
    size, entries, depth = 0, 0, 0
    for folder, dirs, files in os.walk(path):
        level = 0 if Path(folder) == path else len(Path(folder).relative_to(path).parts)
        for name in dirs + files:
            entries += 1
            depth = max(depth, level + 1)
            if not os.path.islink(Path(folder) / name) and name in files:
                size += os.lstat(Path(folder) / name).st_size
    return size, entries, depth


def test_plan_agrees_with_an_independent_walk(tmp_path: Path) -> None:
    for tree in (VECTORS / "data" / "wordcount", VECTORS / "data"):
        root, blocks = _blocks(tree)
        decided = plan(blocks.__getitem__, root)
        assert decided.kind == DIRECTORY and (decided.size, decided.entries, decided.depth) == _walk(tree)
    big = tmp_path / "hamt"
    big.mkdir()
    for i in range(2500):  # a HAMT directory (its flat node would be over 256 KiB)
        (big / f"entry-{i:05d}-{'y' * 90}").write_bytes(b"%d" % i)
    root, blocks = _blocks(big)
    assert dagpb.decode_unixfs(dagpb.decode_node(blocks[root])[0]).kind == dagpb.HAMT_SHARD
    decided = plan(blocks.__getitem__, root)
    assert (decided.size, decided.entries, decided.depth) == _walk(big)
    one, blocks = _blocks(VECTORS / "hello.wasm")
    assert plan(blocks.__getitem__, one).kind == FILE


def test_a_hamt_cannot_repeat_a_bucket_or_hold_a_thin_sub_shard() -> None:
    leaf, leaf_block = raw(b"x")
    shard_data = dagpb.unixfs_data(dagpb.HAMT_SHARD, data=b"\x01", hash_type=dagpb.MURMUR3_X64_64, fanout=256)
    twice = dagpb.encode_node(shard_data, [Link(leaf, b"00a", 1), Link(leaf, b"00b", 1)])
    twice_cid = CID.of(0x70, twice)
    with pytest.raises(CIDError, match="bucket prefix"):
        plan({leaf: leaf_block, twice_cid: twice}.__getitem__, twice_cid)
    thin = dagpb.encode_node(shard_data, [Link(leaf, b"00a", 1)])
    thin_cid = CID.of(0x70, thin)
    outer = dagpb.encode_node(shard_data, [Link(thin_cid, b"00", 1)])
    outer_cid = CID.of(0x70, outer)
    with pytest.raises(CIDError, match="fewer than two"):
        plan({leaf: leaf_block, thin_cid: thin, outer_cid: outer}.__getitem__, outer_cid)


def test_a_file_cannot_link_an_empty_block_or_lie_about_its_size() -> None:
    empty, empty_block = raw(b"")
    zeros, zeros_block = pb(dagpb.FILE, [Link(empty, b"", 0)] * 3, filesize=0, blocksizes=[0] * 3)
    with pytest.raises(CIDError, match="empty block"):
        plan({empty: empty_block, zeros: zeros_block}.__getitem__, zeros)
    leaf, leaf_block = raw(b"abc")
    liar, liar_block = pb(dagpb.FILE, [Link(leaf, b"", 3)] * 2, filesize=5, blocksizes=[3, 3])
    with pytest.raises(CIDError, match="declares 5 bytes but its blocks hold 6"):
        plan({leaf: leaf_block, liar: liar_block}.__getitem__, liar)


def test_the_writer_counts_what_it_writes(tmp_path: Path) -> None:
    leaf, leaf_block = raw(b"0123456789")
    with pytest.raises(CapExceeded, match="max_unpacked_bytes"):
        _Writer({leaf: leaf_block}.__getitem__, 9).node(leaf, tmp_path / "f")
    _Writer({leaf: leaf_block}.__getitem__, 10).node(leaf, tmp_path / "g")
    assert (tmp_path / "g").read_bytes() == b"0123456789"


def test_a_requester_fetching_a_bomb_writes_nothing(tmp_path: Path) -> None:
    """The requester's in-memory path (read_complete_car, then export) is planned too."""
    leaf, leaf_block = raw(bytes(1 << 20))
    fat, fat_block = pb(dagpb.FILE, [Link(leaf, b"", 1 << 20)] * 4096, filesize=4096 << 20,
                        blocksizes=[1 << 20] * 4096)
    root, root_block = pb(dagpb.DIRECTORY, [Link(fat, b"%d" % i, 0) for i in range(4)])
    blocks = read_complete_car(io.BytesIO(car([root], [(leaf, leaf_block), (fat, fat_block), (root, root_block)])),
                               root)
    with pytest.raises(CapExceeded, match="max_unpacked_bytes = 8589934592"):
        export(blocks.__getitem__, root, tmp_path / "out")  # 4 x 4 GiB = 16 GiB declared
    assert not (tmp_path / "out").exists()
    with pytest.raises(CapExceeded, match="max_car_blocks"):
        read_complete_car(io.BytesIO(car([root], [(leaf, leaf_block)] * 3)), root, TreeCaps(max_car_blocks=2))


def test_a_car_written_by_cod_is_planned_like_its_tree(tmp_path: Path) -> None:
    target = tmp_path / "t.car"
    root = write_car(VECTORS / "data", target)
    with open(target, "rb") as source:
        blocks = read_complete_car(source, root)
    decided = plan(blocks.__getitem__, root)
    assert (decided.size, decided.entries, decided.depth) == _walk(VECTORS / "data")
