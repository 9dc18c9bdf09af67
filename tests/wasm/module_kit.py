"""Modules for the linking attacks: import sections written byte by byte (LEB128, names), CIDs of
random digests, and a small library with a root that imports it by CID.
"""

from __future__ import annotations

import hashlib

from cod import module_cid
from cod.content.cid import CID, RAW

from .test_linking import root, wat


def leb(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def name_bytes(text: str) -> bytes:
    data = text.encode()
    return leb(len(data)) + data


def importer(module_names: list[str]) -> bytes:
    """A module with one type, () -> (), and one function import "f" from each module name."""
    types = b"\x01" + leb(4) + b"\x01\x60\x00\x00"
    body = leb(len(module_names)) + b"".join(name_bytes(m) + name_bytes("f") + b"\x00\x00" for m in module_names)
    return b"\x00asm\x01\x00\x00\x00" + types + b"\x02" + leb(len(body)) + body


def random_cids(count: int, salt: str) -> list[str]:
    return [str(CID(RAW, hashlib.sha256(f"{salt}{n}".encode()).digest())) for n in range(count)]


MIX = wat('(module (func (export "mix") (param i32 i32) (result i32) '
          '(i32.add (i32.mul (local.get 0) (i32.const 31)) (local.get 1))) (memory (export "memory") 1))')
MIX_TOP = root(f'(import "{module_cid(MIX)}" "mix" (func $mix (param i32 i32) (result i32)))',
               "(call $exit (call $mix (i32.const 1) (i32.const 2)))")  # exits 1*31 + 2 = 33
