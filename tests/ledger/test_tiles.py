"""cod.ledger.tiles against C2SP tlog-tiles' examples and RFC 9162 subtree hashes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cod.ledger.merkle import MemoryHashes, leaf_hash, root_of_hashes, tree_hash
from cod.ledger.tiles import (
    MAX_ENTRY_BYTES, TILE_WIDTH, TileError, bundle, covered, entries_path, parse_entries_path,
    parse_tile_path, tile_bytes, tile_hashes, tile_path, tiles_of, unbundle,
)


def test_c2sp_path_examples() -> None:
    # tlog-tiles.md: "index 1234067 will be encoded as x001/x234/067"
    assert tile_path(0, 1234067) == "tile/0/x001/x234/067"
    assert parse_tile_path("tile/0/x001/x234/067") == (0, 1234067, 256)
    assert tile_path(1, 5, 17) == "tile/1/005.p/17"
    assert parse_tile_path("/tile/1/005.p/17") == (1, 5, 17)
    assert tile_path(2, 1000) == "tile/2/x001/000"
    assert entries_path(273, 112) == "tile/entries/273.p/112"
    assert parse_entries_path("tile/entries/x001/x234/067") == (1234067, 256)
    assert tile_path(63, 0) == "tile/63/000"


@pytest.mark.parametrize("path", [
    "tile/0/1234067", "tile/0/x1/234/067", "tile/0/001/234/067", "tile/0/x001/x234/x067",
    "tile/0/x000/005", "tile/00/005", "tile/64/000", "tile/-1/000", "tile/0/005.p/0", "tile/0/005.p/256",
    "tile/0/005.p/08", "tile/0/005.p/", "tile/0/005/", "tile/0/", "tile/entries/005", "tiles/0/005",
    "tile/0/0a5", "tile/0/٠٠٥", "tile/0/" + "x001/" * 60 + "000", "tile/0/005.p/17.p/3",
])
def test_bad_paths_refused(path: str) -> None:
    with pytest.raises(TileError):
        parse_tile_path(path)


@pytest.mark.parametrize("path", ["tile/entries/", "tile/entries/5", "tile/0/005", "tile/entries/005.p/256"])
def test_bad_entries_paths_refused(path: str) -> None:
    with pytest.raises(TileError):
        parse_entries_path(path)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 63), st.integers(0, 2**63 // 256), st.integers(1, 256))
def test_path_round_trip(level: int, index: int, width: int) -> None:
    assert parse_tile_path(tile_path(level, index, width)) == (level, index, width)
    assert parse_entries_path(entries_path(index, width)) == (index, width)


def test_c2sp_tiles_of_70000_and_256() -> None:
    # tlog-tiles.md: size 70,000 = 273 full level-0 tiles, one partial level-0 tile of width 112,
    # one full level-1 tile, one partial level-1 tile of width 17, one partial level-2 tile of width 1.
    tiles = tiles_of(70000)
    assert [t for t in tiles if t[0] == 0 and t[2] == 256] == [(0, n, 256) for n in range(273)]
    assert [t for t in tiles if t[2] != 256 or t[0] > 0] == [(0, 273, 112), (1, 0, 256), (1, 1, 17), (2, 0, 1)]
    # "a tree of size 256 will be represented by a full level 0 tile and a partial level 1 tile of width 1"
    assert tiles_of(256) == [(0, 0, 256), (1, 0, 1)]
    assert tiles_of(0) == []
    for level, index, width in tiles:
        assert covered(level, index, width, 70000)
    assert not covered(0, 273, 113, 70000) and not covered(0, 273, 256, 70000)
    assert not covered(1, 1, 18, 70000) and not covered(2, 0, 2, 70000) and not covered(3, 0, 1, 70000)
    assert covered(0, 273, 100, 70000)  # an older partial tile is still covered


@pytest.fixture(scope="module")
def tree() -> tuple[MemoryHashes, list[bytes]]:
    entries = [hashlib.sha256(i.to_bytes(4, "big")).digest()[: i % 40] for i in range(65536 + 300)]
    mem = MemoryHashes()
    for e in entries:
        mem.append(leaf_hash(e))
    return mem, entries


def test_tile_contents_are_subtree_hashes(tree: tuple[MemoryHashes, list[bytes]]) -> None:
    mem, entries = tree
    # level 0: the leaf hashes
    t0 = tile_hashes(tile_bytes(0, 3, 256, mem.read), 256)
    assert t0 == [leaf_hash(e) for e in entries[768:1024]]
    # level 1: each hash is the root of the 256 hashes of one full level-0 tile below
    t1 = tile_hashes(tile_bytes(1, 0, 256, mem.read), 256)
    for i in (0, 3, 255):
        below = tile_hashes(tile_bytes(0, i, 256, mem.read), 256)
        assert t1[i] == root_of_hashes(below)
    # level 2, width 1: the root of the first 65536 leaves
    assert tile_bytes(2, 0, 1, mem.read) == tree_hash(65536, mem.read)
    # a partial level-0 tile is a prefix of the full one
    assert tile_bytes(0, 3, 10, mem.read) == tile_bytes(0, 3, 256, mem.read)[:320]
    # the rightmost partial tile of the tree
    last = [t for t in tiles_of(len(entries)) if t[0] == 0][-1]
    assert last == (0, 257, 44)
    assert tile_hashes(tile_bytes(*last, mem.read), 44) == [leaf_hash(e) for e in entries[257 * 256:]]


def test_tile_hashes_strict() -> None:
    with pytest.raises(TileError):
        tile_hashes(bytes(32 * 3 + 1), 3)
    with pytest.raises(TileError):
        tile_hashes(bytes(32 * 3), 4)
    with pytest.raises(TileError):
        tile_bytes(0, 0, 2, lambda idx: [bytes(32)])


def test_bundle_bytes_written_out() -> None:
    assert bundle([b"ab", b"", b"xyz"]) == b"\x00\x02ab\x00\x00\x00\x03xyz"
    assert unbundle(b"\x00\x02ab\x00\x00\x00\x03xyz") == [b"ab", b"", b"xyz"]
    big = bytes(MAX_ENTRY_BYTES)
    assert unbundle(bundle([big])) == [big]


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x03ab", b"\x00\x02ab\x00", b"\xff\xff" + bytes(10),
                                  b"\x00\x00" * 257])
def test_bad_bundles_refused(data: bytes) -> None:
    with pytest.raises(TileError):
        unbundle(data)


def test_bundle_bounds() -> None:
    with pytest.raises(TileError):
        bundle([bytes(MAX_ENTRY_BYTES + 1)])
    with pytest.raises(TileError):
        bundle([])
    with pytest.raises(TileError):
        bundle([b""] * (TILE_WIDTH + 1))
    with pytest.raises(TileError, match="not 3"):
        unbundle(bundle([b"a", b"b"]), 3)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=256))
def test_bundle_round_trip(entries: list[bytes]) -> None:
    assert unbundle(bundle(entries), len(entries)) == entries


def test_golang_tlog_tile_path_vectors() -> None:
    # vectors/tlog/golang-mod-tlog-tile-paths.json (origin named there): sumdb paths carry the
    # height first; without it, the level and index encoding is C2SP's.
    data = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "tlog" /
                       "golang-mod-tlog-tile-paths.json").read_text())
    checked = 0
    for case in data["tile_paths"]:
        c2sp = "tile/" + case["path"].split("/", 2)[2]
        tile = case["tile"]
        if not tile:
            with pytest.raises(TileError):
                parse_tile_path(c2sp)
        elif tile["L"] == -1:  # Go's data tiles are C2SP's entry bundles
            assert parse_entries_path(c2sp.replace("tile/data/", "tile/entries/")) == (tile["N"], 256)
        else:
            full = tile["W"] == 1 << tile["H"]
            level, index, width = parse_tile_path(c2sp)
            assert (level, index) == (tile["L"], tile["N"])
            assert width == (256 if full else tile["W"])
            assert tile_path(level, index, width) == c2sp
        checked += 1
    assert checked == 8
