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
import types
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from cod import Engine, JobSpec, Limits, module_cid, run
from cod.content.cid import CID, DAG_PB, RAW
from cod.errors import ImportRefused, MissingModules, ModuleError
from cod.local import prepare
from cod.wasm import linking

from .helpers import VECTORS
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
    check) and parse every name. It is refused within 5 s now (well under 1 s unloaded), each
    way: distinct CIDs (the 64-module cap, met at the 64th), distinct non-CID names, one name
    repeated."""
    many = _importer(_random_cids(60_000, "wide"))
    started = time.monotonic()
    with pytest.raises(ModuleError, match="more than 64 modules"):
        linking.closure(many, None)
    assert time.monotonic() - started < 5.0  # quadratic before: ~50 s

    junk = [f"b{n:058d}".translate(str.maketrans("0123456789", "abcdefghij")) for n in range(60_000)]
    started = time.monotonic()
    with pytest.raises(ModuleError, match="more than 128 distinct module names"):
        linking.closure(_importer(junk), None)
    assert time.monotonic() - started < 5.0  # quadratic before: ~50 s

    one = _random_cids(1, "one")[0]
    started = time.monotonic()
    with pytest.raises(MissingModules) as missing:
        linking.closure(_importer([one] * 200_000), None)
    assert time.monotonic() - started < 5.0  # quadratic before: ~50 s
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

MIX_TOP = root(f'(import "{module_cid(MIX)}" "mix" (func $mix (param i32 i32) (result i32)))',
               "(call $exit (call $mix (i32.const 1) (i32.const 2)))")  # exits 1*31 + 2 = 33


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


# -- 3. a node fetching dependencies from a hostile peer ---------------------------------------

async def _serving(modules: list[bytes]) -> Gateway:
    """A peer (started) that gives each of ``modules`` as a CAR of its one raw block, and 404
    for any other CID; its ``requests`` lists what it was asked."""
    blocks = {str(cid): (cid, block) for cid, block in map(raw, modules)}
    assert sorted(blocks) == sorted(module_cid(m) for m in modules)  # modules of at most 1 MiB
    peer = Gateway()

    async def answer(request: web.Request) -> web.StreamResponse:
        found = blocks.get(request.path.removeprefix("/v1/blobs/"))
        if found is None:
            return web.Response(status=404)
        return web.Response(body=car([found[0]], [found]), content_type=CAR_TYPE)

    peer.handler = answer
    await peer.start()
    return peer


async def test_a_peer_serving_a_module_that_names_many_cids_costs_one_request_each(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """A peer serves the job's dependency D (its true bytes), and D names 62 further CIDs the
    peer answers 404 for. The node asks for D, then for each of the 62 once, and answers 409
    naming exactly those 62 in import order: 1 + 62 requests, no more rounds. A second
    submission asks again (nothing is remembered as absent) but again at most 63."""
    further = _random_cids(62, "further")
    dependency = _importer(further)
    dep_cid = module_cid(dependency)
    peer = await _serving([dependency])
    node = await _start(tmp_path, "n", peers=[peer.url])
    try:
        top = root(f'(import "{dep_cid}" "f" (func $f))', "(call $f)")
        cid = await _put_module(http, node.url, top)
        status, body = await asyncio.wait_for(_submit(http, node.url, JobSpec(module=cid)), 60)
        assert status == 409, body
        assert body["missing"] == further
        assert sorted(peer.requests) == sorted([f"/v1/blobs/{dep_cid}"] + [f"/v1/blobs/{c}" for c in further])
        status, body = await asyncio.wait_for(_submit(http, node.url, JobSpec(module=cid)), 60)
        assert status == 409 and body["missing"] == further
        assert len(peer.requests) == 63 + 62
    finally:
        await node.stop()
        await peer.stop()


async def test_a_peer_serving_a_chain_deeper_than_the_cap_is_refused_within_the_cap(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """A peer serves a chain of 20 true modules, each importing the next. The node fetches
    one level per round; it stops at MAX_DEPTH (16) levels plus one: at most 17 requests, and
    the job fails with a ModuleError naming the depth (no job signed, no 500)."""
    chain: list[bytes] = [_importer([])]
    for _ in range(19):
        chain.append(_importer([module_cid(chain[-1])]))
    peer = await _serving(chain)
    node = await _start(tmp_path, "n", peers=[peer.url])
    try:
        top = root(f'(import "{module_cid(chain[-1])}" "f" (func $f))', "(call $f)")
        spec = JobSpec(module=await _put_module(http, node.url, top))
        status, body = await asyncio.wait_for(_submit(http, node.url, spec), 60)
        assert len(peer.requests) <= 17, peer.requests
        if status != 200 or body["state"] != "failed":
            assert status in (200, 202), body
            body = await _until(http, node.url, str(spec.cid), {"done", "failed"})
        assert body["state"] == "failed", body
        assert "deeper than 16" in str(body["error"]), body
    finally:
        await node.stop()
        await peer.stop()


# -- 4. a private module as a dependency -------------------------------------------------------

async def test_a_private_dependency_runs_on_its_node_and_never_travels(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """A node offers a private library; a root importing it by CID runs there (mix(1, 2) =
    1*31 + 2 = 33). Another node that has the owner as its peer cannot get the library for
    the same job (409 naming it; the owner answered 404 and nothing of it is stored); the
    owner's blob routes and the job's results never give its bytes."""
    lib = module_cid(MIX)
    (tmp_path / "mix.wasm").write_bytes(MIX)
    owner = await _start(tmp_path, "owner", private_modules=[tmp_path / "mix.wasm"])
    other = await _start(tmp_path, "other", peers=[owner.url])
    try:
        spec = JobSpec(module=await _put_module(http, owner.url, MIX_TOP))
        status, body = await _submit(http, owner.url, spec)
        assert status in (200, 202), body
        final = await _until(http, owner.url, str(spec.cid), {"done", "failed"})
        assert (final["state"], final["exit_code"]) == ("done", 33), final
        await _put_module(http, other.url, MIX_TOP)
        status, body = await asyncio.wait_for(_submit(http, other.url, spec), 60)
        assert status == 409 and body["missing"] == [lib], body
        assert not other.node.blobs.has(lib)
        for accept in ("*/*", CAR_TYPE):
            async with http.get(f"{owner.url}/v1/blobs/{lib}", headers={"Accept": accept}) as resp:
                assert resp.status == 404 and MIX not in await resp.read()
        async with http.get(f"{owner.url}/v1/jobs/{spec.cid}/results.car") as resp:
            assert MIX not in await resp.read()
    finally:
        await other.stop()
        await owner.stop()


# -- 5. the requester's re-upload loop against a hostile node ----------------------------------

@pytest.mark.parametrize("ask", ["unrelated", "again", "fresh"])
async def test_a_node_answering_missing_blobs_for_ever_gets_only_the_job_s_blobs_once(
        tmp_path: Path, records: Any, http: aiohttp.ClientSession, ask: str) -> None:
    """A proxy in front of an honest node answers every submission 409 MissingBlobs naming:
    a CID of the requester's store that the job does not name ("unrelated": nothing is
    uploaded, the requester stops at once); the job's dependency again and again ("again": it
    is uploaded once, with its true bytes, then the requester stops); a new CID each time
    ("fresh": nothing is uploaded). The requester always stops, well before its deadline."""
    from cod.content.store import ContentStore
    from verifier.verify import verify

    store = ContentStore(tmp_path / "store")
    (tmp_path / "mix.wasm").write_bytes(MIX)
    (tmp_path / "diary.txt").write_bytes(b"the requester's private notes\n")
    lib = store.add(tmp_path / "mix.wasm")
    unrelated = store.add(tmp_path / "diary.txt")
    (tmp_path / "top.wasm").write_bytes(MIX_TOP)
    job = prepare(tmp_path / "top.wasm", [], resolve=store.get, remote=True)
    assert job.modules == {lib: MIX}
    honest = await _start(tmp_path, "honest")
    proxy = Gateway()
    puts: list[tuple[str, bytes]] = []
    fresh = iter(_random_cids(1000, "fresh"))

    async def answer(request: web.Request) -> web.StreamResponse:
        if request.method == "POST" and request.path == "/v1/jobs":
            wanted = {"unrelated": unrelated, "again": lib, "fresh": next(fresh)}[ask]
            return web.json_response({"error": "MissingBlobs", "message": "lacks", "missing": [wanted]},
                                     status=409)
        if request.method == "PUT":
            puts.append((request.path, await request.read()))
            return web.json_response({}, status=201)
        return await _forward(http, honest.url, request)

    proxy.handler = answer
    await proxy.start()
    try:
        started = time.monotonic()
        result = await asyncio.wait_for(verify(job, [proxy.url], 1, records=records, deadline_s=60), 60)
        assert time.monotonic() - started < 20
        assert result.outcome != "verified" and result.answers[0].error, result
        if ask == "again":
            assert puts == [(f"/v1/blobs/{lib}", MIX)]
        else:
            assert puts == []
        assert all(b"private notes" not in body for _, body in puts)
    finally:
        await proxy.stop()
        await honest.stop()


# -- 6. a flood of jobs naming fresh dependencies ----------------------------------------------

async def test_a_flood_of_jobs_naming_fresh_dependencies_behind_a_slow_peer_keeps_health_fast(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Each of 12 jobs is a root importing a CID nobody has; the node's one peer holds every
    request for 8 s (a gateway searching the network). The submissions wait on the fetch
    slots, but /v1/health answers within 1.5 s throughout, and the node stops promptly."""
    peer = Gateway()

    async def answer(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(8)
        return web.Response(status=404)

    peer.handler = answer
    await peer.start()
    node = await _start(tmp_path, "n", peers=[peer.url])
    floods: list[asyncio.Task[Any]] = []
    try:
        for n, dep in enumerate(_random_cids(12, "flood")):
            top = root(f'(import "{dep}" "f" (func $f))', f"(call $exit (i32.const {n}))")
            cid = await _put_module(http, node.url, top)
            floods.append(asyncio.create_task(_submit(http, node.url, JobSpec(module=cid))))
        for _ in range(4):
            await asyncio.sleep(0.5)
            started = time.monotonic()
            async with http.get(f"{node.url}/v1/health", timeout=aiohttp.ClientTimeout(total=5)) as resp:
                assert resp.status == 200
            assert time.monotonic() - started < 1.5
        assert 0 < len(peer.requests) <= 4  # FETCH_CONCURRENCY: the rest wait for a slot
    finally:
        for task in floods:
            task.cancel()
        await asyncio.gather(*floods, return_exceptions=True)
        started = time.monotonic()
        await node.stop()
        assert time.monotonic() - started < 10
        await peer.stop()


# -- 7. what a CID import may name, and how a spec may spell a CID -----------------------------

async def test_a_dependency_cid_that_is_a_dataset_of_the_node_is_never_linked(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """A root imports "f" from the CID of a directory the node serves as a dataset. A
    directory is no module: the node never treats it as one; the job is answered 409 naming
    that CID (no module bytes under it), never run."""
    from cod.content.unixfs import cid_of_tree

    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_bytes(b"a\n")
    node = await _start(tmp_path, "n", datasets=[tmp_path / "corpus"])
    dataset = str(cid_of_tree(tmp_path / "corpus"))
    try:
        assert node.node.offers.dataset_cids() == [dataset]
        top = root(f'(import "{dataset}" "f" (func $f))', "(call $f)")
        spec = JobSpec(module=await _put_module(http, node.url, top))
        status, body = await asyncio.wait_for(_submit(http, node.url, spec), 30)
        assert status == 409 and body["missing"] == [dataset], body
        async with http.get(f"{node.url}/v1/jobs/{spec.cid}") as resp:
            assert resp.status == 404
    finally:
        await node.stop()


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
    node = await _start(tmp_path, "n")
    try:
        cid = await _put_module(http, node.url, MIX)
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


# -- 8. re-hashing a big private module on every submission -----------------------------------

def _big_module(size: int) -> bytes:
    """A module whose `_start` exits 7, padded with a custom section of ``size`` bytes."""
    small = wat('(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32))) '
                '(memory (export "memory") 1) (func (export "_start") (call $exit (i32.const 7))))')
    payload = _name("pad") + b"\x00" * size
    return small + b"\x00" + _leb(len(payload)) + payload


async def test_resubmitting_a_job_of_a_big_private_module_keeps_health_fast(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Every submission re-hashes the private module (it may have changed on disk): 24 at once
    of a done job whose private module is 24 MiB keep /v1/health within 1.5 s, and each is
    answered with the job as it stands (done, exit 7)."""
    big = _big_module(24 << 20)
    (tmp_path / "big.wasm").write_bytes(big)
    cid = module_cid(big)
    node = await _start(tmp_path, "n", private_modules=[tmp_path / "big.wasm"])
    try:
        spec = JobSpec(module=cid)
        assert (await _submit(http, node.url, spec))[0] in (200, 202)
        assert (await _until(http, node.url, str(spec.cid), {"done", "failed"}))["exit_code"] == 7
        flood = [asyncio.create_task(_submit(http, node.url, spec)) for _ in range(24)]
        slowest = 0.0
        while not all(task.done() for task in flood):
            started = time.monotonic()
            async with http.get(f"{node.url}/v1/health", timeout=aiohttp.ClientTimeout(total=5)) as resp:
                assert resp.status == 200
            slowest = max(slowest, time.monotonic() - started)
            await asyncio.sleep(0.1)
        answers = await asyncio.wait_for(asyncio.gather(*flood), 120)
        assert all(status == 200 and body["exit_code"] == 7 for status, body in answers), answers
        assert slowest < 1.5, slowest
    finally:
        await node.stop()


async def test_a_node_asking_again_for_an_input_with_each_new_blob_gets_each_blob_once(
        tmp_path: Path, records: Any, http: aiohttp.ClientSession) -> None:
    """A hostile node answers 409 three times: [input, module], [input, dependency], [input,
    module, dependency]. Each answer but the last names a blob not yet sent, so the requester
    goes on; but it re-sent the input (a CAR, possibly gigabytes) with every new blob: one
    input upload per job blob. Now each blob is uploaded once: 3 PUTs, the input's once."""
    from cod.content.store import ContentStore
    from verifier.verify import verify

    store = ContentStore(tmp_path / "store")
    (tmp_path / "mix.wasm").write_bytes(MIX)
    lib = store.add(tmp_path / "mix.wasm")
    (tmp_path / "top.wasm").write_bytes(MIX_TOP)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "big.bin").write_bytes(b"\x01" * 300_000)
    job = prepare(tmp_path / "top.wasm", [], inputs=[f"{tmp_path / 'data'}:/inputs"], resolve=store.get)
    data = job.spec.inputs[0].cid
    asks = iter([[data, job.spec.module], [data, lib], [data, job.spec.module, lib]] + [[data]] * 10)
    honest = await _start(tmp_path, "honest")
    proxy = Gateway()
    puts: list[str] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        if request.method == "POST" and request.path == "/v1/jobs":
            return web.json_response({"error": "MissingBlobs", "message": "lacks", "missing": next(asks)},
                                     status=409)
        if request.method == "PUT":
            await request.read()
            puts.append(request.path.removeprefix("/v1/blobs/"))
            return web.json_response({}, status=201)
        return await _forward(http, honest.url, request)

    proxy.handler = answer
    await proxy.start()
    try:
        result = await asyncio.wait_for(verify(job, [proxy.url], 1, records=records, deadline_s=60), 60)
        assert result.answers[0].error, result
        assert sorted(puts) == sorted([data, job.spec.module, lib]), puts
    finally:
        await proxy.stop()
        await honest.stop()


def test_a_private_module_is_hashed_again_only_when_its_file_changed(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Offers.module re-hashes a private module only when its metadata changed or is racy
    (SPEC 9.9's rule for datasets): a flood of jobs no longer re-reads a big module each time,
    and a swapped file is still never offered under the old CID."""
    import time as real_time

    import cod.node.offers as offers_module
    from cod.content.unixfs import module_cid as real_module_cid
    from cod.node.offers import RACY_NS, Offers

    path = tmp_path / "private.wasm"
    data = (VECTORS / "hello.wasm").read_bytes()
    path.write_bytes(data)
    offers = Offers(private_modules=[path])
    cid = real_module_cid(data)
    hashed: list[int] = []

    def counting(wasm: bytes) -> str:
        hashed.append(len(wasm))
        return real_module_cid(wasm)

    monkeypatch.setattr(offers_module, "module_cid", counting)
    assert offers.module(cid) == path and len(hashed) == 1  # racy: the file is younger than 2 s
    assert offers.module(cid) == path and len(hashed) == 2
    later = real_time.time_ns() + RACY_NS + 10**9  # as if the file had settled before the hash
    monkeypatch.setattr(offers_module, "time", types.SimpleNamespace(time_ns=lambda: later))
    assert offers.module(cid) == path and len(hashed) == 3
    assert offers.module(cid) == path and len(hashed) == 3  # settled and unchanged: trusted
    swapped = bytearray(data)
    swapped[-1] ^= 1
    path.write_bytes(bytes(swapped))  # same size, same inode, new bytes
    assert offers.module(cid) is None and len(hashed) == 4
