from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from cod.content import dagpb
from cod.content.car import write_car
from cod.content.cid import CID, DAG_PB, RAW
from cod.content.dagpb import Link
from cod.content.export import export, unpack_car
from cod.content.unixfs import CHUNK_SIZE, Importer, cid_of_tree
from cod.errors import CIDError, CodError

from ..helpers import chacha_bytes, ipfs_car_cid
from .test_car import _same_tree


def _tree(root: Path) -> Path:
    (root / "sub" / "empty").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"alpha")
    (root / ".hidden").write_bytes(b"")
    (root / "sub" / "big.bin").write_bytes(chacha_bytes(2 * CHUNK_SIZE + 3, "export"))
    os.symlink("a.txt", root / "link")
    return root


def test_car_round_trip(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    car = tmp_path / "t.car"
    root = write_car(src, car)
    with open(car, "rb") as f:
        unpack_car(f, root, tmp_path / "out", tmp_path / "scratch")
    assert _same_tree(src, tmp_path / "out")
    assert os.readlink(tmp_path / "out" / "link") == "a.txt"
    assert cid_of_tree(tmp_path / "out") == root


def test_ipfs_car_packs_are_accepted(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "one").write_bytes(b"1")
    (src / "two.bin").write_bytes(chacha_bytes(CHUNK_SIZE + 9, "two"))
    car = tmp_path / "ipfs.car"
    root = ipfs_car_cid(src, car)
    with open(car, "rb") as f:
        unpack_car(f, cid_of_tree(src), tmp_path / "out", tmp_path / "scratch")
    assert str(cid_of_tree(tmp_path / "out")) == root


def test_hamt_directory_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2500):
        (src / f"entry-{i:05d}-{'y' * 90}").write_bytes(b"%d" % i)
    car = tmp_path / "h.car"
    root = write_car(src, car)
    with open(car, "rb") as f:
        unpack_car(f, root, tmp_path / "out", tmp_path / "scratch")
    assert sorted(os.listdir(tmp_path / "out")) == sorted(os.listdir(src))


def test_tampered_and_wrong_cars_are_refused(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    car = tmp_path / "t.car"
    root = write_car(src, car)
    data = bytearray(car.read_bytes())
    data[-5] ^= 1  # inside the last block
    with pytest.raises(CIDError, match="does not hash"):
        unpack_car(io.BytesIO(bytes(data)), root, tmp_path / "o1", tmp_path / "s")
    other = Importer().add_bytes(b"something else").cid
    with pytest.raises(CIDError, match="roots"):
        unpack_car(io.BytesIO(car.read_bytes()), other, tmp_path / "o2", tmp_path / "s")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()
    assert os.listdir(tmp_path / "s") == []


def test_a_car_missing_a_block_is_incomplete(tmp_path: Path) -> None:
    from cod.content.car import read_car
    from cod.content.export import check_complete, read_complete_car

    src = _tree(tmp_path / "src")
    car = tmp_path / "t.car"
    root = write_car(src, car)
    with open(car, "rb") as f:
        blocks = dict(read_car(f)[1])
    assert read_complete_car(io.BytesIO(car.read_bytes()), root).keys() == blocks.keys()
    leaf = next(cid for cid in blocks if cid != root and cid.codec == 0x55)
    del blocks[leaf]
    with pytest.raises(CIDError, match="lacks block"):
        check_complete(blocks, root)


# -- hostile results: links never lead the writer out of its directory (SPEC 7, 11) --------
def _blocks_of(tree: Path) -> tuple[CID, dict[CID, bytes]]:
    blocks: dict[CID, bytes] = {}
    root = Importer(sink=lambda cid, data: blocks.__setitem__(cid, bytes(data))).tree(tree)
    return root.cid, blocks


def _dir_node(blocks: dict[CID, bytes], entries: list[tuple[bytes, CID]]) -> CID:
    block = dagpb.encode_node(dagpb.unixfs_data(dagpb.DIRECTORY), [Link(c, n, len(blocks[c])) for n, c in entries])
    cid = CID.of(DAG_PB, block)
    blocks[cid] = block
    return cid


def _symlink_node(blocks: dict[CID, bytes], target: bytes) -> CID:
    block = dagpb.encode_node(dagpb.unixfs_data(dagpb.SYMLINK, data=target), [])
    cid = CID.of(DAG_PB, block)
    blocks[cid] = block
    return cid


def test_a_directory_swapped_for_a_link_mid_export_is_not_written_through(tmp_path: Path) -> None:
    """Someone replaces a directory the writer made with a link to elsewhere before its
    entries are written: the entries still go into the directory the writer made."""
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "x").write_bytes(b"payload")
    root, blocks = _blocks_of(src)
    leaf = CID.of(RAW, b"payload")
    outside, dest, moved = tmp_path / "outside", tmp_path / "dest", tmp_path / "moved"
    outside.mkdir()

    def get(cid: CID) -> bytes:
        if cid == leaf and (dest / "a").is_dir() and not (dest / "a").is_symlink():
            os.rename(dest / "a", moved)
            os.symlink(outside, dest / "a")
        return blocks[cid]

    try:
        export(get, root, dest)
    except CodError:
        pass  # refusing is fine too; writing through the link is not
    assert os.listdir(outside) == []
    assert (moved / "x").read_bytes() == b"payload"


def test_hostile_link_trees_are_refused_or_written_as_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    blocks: dict[CID, bytes] = {}
    file_cid = CID.of(RAW, b"evil")
    blocks[file_cid] = b"evil"
    inner = _dir_node(blocks, [(b"x", file_cid)])
    for n, (target, entries) in enumerate([
        (os.fsencode(outside), [(b"a", "link"), (b"a", inner)]),  # a link, then a directory of the same name
        (b"../..", [(b"a", "link"), (b"a", file_cid)]),  # a link, then a file of the same name
        (b"..", [(b"a", "link"), (b"a/x", file_cid)]),  # an entry through the link
        (b"..", [(b"..", file_cid)]),
    ]):
        link = _symlink_node(blocks, target)
        root = _dir_node(blocks, [(name, link if c == "link" else c) for name, c in entries])  # type: ignore[misc]
        with pytest.raises(CIDError):
            export(blocks.__getitem__, root, tmp_path / f"dest{n}")
        assert not (tmp_path / f"dest{n}").exists() or os.listdir(tmp_path / f"dest{n}") in ([], ["a"])
    for target in (b"", b"a\x00b", b"x" * 1025):  # targets no host or importer holds
        root = _dir_node(blocks, [(b"l", _symlink_node(blocks, target))])
        with pytest.raises(CIDError, match="symlink"):
            export(blocks.__getitem__, root, tmp_path / "bad")
    assert os.listdir(outside) == []
    # links to anywhere are written as links, never followed; the result hashes as it came
    links = [(b"abs", _symlink_node(blocks, os.fsencode(outside))), (b"up", _symlink_node(blocks, b"../../..")),
             (b"z-file", file_cid)]
    root = _dir_node(blocks, links)
    export(blocks.__getitem__, root, tmp_path / "good")
    assert os.readlink(tmp_path / "good" / "abs") == str(outside)
    assert os.readlink(tmp_path / "good" / "up") == "../../.."
    assert os.listdir(outside) == [] and cid_of_tree(tmp_path / "good") == root
