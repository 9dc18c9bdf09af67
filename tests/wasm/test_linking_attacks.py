"""Attacks on modules that import modules by CID (cod.wasm.linking, SPEC 5.4): import sections
shaped byte by byte (a million names, 63 CIDs), CIDs in other spellings, exports of the wrong
kind.

CIDs of random digests are made with the CID class from their raw parts, and the expected exit
codes are derived by hand from the WAT.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import aiohttp
import pytest

from cod import Engine, JobSpec, Limits, module_cid, run
from cod.content.cid import CID, DAG_PB
from cod.errors import ImportRefused, MissingModules, ModuleError
from cod.wasm import linking

from ..node_kit import put_module, start_node_in
from .module_kit import MIX, importer, random_cids
from .test_linking import root, wat

PAGE = 65536
B32 = "abcdefghijklmnopqrstuvwxyz234567"


def test_a_huge_import_section_is_refused_in_linear_time() -> None:
    """A module whose import section names 60 000 distinct modules (3.8 MB) made the closure
    walk scan a list per name (quadratic: ~50 s, in the node's submit path before any engine
    check) and parse every name. It is refused within 5 s now (well under 1 s unloaded), each
    way: distinct CIDs (the 64-module cap, met at the 64th), distinct non-CID names, one name
    repeated."""
    many = importer(random_cids(60_000, "wide"))
    started = time.monotonic()
    with pytest.raises(ModuleError, match="more than 64 modules"):
        linking.closure(many, None)
    assert time.monotonic() - started < 5.0  # quadratic before: ~50 s

    junk = [f"b{n:058d}".translate(str.maketrans("0123456789", "abcdefghij")) for n in range(60_000)]
    started = time.monotonic()
    with pytest.raises(ModuleError, match="more than 128 distinct module names"):
        linking.closure(importer(junk), None)
    assert time.monotonic() - started < 5.0  # quadratic before: ~50 s

    one = random_cids(1, "one")[0]
    started = time.monotonic()
    with pytest.raises(MissingModules) as missing:
        linking.closure(importer([one] * 200_000), None)
    assert time.monotonic() - started < 5.0  # quadratic before: ~50 s
    assert missing.value.missing == [one]


def test_a_module_naming_63_cids_is_still_resolved() -> None:
    """The early refusal is exactly the cap: 63 distinct CIDs (plus the root: 64) are walked."""
    cids = random_cids(63, "edge")
    with pytest.raises(MissingModules) as missing:
        linking.closure(importer(cids * 3), None)
    assert missing.value.missing == cids
    with pytest.raises(ModuleError, match="more than 64 modules"):
        linking.closure(importer(cids + random_cids(1, "over")), None)


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


def test_a_dependency_exporting_a_global_under_the_function_s_name_is_refused(engine: Engine,
                                                                             tmp_path: Path) -> None:
    """The dependency exports "mix" as a global, not a function: refused before anything runs."""
    fake = wat('(module (global (export "mix") i32 (i32.const 7)) (memory (export "memory") 1))')
    cid = module_cid(fake)
    top = root(f'(import "{cid}" "mix" (func $mix (param i32 i32) (result i32)))',
               "(call $exit (call $mix (i32.const 1) (i32.const 2)))")
    with pytest.raises(ModuleError, match="exports no such function"):
        run(JobSpec(module=module_cid(top)), top, {}, tmp_path / "r", engine, modules={cid: fake})
    assert not (tmp_path / "r").exists()


async def test_a_spec_spelling_its_module_cid_otherwise_is_refused(tmp_path: Path,
                                                                  http: aiohttp.ClientSession) -> None:
    """SPEC 2: one CID, one spelling. The module CID in upper case, in mixed case and with stray
    bits decodes to the same bytes, so it would give a second job CID for one job: the node
    answers 400 naming the canonical text, and queues nothing."""
    node = await start_node_in(tmp_path, "n")
    try:
        cid = await put_module(http, node.url, MIX)
        for other in ("B" + cid[1:].upper(), "b" + cid[1:].upper(), _stray_bits(cid)):
            spec = JobSpec(module=cid).to_dict()
            spec["module"] = other
            async with http.post(f"{node.url}/v1/jobs", json={"spec": spec}) as resp:
                body = await resp.json()
                assert resp.status == 400, body
            assert cid in str(body) or "not a CIDv1" in str(body), body
        async with http.get(f"{node.url}/v1/jobs") as resp:
            listed = await resp.json()
        assert listed == {"jobs": []}, listed
    finally:
        await node.stop()
