from __future__ import annotations

import filecmp
from pathlib import Path

from cod.content.car import header, write_car
from cod.content.cid import CID, RAW
from cod.content.unixfs import CHUNK_SIZE, cid_of_tree

from ..helpers import chacha_bytes, ipfs_car


def _same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files:
        return False
    for name in cmp.common_files:
        if not filecmp.cmp(a / name, b / name, shallow=False):
            return False
    return all(_same_tree(a / d, b / d) for d in cmp.common_dirs)


def test_car_unpacks_and_verifies_with_ipfs_car(tmp_path: Path) -> None:
    root = tmp_path / "results"
    (root / "outputs" / "nested").mkdir(parents=True)
    (root / "stdout").write_bytes(b"hello\n")
    (root / "stderr").write_bytes(b"")
    (root / "exitCode").write_text("0")
    (root / "outputs" / "nested" / "big.bin").write_bytes(chacha_bytes(2 * CHUNK_SIZE + 5, "car"))
    (root / "outputs" / "same-as-stdout").write_bytes(b"hello\n")  # a block shared by two files
    car = tmp_path / "r.car"
    cid = write_car(root, car)
    assert cid == cid_of_tree(root)
    assert ipfs_car("roots", str(car)).stdout.strip() == str(cid)
    ipfs_car("unpack", str(car), "--output", str(tmp_path / "unpacked"))  # verifies every block's hash
    assert _same_tree(root, tmp_path / "unpacked")


def test_header_is_dag_cbor_by_hand() -> None:
    root = CID.of(RAW, b"x")
    body = header(root)[1:]
    assert header(root)[0] == len(body)
    assert body.startswith(b"\xa2\x65roots\x81\xd8\x2a\x58\x25\x00")  # map(2) "roots" [tag 42 bytes(37)]
    assert body[13 : 13 + 36] == root.binary
    assert body.endswith(b"\x67version\x01")
