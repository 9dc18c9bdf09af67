from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from cod.content.car import write_car
from cod.content.export import unpack_car
from cod.content.unixfs import CHUNK_SIZE, Importer, cid_of_tree
from cod.errors import CIDError

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
