"""Adversarial tests of Stage 6, second round: modules that import modules by CID (SPEC 5.4)
as nodes fetch them, private modules used as dependencies, and the requester's re-upload loop.

Each test is one attack. Wasm binaries whose import sections the attack shapes are written
byte by byte here (LEB128, names), CIDs of random digests are made with the CID class from
their raw parts, and the expected exit codes are derived by hand from the WAT.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from cod import Engine, JobSpec, Limits, module_cid, run
from cod.cid import CID, DAG_PB, RAW
from cod.errors import ImportRefused, MissingModules, ModuleError
from cod.local import prepare
from cod.wasm import linking

from .node_kit import CAR_TYPE, car, raw
from .test_linking import root, wat
from .test_stage6_attacks import Gateway, _forward, _put_module, _start, _submit, _until

PAGE = 65536
B32 = "abcdefghijklmnopqrstuvwxyz234567"


# -- wasm binaries written byte by byte -------------------------------------------------------

def _leb(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _name(text: str) -> bytes:
    data = text.encode()
    return _leb(len(data)) + data


def _importer(module_names: list[str]) -> bytes:
    """A module with one type, () -> (), and one function import "f" from each module name."""
    types = b"\x01" + _leb(4) + b"\x01\x60\x00\x00"
    body = _leb(len(module_names)) + b"".join(_name(m) + _name("f") + b"\x00\x00" for m in module_names)
    return b"\x00asm\x01\x00\x00\x00" + types + b"\x02" + _leb(len(body)) + body


def _random_cids(count: int, salt: str) -> list[str]:
    return [str(CID(RAW, hashlib.sha256(f"{salt}{n}".encode()).digest())) for n in range(count)]


# -- 1. huge import sections -------------------------------------------------------------------

def test_a_huge_import_section_is_refused_in_linear_time() -> None:
    """A module whose import section names 60 000 distinct modules (3.8 MB) made the closure
    walk scan a list per name (quadratic: ~50 s, in the node's submit path before any engine
    check) and parse every name. It is refused in well under 2 s now, each way: distinct
    CIDs (the 64-module cap, met at the 64th), distinct non-CID names, one name repeated."""
    many = _importer(_random_cids(60_000, "wide"))
    started = time.monotonic()
    with pytest.raises(ModuleError, match="more than 64 modules"):
        linking.closure(many, None)
    assert time.monotonic() - started < 2.0

    junk = [f"b{n:058d}".translate(str.maketrans("0123456789", "abcdefghij")) for n in range(60_000)]
    started = time.monotonic()
    with pytest.raises(ModuleError, match="more than 128 distinct module names"):
        linking.closure(_importer(junk), None)
    assert time.monotonic() - started < 2.0

    one = _random_cids(1, "one")[0]
    started = time.monotonic()
    with pytest.raises(MissingModules) as missing:
        linking.closure(_importer([one] * 200_000), None)
    assert time.monotonic() - started < 2.0
    assert missing.value.missing == [one]


def test_a_module_naming_63_cids_is_still_resolved() -> None:
    """The early refusal is exactly the cap: 63 distinct CIDs (plus the root: 64) are walked."""
    cids = _random_cids(63, "edge")
    with pytest.raises(MissingModules) as missing:
        linking.closure(_importer(cids * 3), None)
    assert missing.value.missing == cids
    with pytest.raises(ModuleError, match="more than 64 modules"):
        linking.closure(_importer(cids + _random_cids(1, "over")), None)


# -- 2. one spelling per CID -------------------------------------------------------------------

MIX = wat('(module (func (export "mix") (param i32 i32) (result i32) '
          '(i32.add (i32.mul (local.get 0) (i32.const 31)) (local.get 1))) (memory (export "memory") 1))')


def _stray_bits(cid: str) -> str:
    """The same bytes with a nonzero bit past the last byte (a raw sha2-256 CIDv1 is 36 bytes,
    288 bits, in 58 base32 digits: 290 bits, the last digit's two low bits unused)."""
    assert len(cid) == 59
    last = B32.index(cid[-1])
    spelled = cid[:-1] + B32[last | 1]
    assert spelled != cid and base64.b32decode(spelled[1:].upper() + "======") == \
        base64.b32decode(cid[1:].upper() + "======")
    return spelled


def test_a_cidv1_in_another_spelling_is_not_a_cid_name(engine: Engine, tmp_path: Path) -> None:
    """SPEC 5.4 reads CIDv1 names as base32 *lower*; the linker took "bAFKREI..." and a
    spelling with stray bits as the same CID (case folded, bits dropped), so one module linked
    under names another implementation of the spec refuses. Now only the canonical text is a
    CID name; the others are module names held to 4.1 (ImportRefused)."""
    cid = module_cid(MIX)
    upper = "b" + cid[1:].upper()
    for other in (upper, "bafk" + cid[4:].upper(), _stray_bits(cid)):
        assert linking.cid_name(other) is None, other
        top = root(f'(import "{other}" "mix" (func $mix (param i32 i32) (result i32)))',
                   "(call $exit (call $mix (i32.const 1) (i32.const 2)))")
        spec = JobSpec(module=module_cid(top))
        with pytest.raises(ImportRefused):
            run(spec, top, {}, tmp_path / "r", engine, modules={cid: MIX})
        assert not (tmp_path / "r").exists()
    assert linking.cid_name(cid) == cid


def test_two_spellings_of_one_module_link_one_instance(engine: Engine, tmp_path: Path) -> None:
    """A module over 1 MiB is a dag-pb file: its CIDv1 (bafybei...) and its CIDv0 (Qm...) both
    name it. A root importing a counter through both names must share one instance (SPEC 5.4:
    "instantiated once ... under whatever names"): 1st call 1, 2nd call 2, exit 1*10 + 2 = 12
    (two instances would give 11)."""
    import base58  # type: ignore[import-untyped]  # py-multihash's dependency

    filler = "x" * (1 << 20)  # a data segment that pushes the module over 1 MiB
    counter = wat('(module (global $n (mut i32) (i32.const 0)) (memory (export "memory") 17) '
                  f'(data (i32.const 0) "{filler}") '
                  '(func (export "inc") (result i32) (global.set $n (i32.add (global.get $n) (i32.const 1))) '
                  '(global.get $n)))')
    assert len(counter) > 1 << 20
    v1 = module_cid(counter)
    parsed = CID.parse(v1)
    assert parsed.codec == DAG_PB
    v0 = base58.b58encode(bytes((0x12, 32)) + parsed.digest).decode()
    assert v0.startswith("Qm") and len(v0) == 46
    top = root(f'(import "{v1}" "inc" (func $a (result i32))) (import "{v0}" "inc" (func $b (result i32)))',
               "(call $exit (i32.add (i32.mul (call $a) (i32.const 10)) (call $b)))")
    spec = JobSpec(module=module_cid(top), limits=Limits(memory_bytes=32 * PAGE))
    result = run(spec, top, {}, tmp_path / "r", engine, modules={v1: counter})
    assert result.exit_code == 12
