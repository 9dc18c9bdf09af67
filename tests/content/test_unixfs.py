"""The importer against fixtures of independent implementations and against them live.

Fixture CIDs come from kubo's test/cli/cid_profiles and add tests and js-ipfs-unixfs's
ipip-499 profile tests (both computed by those implementations); the live checks run
ipfs-car 3.1.0 and the js-ipfs-unixfs 17 importer on the same files.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cod.content.unixfs import CHUNK_SIZE, HAMT_THRESHOLD, Importer, cid_of_tree

from ..helpers import chacha_bytes, ipfs_car_cid, js_unixfs_cid

ALPHABET = "abcdefghijklmnopqrstuvwxyz01234567890-_"


def _fixture_names(count: int, length: int, last_length: int, seed: str) -> list[bytes]:
    stream = chacha_bytes(1 << 20, seed)
    names, offset = [], 0
    for i in range(count):
        n = last_length if i == count - 1 else length
        names.append("".join(ALPHABET[stream[offset + j] % len(ALPHABET)] for j in range(n)).encode())
        offset += n
    return names


def test_empty_directory_matches_fixture() -> None:
    assert str(Importer().directory({}).cid) == "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"


def test_chunk_boundary_fixtures() -> None:
    imp = Importer()
    one = imp.add_bytes(chacha_bytes(CHUNK_SIZE, "chunk-v1-seed"))
    assert str(one.cid) == "bafkreiacndfy443ter6qr2tmbbdhadvxxheowwf75s6zehscklu6ezxmta"
    over = imp.add_bytes(chacha_bytes(CHUNK_SIZE + 1, "chunk-v1-seed"))
    assert str(over.cid) == "bafybeigmix7t42i6jacydtquhet7srwvgpizfg7gjbq7627d35mjomtu64"


@pytest.mark.parametrize(
    ("last", "expected"),
    [
        (21, "bafybeic3h7rwruealwxkacabdy45jivq2crwz6bufb5ljwupn36gicplx4"),  # exactly 256 KiB: flat
        (22, "bafybeiegvuterwurhdtkikfhbxcldohmxp566vpjdofhzmnhv6o4freidu"),  # one byte over: HAMT
    ],
)
def test_hamt_threshold_fixtures(last: int, expected: str) -> None:
    imp = Importer()
    x = imp.add_bytes(b"x")
    names = _fixture_names(4766, 11, last, "hamt-unixfs-v1-2025")
    assert str(imp.directory({name: x for name in names}).cid) == expected




def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, 40 * CHUNK_SIZE])
def test_files_match_ipfs_car_and_js_importer(tmp_path: Path, size: int) -> None:
    path = _write(tmp_path / "f.bin", chacha_bytes(size, f"size-{size}"))
    ours = str(cid_of_tree(path))
    assert ours == ipfs_car_cid(path, tmp_path / "f.car")
    assert ours == js_unixfs_cid(path)


def test_tree_with_odd_names_and_hidden_files(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    _write(root / ".hidden", b"secret")
    _write(root / "a b.txt", b"space")
    _write(root / "ünïcødé ☃.txt", b"unicode")
    _write(root / "Z-upper", b"upper sorts before lower")
    _write(root / "nested" / "deeper" / "deepest" / "leaf", b"leaf" * 1000)
    _write(root / "nested" / ".dot" / "x", b"")
    _write(root / "big.bin", chacha_bytes(3 * CHUNK_SIZE + 17, "big"))
    ours = str(cid_of_tree(root))
    assert ours == ipfs_car_cid(root, tmp_path / "t.car")
    assert ours == js_unixfs_cid(root)


def test_empty_directories_match_js_importer(tmp_path: Path) -> None:
    # ipfs-car v3 drops empty directories; kubo and js-ipfs-unixfs keep them, and so does cod
    root = tmp_path / "tree"
    (root / "empty").mkdir(parents=True)
    (root / "full" / "also-empty").mkdir(parents=True)
    _write(root / "full" / "file", b"content")
    assert str(cid_of_tree(root)) == js_unixfs_cid(root)


def test_hamt_directory_matches_js_importer(tmp_path: Path) -> None:
    # a directory with long names, over the threshold: sharded the same way by both
    root = tmp_path / "many"
    root.mkdir()
    for i in range(2200):
        (root / f"file-with-a-rather-long-name-{i:06d}-{'x' * 60}.txt").write_bytes(str(i).encode())
    blocks = {}
    imp = Importer(sink=lambda cid, data: blocks.__setitem__(cid, bytes(data)))
    ours = imp.tree(root)
    assert str(ours.cid) == js_unixfs_cid(root)
    # it really was sharded: a flat node of these links would be over 256 KiB
    assert sum(len(name) + 40 for name in os.listdir(root)) > HAMT_THRESHOLD
    assert len(blocks[ours.cid]) < HAMT_THRESHOLD
    assert b"\x08\x05" in blocks[ours.cid]  # UnixFS type HAMTShard


def test_symlinks_are_recorded_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    _write(root / "target", b"data")
    os.symlink("/etc/passwd", root / "out")
    with_link = cid_of_tree(root)
    os.unlink(root / "out")
    os.symlink("/etc/hostname", root / "out")
    assert cid_of_tree(root) != with_link  # the target text is part of the CID
