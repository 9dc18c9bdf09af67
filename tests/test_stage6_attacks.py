"""Adversarial tests of Stage 6 (content by CID, fetching, datasets, private modules,
holdings, single-file mounts).

Each test is one attack. Real nodes on loopback, real wasmtime; hostile gateways and peers
are small aiohttp servers written here; expected values are derived here (raw bytes, hashes
of what the guest must print), never from the code under attack.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from cod.content.car import header, write_car
from cod.content.cid import CID, RAW
from cod.content.store import ContentStore
from cod.content.unixfs import cid_of_tree, module_cid
from cod.errors import InputError, SpecError
from cod.jobspec import Input, JobSpec
from cod.local import prepare, run_prepared
from cod.node.server import RunningNode, start_node
from cod.wasm import abi
from cod.wasm.engine import Engine
from cod.wasm.executor import run

from .node_kit import CAR_TYPE, car, raw, wat


async def _start(tmp_path: Path, name: str, **options: Any) -> RunningNode:
    return await start_node(tmp_path / name, concurrency=1, **options)


async def _put_module(http: aiohttp.ClientSession, url: str, wasm: bytes) -> str:
    cid = module_cid(wasm)
    async with http.put(f"{url}/v1/blobs/{cid}", data=wasm) as resp:
        assert resp.status in (200, 201), await resp.text()
    return cid


async def _submit(http: aiohttp.ClientSession, url: str, spec: JobSpec) -> tuple[int, Any]:
    async with http.post(f"{url}/v1/jobs", json={"spec": spec.to_dict()}) as resp:
        return resp.status, await resp.json(content_type=None)


async def _job(http: aiohttp.ClientSession, url: str, job: str) -> dict[str, Any]:
    async with http.get(f"{url}/v1/jobs/{job}") as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


async def _until(http: aiohttp.ClientSession, url: str, job: str, states: set[str],
                 timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = await _job(http, url, job)
        if body["state"] in states:
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.02)


# -- a guest that waits for its input file to change, then prints it ---------------------------

# Loops: open /inputs/f (fd 3), read up to 64 bytes, close; while the first byte is 'A' it
# loops again; then writes what it read to stdout. A job that reads its dataset late.
WAIT_FOR_CHANGE_WAT = r"""
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "f")
  (func (export "_start")
    (local $err i32)
    (loop $again
      (local.set $err (call $path_open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 1)
        (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 32)))
      (if (local.get $err) (then (call $proc_exit (i32.add (i32.const 100) (local.get $err)))))
      (i32.store (i32.const 16) (i32.const 64))
      (i32.store (i32.const 20) (i32.const 64))
      (drop (call $fd_read (i32.load (i32.const 32)) (i32.const 16) (i32.const 1) (i32.const 40)))
      (drop (call $fd_close (i32.load (i32.const 32))))
      (br_if $again (i32.eq (i32.load8_u (i32.const 64)) (i32.const 65))))
    (i32.store (i32.const 20) (i32.load (i32.const 40)))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 44)))))
"""


async def test_dataset_changed_and_rehashed_by_another_request_is_never_signed_under_its_old_cid(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Attack 3 (TOCTOU): a job runs on dataset X; the dataset changes; another request (here
    GET /v1/blobs/X, a peer's fetch) makes the node re-hash it, which drops X from the offers.
    The run's end-of-job check only looked at datasets still offered, so the job read the new
    bytes and was signed under X, a CID whose bytes say otherwise."""
    data = tmp_path / "ds"
    data.mkdir()
    (data / "f").write_bytes(b"A")
    (data / "g").write_bytes(b"other")
    old = str(cid_of_tree(data))
    node = await _start(tmp_path, "n", datasets=[data])
    try:
        module = await _put_module(http, node.url, wat(WAIT_FOR_CHANGE_WAT))
        spec = JobSpec(module=module, inputs=(Input(cid=old, path="/inputs"),))
        status, body = await _submit(http, node.url, spec)
        assert status in (200, 202), body
        job = str(spec.cid)
        await _until(http, node.url, job, {"running"})
        (data / "g").write_bytes(b"changed")  # the tree changes: X no longer names it
        async with http.get(f"{node.url}/v1/blobs/{old}") as resp:  # anyone's request re-hashes it
            assert resp.status == 404
        (data / "f").write_bytes(b"B")  # now the guest reads B under X and ends
        final = await _until(http, node.url, job, {"done", "failed"})
        assert final["state"] == "failed", f"signed {final.get('result_cid')} under stale dataset CID {old}"
        assert "DatasetChanged" in str(final)
    finally:
        await node.stop()


async def test_dataset_changed_between_submission_and_run_is_never_signed(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Attack 3 (TOCTOU): the job is queued behind a busy one; the dataset changes and is
    re-hashed (by a holdings-minded peer's GET) before the job even starts."""
    from .node_kit import BUSY_WAT

    data = tmp_path / "ds"
    data.mkdir()
    (data / "f").write_bytes(b"B-but-not-yet")
    (data / "f").write_bytes(b"A")
    old = str(cid_of_tree(data))
    node = await _start(tmp_path, "n", datasets=[data])
    try:
        busy = await _put_module(http, node.url, wat(BUSY_WAT))
        blocker = JobSpec(module=busy, args=("busy",))
        status, _ = await _submit(http, node.url, blocker)
        assert status in (200, 202)
        await _until(http, node.url, str(blocker.cid), {"running"})
        module = await _put_module(http, node.url, wat(WAIT_FOR_CHANGE_WAT))
        spec = JobSpec(module=module, inputs=(Input(cid=old, path="/inputs"),))
        status, body = await _submit(http, node.url, spec)  # accepted: X is offered now
        assert status in (200, 202), body
        (data / "f").write_bytes(b"B")
        async with http.get(f"{node.url}/v1/blobs/{old}") as resp:
            assert resp.status == 404
        async with http.delete(f"{node.url}/v1/jobs/{blocker.cid}") as resp:
            assert resp.status in (200, 202, 204), await resp.text()
        final = await _until(http, node.url, str(spec.cid), {"done", "failed"})
        assert final["state"] == "failed", f"signed {final.get('result_cid')} under stale dataset CID {old}"
    finally:
        await node.stop()


async def _fetch_car(http: aiohttp.ClientSession, url: str, cid: str) -> tuple[int, bytes]:
    async with http.get(f"{url}/v1/blobs/{cid}", headers={"Accept": CAR_TYPE}) as resp:
        return resp.status, await resp.read()


@pytest.mark.parametrize("where", ["parent", "itself"])
async def test_a_dataset_holding_the_node_data_dir_never_serves_the_node_key(
        tmp_path: Path, http: aiohttp.ClientSession, where: str) -> None:
    """Attack 3: `cod serve --dataset DIR` where DIR holds (or is) the node's own data
    directory. Datasets are public (GET /v1/blobs/{cid} serves them as CARs, any job may read
    them), so the node's signing key would go to anyone who asks."""
    home = tmp_path / "home"
    data_dir = home / "node"
    first = await start_node(data_dir, concurrency=1)  # the node exists: node.key is on disk
    await first.stop()
    key = (data_dir / "node.key").read_bytes()
    assert key
    dataset = home if where == "parent" else data_dir
    try:
        node = await start_node(data_dir, concurrency=1, datasets=[dataset])
    except InputError:
        return  # refused: the key stays home
    try:
        async with http.get(f"{node.url}/v1/holdings") as resp:
            held = await resp.json()
        leaked = []
        for cid in held["datasets"]:
            status, body = await _fetch_car(http, node.url, cid)
            if status == 200 and key in body:
                leaked.append(cid)
        assert not leaked, f"node.key served inside dataset CAR {leaked}"
        assert not held["datasets"], "a dataset holding the node's data directory is offered"
    finally:
        await node.stop()


# -- the requester's store: bytes that no longer match their CID -----------------------------

def _tamper(path: Path, data: bytes) -> None:
    os.chmod(path, 0o644)
    path.write_bytes(data)


def test_cod_run_cid_never_runs_store_bytes_that_do_not_hash_to_the_cid(tmp_path: Path) -> None:
    """Attack 6: `cod run CID` with a store file whose bytes were changed. The requester asked
    for module CID; a job of another module must not be prepared in its name."""
    from .helpers import VECTORS

    store = ContentStore(tmp_path / "store")
    hello = VECTORS / "hello.wasm"
    cid = store.add(hello)
    found = store.get(cid)
    assert found is not None
    _tamper(found, (VECTORS / "wordcount.wasm").read_bytes())  # another valid module
    with pytest.raises(InputError):
        job = prepare(cid, [], resolve=store.get)
        assert job.spec.module == cid, f"asked for module {cid}, prepared {job.spec.module}"


def test_an_input_by_cid_never_mounts_store_bytes_that_do_not_hash_to_the_cid(tmp_path: Path,
                                                                               engine: Engine) -> None:
    """Attack 6: -i CID:/inputs/t.txt with the stored file changed: a local run would read the
    changed bytes under the spec's CID (the executor never re-hashes inputs)."""
    from .helpers import VECTORS

    store = ContentStore(tmp_path / "store")
    text = tmp_path / "t.txt"
    text.write_bytes(b"one two three\n")
    cid = store.add(text)
    found = store.get(cid)
    assert found is not None
    _tamper(found, b"four\n")
    with pytest.raises(InputError):
        job = prepare(VECTORS / "wordcount.wasm", [], inputs=[f"{cid}:/inputs/t.txt"], resolve=store.get)
        result = run_prepared(job, tmp_path / "out", engine)
        stdout = (result.results_dir / "stdout").read_bytes()
        assert b"four" not in stdout and b" 1 " not in stdout, stdout


def test_a_tree_by_cid_never_mounts_store_bytes_that_do_not_hash_to_the_cid(tmp_path: Path) -> None:
    """Attack 6: the same with a stored directory whose file was changed in place."""
    from .helpers import VECTORS

    store = ContentStore(tmp_path / "store")
    tree = tmp_path / "d"
    tree.mkdir()
    (tree / "a.txt").write_bytes(b"one two three\n")
    cid = store.add(tree)
    found = store.get(cid)
    assert found is not None and found.is_dir()
    os.chmod(found, 0o755)
    _tamper(found / "a.txt", b"four\n")
    with pytest.raises(InputError):
        prepare(VECTORS / "wordcount.wasm", [], inputs=[f"{cid}:/inputs"], resolve=store.get)


# -- hostile gateways ------------------------------------------------------------------------

class Gateway:
    """An IPFS 'trustless gateway' on loopback whose every answer is chosen by the test."""

    def __init__(self) -> None:
        self.handler: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None
        self.requests: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def any_path(request: web.Request) -> web.StreamResponse:
            self.requests.append(request.path_qs)
            assert self.handler is not None
            return await self.handler(request)

        application = web.Application()
        application.router.add_route("*", "/{tail:.*}", any_path)
        self._runner = web.AppRunner(application, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture()
async def gateway() -> AsyncIterator[Gateway]:
    gw = Gateway()
    await gw.start()
    yield gw
    await gw.stop()


# prints /inputs/f (when its first byte is not 'A'): a job on one single-file input
CAT_F = wat(WAIT_FOR_CHANGE_WAT)


def _file_job(module: str, cid: str, tag: str = "") -> JobSpec:
    return JobSpec(module=module, args=("cat", tag) if tag else ("cat",), inputs=(Input(cid=cid, path="/inputs/f"),))


def _car_of(data: bytes) -> tuple[str, bytes]:
    """A one-block CAR of ``data`` (a raw leaf: the file's CID under --raw-leaves), by hand."""
    cid, block = raw(data)
    return str(cid), car([cid], [(cid, block)])


async def test_a_gateway_car_of_another_root_is_refused(tmp_path: Path, gateway: Gateway,
                                                         http: aiohttp.ClientSession) -> None:
    wanted, _ = _car_of(b"wanted bytes\n")
    _, other = _car_of(b"other bytes\n")

    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(body=other, content_type=CAR_TYPE)

    gateway.handler = answer
    node = await _start(tmp_path, "n", gateways=[gateway.url])
    try:
        module = await _put_module(http, node.url, CAT_F)
        status, body = await _submit(http, node.url, _file_job(module, wanted))
        assert status == 409 and wanted in str(body), body
        assert not node.node.blobs.has(wanted)
        assert gateway.requests
    finally:
        await node.stop()


async def test_a_gateway_that_streams_for_ever_is_cut_at_max_upload_bytes(tmp_path: Path, gateway: Gateway,
                                                                           http: aiohttp.ClientSession) -> None:
    from cod.node.caps import NodeCaps

    wanted, _ = _car_of(b"wanted bytes\n")
    sent = [0]

    async def answer(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": CAR_TYPE})
        await resp.prepare(request)
        chunk = b"\0" * (1 << 16)
        try:
            await resp.write(header(CID.parse(wanted)))  # the right header: only the cap can stop it
            while sent[0] < 1 << 30:
                await resp.write(chunk)
                sent[0] += len(chunk)
        except (ConnectionError, asyncio.CancelledError):
            pass
        return resp

    gateway.handler = answer
    cap = 1 << 20
    node = await _start(tmp_path, "n", gateways=[gateway.url], caps=NodeCaps(max_upload_bytes=cap))
    try:
        module = await _put_module(http, node.url, CAT_F)
        status, body = await asyncio.wait_for(_submit(http, node.url, _file_job(module, wanted)), 60)
        assert status == 409, body
        assert cap // 2 < node.node.fetcher.fetched_bytes <= cap + (1 << 20) + (1 << 16)  # the cap cut it
        assert sent[0] < 64 << 20, sent[0]
        assert not list(node.node.blobs.tmp.iterdir()), "a spool file was left behind"
    finally:
        await node.stop()


@pytest.mark.parametrize("trick", ["redirect", "content-type", "status"])
async def test_a_gateway_trick_gets_nothing_stored(tmp_path: Path, gateway: Gateway, http: aiohttp.ClientSession,
                                                   trick: str) -> None:
    """A redirect (to a good CAR on the same gateway: a redirect to file:// or to an internal
    address would be followed the same way) is never followed; a body that is a good CAR but
    is not labelled as one, or comes with another status, is not used."""
    wanted, good = _car_of(b"wanted bytes\n")

    async def answer(request: web.Request) -> web.StreamResponse:
        if request.path == "/good":
            return web.Response(body=good, content_type=CAR_TYPE)
        if trick == "redirect":
            raise web.HTTPFound("/good")
        if trick == "content-type":
            return web.Response(body=good, content_type="text/html")
        return web.Response(body=good, status=203, content_type=CAR_TYPE)

    gateway.handler = answer
    node = await _start(tmp_path, "n", gateways=[gateway.url])
    try:
        module = await _put_module(http, node.url, CAT_F)
        status, body = await _submit(http, node.url, _file_job(module, wanted))
        assert status == 409, body
        assert "/good" not in gateway.requests
        assert not node.node.blobs.has(wanted)
    finally:
        await node.stop()


async def test_a_gzip_bomb_from_a_gateway_is_cut_at_the_cap(tmp_path: Path, gateway: Gateway,
                                                             http: aiohttp.ClientSession) -> None:
    """Content-Encoding: gzip of 256 MiB of zeros (256 KiB on the wire): the client inflates
    it, so the cap must count inflated bytes and the node must not hold them all."""
    import resource
    import zlib

    from cod.node.caps import NodeCaps

    wanted, _ = _car_of(b"wanted bytes\n")
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\0" * (1 << 20)
    bomb = (packer.compress(header(CID.parse(wanted)))  # the right header: only the cap can stop it
            + b"".join(packer.compress(zeros) for _ in range(256)) + packer.flush())
    assert len(bomb) < 1 << 20

    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(body=bomb, headers={"Content-Type": CAR_TYPE, "Content-Encoding": "gzip"})

    gateway.handler = answer
    cap = 1 << 20
    node = await _start(tmp_path, "n", gateways=[gateway.url], caps=NodeCaps(max_upload_bytes=cap))
    try:
        module = await _put_module(http, node.url, CAT_F)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        status, body = await _submit(http, node.url, _file_job(module, wanted))
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB on Linux
        assert status == 409, body
        fetched = node.node.fetcher.fetched_bytes
        assert cap // 2 < fetched <= cap + (1 << 20) + (1 << 16), fetched  # inflated bytes count, and the cap cut
        assert grown < 128 << 10, f"the node's memory grew by {grown} KiB inflating a gzip bomb"
    finally:
        await node.stop()


async def test_a_cancelled_first_fetch_does_not_cancel_the_others_and_a_slow_gateway_blocks_nothing(
        tmp_path: Path, gateway: Gateway, http: aiohttp.ClientSession) -> None:
    """Two jobs want the same CID from a slow gateway: one fetch is made; the first asker
    giving up (its request cancelled) does not end the fetch the second waits on, and the
    node answers other requests meanwhile."""
    wanted, good = _car_of(b"wanted bytes\n")
    release = asyncio.Event()

    async def answer(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.Response(body=good, content_type=CAR_TYPE)

    gateway.handler = answer
    node = await _start(tmp_path, "n", gateways=[gateway.url])
    try:
        fetcher = node.node.fetcher
        first = asyncio.ensure_future(fetcher.fetch(wanted))
        second = asyncio.ensure_future(fetcher.fetch(wanted))
        while not gateway.requests:
            await asyncio.sleep(0.01)
        first.cancel()
        started = time.monotonic()
        async with http.get(f"{node.url}/v1/health") as resp:
            assert resp.status == 200
        assert time.monotonic() - started < 2
        release.set()
        assert await asyncio.wait_for(second, 30) is True
        assert first.cancelled()
        assert len(gateway.requests) == 1
        assert node.node.blobs.file(wanted) is not None
        module = await _put_module(http, node.url, CAT_F)
        spec = _file_job(module, wanted)
        status, body = await _submit(http, node.url, spec)
        assert status in (200, 202), body
        final = await _until(http, node.url, str(spec.cid), {"done", "failed"})
        assert final["state"] == "done", final
        async with http.get(f"{node.url}/v1/jobs/{spec.cid}/results/stdout") as resp:
            assert await resp.read() == b"wanted bytes\n"
    finally:
        await node.stop()


async def test_a_gateway_car_of_a_tree_over_the_caps_is_refused(tmp_path: Path, gateway: Gateway,
                                                                http: aiohttp.ClientSession) -> None:
    """A well-formed CAR whose DAG is over the node's entry cap (a HUGE DAG, scaled down)."""
    from cod.node.caps import NodeCaps

    tree = tmp_path / "many"
    tree.mkdir()
    for n in range(40):
        (tree / f"{n:03}").write_bytes(b"%d\n" % n)
    car_path = tmp_path / "many.car"
    wanted = str(write_car(tree, car_path))
    body = car_path.read_bytes()

    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type=CAR_TYPE)

    gateway.handler = answer
    node = await _start(tmp_path, "n", gateways=[gateway.url], caps=NodeCaps(max_entries=10))
    try:
        module = await _put_module(http, node.url, CAT_F)
        spec = JobSpec(module=module, inputs=(Input(cid=wanted, path="/inputs"),))
        status, answer_body = await _submit(http, node.url, spec)
        assert status == 409, answer_body
        assert not node.node.blobs.has(wanted)
        assert gateway.requests
    finally:
        await node.stop()


# -- private modules -------------------------------------------------------------------------

async def test_a_private_module_s_bytes_never_leave_the_node(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Attack 4: GET /v1/blobs (plain and CAR), a peer's fetch, mounting it as an input (file
    or output base) of a job that prints its input, the job record and holdings: none gives
    the bytes; an upload of other bytes under its CID is refused."""
    from .helpers import VECTORS

    secret = (VECTORS / "hello.wasm").read_bytes()
    path = tmp_path / "secret.wasm"
    path.write_bytes(secret)
    cid = module_cid(secret)
    owner = await _start(tmp_path, "owner", private_modules=[path])
    other = await _start(tmp_path, "other", peers=[owner.url])
    try:
        for accept in ("*/*", CAR_TYPE):
            async with http.get(f"{owner.url}/v1/blobs/{cid}", headers={"Accept": accept}) as resp:
                assert resp.status == 404
                assert secret not in await resp.read()
        async with http.get(f"{owner.url}/v1/holdings") as resp:
            held = await resp.json()
        assert held["private_modules"] == [cid] and cid not in held["blobs"] and cid not in held["modules"]
        # the peer cannot fetch it for a job of its own
        status, body = await _submit(http, other.url, JobSpec(module=cid))
        assert status == 409, body
        assert not other.node.blobs.has(cid)
        # the owner runs it, but never mounts it as a job's input
        cat = await _put_module(http, owner.url, CAT_F)
        status, body = await _submit(http, owner.url, _file_job(cat, cid))
        assert status == 409, body
        status, body = await _submit(http, owner.url, JobSpec(module=cat, output_base=cid))
        assert status in (400, 409), body
        spec = JobSpec(module=cid, args=("hello",))
        status, body = await _submit(http, owner.url, spec)
        assert status in (200, 202), body
        final = await _until(http, owner.url, str(spec.cid), {"done", "failed"})
        assert final["state"] == "done", final
        async with http.get(f"{owner.url}/v1/jobs/{spec.cid}/results.car") as resp:
            assert secret not in await resp.read()
        async with http.get(f"{owner.url}/v1/jobs") as resp:
            assert secret.hex() not in await resp.text()
        # other bytes under the private CID
        async with http.put(f"{owner.url}/v1/blobs/{cid}", data=wat(CAT_KEY)) as resp:
            assert resp.status >= 400
        assert owner.node._module(cid) == path
    finally:
        await other.stop()
        await owner.stop()


CAT_KEY = "(module (memory (export \"memory\") 1) (func (export \"_start\")))"


async def test_a_private_module_swapped_on_disk_is_not_run_under_its_cid(tmp_path: Path,
                                                                        http: aiohttp.ClientSession) -> None:
    """Attack 4: the private module's file is replaced (by other bytes, then by a symlink to
    them) after the node started: the node must not run those bytes under the CID."""
    from .helpers import VECTORS

    secret = (VECTORS / "hello.wasm").read_bytes()
    path = tmp_path / "secret.wasm"
    path.write_bytes(secret)
    cid = module_cid(secret)
    node = await _start(tmp_path, "n", private_modules=[path])
    try:
        path.write_bytes(wat(CAT_KEY))
        status, body = await _submit(http, node.url, JobSpec(module=cid, args=("a",)))
        assert status == 409, body
        evil = tmp_path / "evil.wasm"
        evil.write_bytes(wat(CAT_KEY))
        path.unlink()
        path.symlink_to(evil)
        status, body = await _submit(http, node.url, JobSpec(module=cid, args=("b",)))
        assert status == 409, body
    finally:
        await node.stop()


async def test_a_private_module_swapped_while_its_job_is_queued_fails_the_job_and_not_the_node(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    from .helpers import VECTORS
    from .node_kit import BUSY_WAT

    secret = (VECTORS / "hello.wasm").read_bytes()
    path = tmp_path / "secret.wasm"
    path.write_bytes(secret)
    cid = module_cid(secret)
    node = await _start(tmp_path, "n", private_modules=[path])
    try:
        busy = await _put_module(http, node.url, wat(BUSY_WAT))
        blocker = JobSpec(module=busy, args=("busy",))
        assert (await _submit(http, node.url, blocker))[0] in (200, 202)
        await _until(http, node.url, str(blocker.cid), {"running"})
        spec = JobSpec(module=cid, args=("hello",))
        status, body = await _submit(http, node.url, spec)
        assert status in (200, 202), body
        path.write_bytes(wat(CAT_KEY))
        async with http.delete(f"{node.url}/v1/jobs/{blocker.cid}") as resp:
            assert resp.status < 300
        final = await _until(http, node.url, str(spec.cid), {"done", "failed"})
        assert final["state"] == "failed", final
        async with http.get(f"{node.url}/v1/health") as resp:
            assert resp.status == 200
    finally:
        await node.stop()


# -- hostile guests against single-file mounts ---------------------------------------------------

# Prints what the guest can learn of the directory preopened at fd 3: its listing (fd_readdir
# from cookie 0, then from cookie 2), filestat of ".", of "f", of the fd itself, fdstat of the
# fd, the prestat name, then the errnos of every write it tries there and of escapes.
PROBE_WAT = r"""
(module
  (import "wasi_snapshot_preview1" "fd_readdir" (func $readdir (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_get" (func $pstat (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_get" (func $fstat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fdstat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func $pname (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_create_directory" (func $mkdir (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_unlink_file" (func $unlink (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_remove_directory" (func $rmdir (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_rename" (func $rename (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_symlink" (func $symlink (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_link" (func $link (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_set_times"
    (func $ptimes (param i32 i32 i32 i32 i64 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_size" (func $truncate (param i32 i64) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_times" (func $ftimes (param i32 i64 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "f")
  (data (i32.const 4) ".")
  (data (i32.const 8) "new")
  (data (i32.const 12) "..")
  (data (i32.const 16) "f/..")
  (data (i32.const 24) "../outputs/x")
  (global $at (mut i32) (i32.const 8192))
  (func $out (param $ptr i32) (param $len i32)
    (i32.store (i32.const 40) (local.get $ptr))
    (i32.store (i32.const 44) (local.get $len))
    (drop (call $write (i32.const 1) (i32.const 40) (i32.const 1) (i32.const 48))))
  (func $err (param $code i32)
    (i32.store16 (global.get $at) (local.get $code))
    (call $out (global.get $at) (i32.const 2))
    (global.set $at (i32.add (global.get $at) (i32.const 2))))
  (func (export "_start")
    (local $fd i32)
    (call $err (call $readdir (i32.const 3) (i32.const 1024) (i32.const 1024) (i64.const 0) (i32.const 56)))
    (call $out (i32.const 1024) (i32.load (i32.const 56)))
    (call $err (call $readdir (i32.const 3) (i32.const 1024) (i32.const 1024) (i64.const 2) (i32.const 56)))
    (call $out (i32.const 1024) (i32.load (i32.const 56)))
    (call $err (call $pstat (i32.const 3) (i32.const 0) (i32.const 4) (i32.const 1) (i32.const 4096)))
    (call $out (i32.const 4096) (i32.const 64))
    (call $err (call $pstat (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 4096)))
    (call $out (i32.const 4096) (i32.const 64))
    (call $err (call $fstat (i32.const 3) (i32.const 4096)))
    (call $out (i32.const 4096) (i32.const 64))
    (call $err (call $fdstat (i32.const 3) (i32.const 4096)))
    (call $out (i32.const 4096) (i32.const 24))
    (call $err (call $pname (i32.const 3) (i32.const 4096) (i32.const 7)))
    (call $out (i32.const 4096) (i32.const 7))
    ;; writes: create, mkdir, unlink, rmdir ".", rename f->new, symlink, link, set times
    (call $err (call $open (i32.const 3) (i32.const 0) (i32.const 8) (i32.const 3) (i32.const 1)
      (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 60)))
    (call $err (call $open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)
      (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 60)))
    (call $err (call $open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 0)
      (i64.const 64) (i64.const 0) (i32.const 1) (i32.const 60)))
    (call $err (call $mkdir (i32.const 3) (i32.const 8) (i32.const 3)))
    (call $err (call $unlink (i32.const 3) (i32.const 0) (i32.const 1)))
    (call $err (call $rmdir (i32.const 3) (i32.const 4) (i32.const 1)))
    (call $err (call $rename (i32.const 3) (i32.const 0) (i32.const 1) (i32.const 3) (i32.const 8) (i32.const 3)))
    (call $err (call $symlink (i32.const 0) (i32.const 1) (i32.const 3) (i32.const 8) (i32.const 3)))
    (call $err (call $link (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 3) (i32.const 8)
      (i32.const 3)))
    (call $err (call $ptimes (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 1) (i64.const 5) (i64.const 5)
      (i32.const 5)))
    ;; escapes: "..", "f/..", "../outputs/x"
    (call $err (call $open (i32.const 3) (i32.const 0) (i32.const 12) (i32.const 2) (i32.const 0)
      (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 60)))
    (call $err (call $open (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 4) (i32.const 0)
      (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 60)))
    (call $err (call $open (i32.const 3) (i32.const 0) (i32.const 24) (i32.const 12) (i32.const 1)
      (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 60)))
    ;; the file itself, opened read-only: truncate, set times, write
    (call $err (call $open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 0)
      (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 60)))
    (local.set $fd (i32.load (i32.const 60)))
    (call $err (call $truncate (local.get $fd) (i64.const 0)))
    (call $err (call $ftimes (local.get $fd) (i64.const 5) (i64.const 5) (i32.const 5)))
    (i32.store (i32.const 40) (i32.const 0))
    (i32.store (i32.const 44) (i32.const 1))
    (call $err (call $write (local.get $fd) (i32.const 40) (i32.const 1) (i32.const 48)))
    (call $err (call $fstat (local.get $fd) (i32.const 4096)))
    (call $out (i32.const 4096) (i32.const 64))))
"""


def _probe(engine: Engine, tmp_path: Path, name: str, spec_input: Input, source: Path) -> tuple[bytes, str]:
    wasm = wat(PROBE_WAT)
    spec = JobSpec(module=module_cid(wasm), args=("probe",), inputs=(spec_input,))
    result = run(spec, wasm, {spec_input.path: source}, tmp_path / name, engine)
    assert result.exit_code == 0, (result.results_dir / "stderr").read_bytes()
    return (result.results_dir / "stdout").read_bytes(), result.result_cid


def test_a_single_file_mount_is_read_only_and_indistinguishable_from_a_real_directory(tmp_path: Path,
                                                                                      engine: Engine) -> None:
    """Attack 1: everything a guest can ask of the synthetic directory that holds a file input
    (listing, cookies, stats, fdstat, prestat name, every write, every escape) answers as a
    real read-only directory holding only that file does, from whatever host path the file
    comes; nothing is written, and the result CIDs agree."""
    text = b"single file bytes\n"
    one, two, real_dir = tmp_path / "a" / "x.bin", tmp_path / "b" / "deep" / "other-name", tmp_path / "real"
    for path in (one, two, real_dir / "f"):
        path.parent.mkdir(parents=True)
        path.write_bytes(text)
    file_cid = str(CID.of(RAW, text))
    first, cid1 = _probe(engine, tmp_path, "r1", Input(cid=file_cid, path="/inputs/f"), one)
    second, cid2 = _probe(engine, tmp_path, "r2", Input(cid=file_cid, path="/inputs/f"), two)
    assert first == second and cid1 == cid2
    dir_cid = str(cid_of_tree(real_dir))
    as_dir, _ = _probe(engine, tmp_path, "r3", Input(cid=dir_cid, path="/inputs"), real_dir)
    assert first == as_dir  # the synthetic directory is a real directory to the guest
    for name, kind in ((b".", abi.FILETYPE_DIRECTORY), (b"..", abi.FILETYPE_DIRECTORY),
                       (b"f", abi.FILETYPE_REGULAR_FILE)):
        assert struct.pack("<IB", len(name), kind) + b"\0\0\0" + name in first
    assert b"new" not in first.split(b"/inputs")[0]
    errors = first.split(b"/inputs", 1)[1][:2 * 16]
    codes = struct.unpack("<16H", errors)
    writes, escapes, on_file = codes[:10], codes[10:13], codes[13:]
    assert all(code in (abi.EROFS, abi.EPERM, abi.EBADF, abi.EACCES) for code in writes), writes
    assert escapes[0] == abi.ENOTCAPABLE and escapes[2] in (abi.ENOTCAPABLE, abi.EROFS) and escapes[1] != 0, escapes
    assert on_file[0] == 0 and all(code != 0 for code in on_file[1:]), on_file
    assert one.read_bytes() == text and two.read_bytes() == text
    assert sorted(os.listdir(one.parent)) == ["x.bin"]
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert not leftovers, leftovers  # the empty backing directory is gone


# -- holdings --------------------------------------------------------------------------------

async def test_holdings_refuse_malformed_and_oversized_questions_without_a_500(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Attack 5: malformed CIDs (bad base32, bad base58 CIDv0, empty, a path), a CIDv0 of a
    held blob (answered in its CIDv1 form), and a list over MAX_HOLDINGS."""
    node = await _start(tmp_path, "n")
    try:
        text = b"held\n"
        cid = str(CID.of(RAW, text))
        async with http.put(f"{node.url}/v1/blobs/{cid}", data=text) as resp:
            assert resp.status in (200, 201)
        for bad in ("", "x", "b" + "1" * 60, "Qm" + "0" * 44, "Qm" + "1" * 44, f"{cid}/a", "../" + cid):
            async with http.get(f"{node.url}/v1/holdings", params=[("cid", bad)]) as resp:
                assert resp.status == 400, (bad, resp.status, await resp.text())
        async with http.get(f"{node.url}/v1/holdings", params=[("cid", cid)] * 3) as resp:
            body = await resp.json()
        assert resp.status == 200 and body["blobs"] == [cid] and body["modules"] == []
        many = "&".join(f"cid={cid}" for _ in range(10001))
        async with http.get(f"{node.url}/v1/holdings?{many}") as resp:
            assert 400 <= resp.status < 500, resp.status
        async with http.get(f"{node.url}/v1/health") as resp:
            assert resp.status == 200
    finally:
        await node.stop()


async def test_a_node_lying_in_its_holdings_changes_only_the_order(tmp_path: Path, records: Any,
                                                                  http: aiohttp.ClientSession) -> None:
    """Attack 5: a node that claims to hold everything (a proxy rewriting /v1/holdings in
    front of a cheating node) is asked first, but its lie never makes a result verified."""
    from cod.local import prepare as prep
    from verifier.verify import verify

    from .helpers import VECTORS

    honest = [await _start(tmp_path, f"h{n}") for n in range(2)]
    cheat = await _start(tmp_path, "cheat", cheat=True)
    proxy = Gateway()

    async def answer(request: web.Request) -> web.StreamResponse:
        if request.path == "/v1/holdings":
            wanted = request.query.getall("cid", [])
            return web.json_response({"datasets": wanted, "private_modules": wanted, "modules": wanted,
                                      "blobs": wanted, "truncated": False})
        return await _forward(http, cheat.url, request)

    proxy.handler = answer
    await proxy.start()
    try:
        text = tmp_path / "t.txt"
        text.write_bytes(b"a b c\n")
        job = prep(VECTORS / "wordcount.wasm", [], inputs=[f"{text}:/inputs/t.txt"])
        liar = cheat.node.identity.node_id
        result = await verify(job, [honest[0].url, honest[1].url, proxy.url], 2, records=records)
        asked = [a.node_id for a in result.answers]
        assert liar in asked, asked  # the lie moved it into the first N ...
        assert result.outcome == "mismatch", result.outcome  # ... and no further
        assert result.results_dir is None
        quorum = await verify(job, [honest[0].url, honest[1].url, proxy.url], 3, quorum=2, records=records)
        assert quorum.outcome == "verified-by-quorum"
        lied = [a.result_cid for a in quorum.answers if a.node_id == liar]
        assert lied and lied[0] != quorum.result_cid
    finally:
        await proxy.stop()
        await cheat.stop()
        for node in honest:
            await node.stop()


# -- the requester's store and -i ------------------------------------------------------------

def test_cod_add_refuses_special_files_without_hanging(tmp_path: Path) -> None:
    """Attack 6: a FIFO (opening it would block for ever), a directory holding a socket or a
    FIFO, a /proc file (its bytes change between reads) and a symlink to the store itself."""
    import socket

    store = ContentStore(tmp_path / "store")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InputError):
        store.add(fifo)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a").write_bytes(b"a\n")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tree / "s"))
        with pytest.raises(InputError):
            store.add(tree)
    finally:
        sock.close()
    (tree / "s").unlink()
    os.mkfifo(tree / "p")
    with pytest.raises(InputError):
        store.add(tree)
    try:
        cid = store.add("/proc/self/stat")
    except InputError:
        pass
    else:  # it was still between reads: then what is stored is what the CID names
        found = store.get(cid)
        assert found is not None and str(cid_of_tree(found)) == cid
    assert not [p for p in (tmp_path / "store" / "tmp").iterdir()], "a spool file was left behind"


def test_input_cid_edge_cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack 6: ipfs://CID/sub/path, ipfs:// alone, a CID-looking host path, a dangling
    CID-named symlink and a CIDv0 give clear errors or the right CID, never a traceback."""
    from cod.errors import CodError
    from cod.local import input_cid, parse_mount

    from .helpers import VECTORS

    text = b"x\n"
    cid = str(CID.of(RAW, text))
    monkeypatch.chdir(tmp_path)
    for bad in (f"ipfs://{cid}/sub/path", "ipfs://", "ipfs://nope", "ipfs://:/x", f"ipfs://{cid}?x=1"):
        with pytest.raises(CodError):
            src, _ = parse_mount(bad)
            input_cid(src)
    assert parse_mount(f"ipfs://{cid}:/in/f") == (f"ipfs://{cid}", "/in/f")
    assert input_cid(f"ipfs://{cid}/") == cid
    Path(cid).write_bytes(b"a host file named like a CID\n")
    assert input_cid(cid) is None  # the path wins
    assert input_cid(f"ipfs://{cid}") == cid
    os.unlink(cid)
    os.symlink("/nonexistent", cid)
    assert input_cid(cid) is None
    with pytest.raises(InputError):
        prepare(VECTORS / "wordcount.wasm", [], inputs=[cid])
    v0 = "QmSsw6EcnwEiTT9c4rnAGeSENvsJMepNHmbrgi2S9bXNJr"
    assert input_cid(v0) == str(CID.parse(v0)) and input_cid(v0).startswith("bafybei")  # type: ignore[union-attr]


async def test_a_dataset_changing_while_its_car_is_written_never_poisons_the_car_cache(
        tmp_path: Path, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack 3 (TOCTOU): GET /v1/blobs/X checks the dataset's fingerprint, then writes its
    CAR from the live directory and caches it as cars/X.car. A change in between cached a CAR
    of another root under X, served for ever after (even once the tree is X again)."""
    import cod.node.app as app_module

    data = tmp_path / "ds"
    data.mkdir()
    (data / "f").write_bytes(b"A")
    old = str(cid_of_tree(data))
    real_write_car = app_module.write_car  # type: ignore[attr-defined]
    changed: list[bool] = []

    def racing_write_car(tree: Any, dest: Any) -> CID:
        if not changed:
            changed.append(True)
            (data / "f").write_bytes(b"B")  # the operator edits the dataset right now
        return real_write_car(tree, dest)

    monkeypatch.setattr(app_module, "write_car", racing_write_car)
    node = await _start(tmp_path, "n", datasets=[data])
    try:
        status, body = await _fetch_car(http, node.url, old)
        assert status != 200 or _car_root(body) == old, f"served a CAR of root {_car_root(body)} as {old}"
        (data / "f").write_bytes(b"A")  # back to X (a new fingerprint: re-hashed to X)
        status, body = await _fetch_car(http, node.url, old)
        if status == 200:
            assert _car_root(body) == old, f"the cache still serves a CAR of root {_car_root(body)} as {old}"
    finally:
        await node.stop()


def _car_root(body: bytes) -> str:
    """The single root of a CARv1, read here from its header (varint length, DAG-CBOR map)."""
    import io

    from cod.content.car import read_header

    return str(read_header(io.BytesIO(body))[0])


async def _health_under_load(url: str, load: Sequence[Awaitable[Any]]) -> float:
    """The worst latency of GET /v1/health, asked from another thread (its own clock, its own
    connections) every 0.1 s while ``load`` runs on this loop."""
    import threading
    import urllib.request

    worst = [0.0]
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            began = time.monotonic()
            with urllib.request.urlopen(f"{url}/v1/health", timeout=30) as resp:
                assert resp.status == 200
            worst[0] = max(worst[0], time.monotonic() - began)
            time.sleep(0.1)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    try:
        await asyncio.gather(*load, return_exceptions=True)
    finally:
        stop.set()
        await asyncio.to_thread(thread.join)
    return worst[0]


async def test_requests_for_a_big_dataset_never_stall_the_node(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Attack 3/7 (denial of service): every GET /v1/blobs/{dataset} and every job naming a
    dataset takes its fingerprint (one lstat per entry). Done on the event loop, a burst of
    such requests from anyone stalls the node: /v1/health stops answering within the 1.5 s a
    requester allows (SPEC 11 step 2), so its running jobs are given up as dead."""
    data = tmp_path / "big"
    for d in range(40):
        folder = data / f"d{d:02}"
        folder.mkdir(parents=True)
        for f in range(500):
            (folder / f"f{f:03}").write_bytes(b"%d\n" % f)
    cid = str(cid_of_tree(data))
    node = await _start(tmp_path, "n", datasets=[data])
    try:
        status, _ = await _fetch_car(http, node.url, cid)  # the CAR is cached from now on
        assert status == 200
        started = time.monotonic()
        fingerprints = 0
        from cod.node.offers import fingerprint

        fingerprint(data)
        one = time.monotonic() - started
        burst = max(8, int(3.0 / max(one, 0.01)))  # enough to hold a blocked loop for ~3 s

        async def ask() -> None:
            async with http.head(f"{node.url}/v1/blobs/{cid}") as resp:
                await resp.read()

        module = await _put_module(http, node.url, CAT_F)

        async def submit(n: int) -> None:  # jobs naming the dataset, while the offers' lock is busy
            await _submit(http, node.url, JobSpec(module=module, args=("cat", str(n)),
                                                  inputs=(Input(cid=cid, path="/inputs"),), limits=_short()))

        worst = await _health_under_load(node.url, [ask() for _ in range(burst)] + [submit(n) for n in range(4)])
        fingerprints += burst
        assert worst < 1.5, f"/v1/health took {worst:.1f} s during {fingerprints} dataset requests ({one:.2f} s each)"
    finally:
        await node.stop()


async def test_a_burst_of_holdings_requests_never_stalls_a_node_with_many_blobs(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Attack 5/7 (denial of service): GET /v1/holdings lists every blob, stats each twice and
    opens each file to see whether it is a module. On the event loop, a burst of these from
    anyone stalls /v1/health past the requester's 1.5 s (SPEC 11 step 2)."""
    node = await _start(tmp_path, "n")
    try:
        files = node.node.blobs.files
        for n in range(10000):
            data = b"%d\n" % n
            (files / str(CID.of(RAW, data))).write_bytes(data)
        node.node.holdings([])  # warm
        started = time.monotonic()
        node.node.holdings([])
        one = time.monotonic() - started
        burst = max(8, int(3.0 / max(one, 0.01)))

        async def ask() -> None:
            async with http.get(f"{node.url}/v1/holdings") as resp:
                await resp.read()

        worst = await _health_under_load(node.url, [ask() for _ in range(burst)])
        assert worst < 1.5, f"/v1/health took {worst:.1f} s during {burst} holdings requests ({one:.2f} s each)"
    finally:
        await node.stop()


async def test_a_spec_naming_a_dataset_by_cidv0_is_refused_naming_its_cidv1(tmp_path: Path,
                                                                            http: aiohttp.ClientSession) -> None:
    """SPEC 2: a CID field holds canonical CIDv1 text. A spec naming a dataset by its CIDv0
    would hash under another job CID and miss the dataset (offers are keyed by CIDv1): it is
    refused, with the CIDv1 to write instead, by the library and by a node (400)."""
    import base58

    data = tmp_path / "ds"
    data.mkdir()
    (data / "f").write_bytes(b"hello\n")
    v1 = cid_of_tree(data)
    v0 = base58.b58encode(bytes((0x12, 32)) + v1.digest).decode()
    assert v0.startswith("Qm") and str(CID.parse(v0)) == str(v1)
    node = await _start(tmp_path, "n", datasets=[data])
    try:
        module = await _put_module(http, node.url, CAT_F)
        by_v1 = JobSpec(module=module, inputs=(Input(cid=str(v1), path="/inputs"),))
        document = by_v1.to_dict()
        document["inputs"][0]["cid"] = v0
        with pytest.raises(SpecError) as refused:
            JobSpec.from_dict(document)
        assert refused.value.field == "inputs[0].cid" and str(v1) in (refused.value.hint or "")
        document["inputs"][0]["cid"] = str(v1).upper()  # another spelling of the same CID
        with pytest.raises(SpecError):
            JobSpec.from_dict(document)
        document["inputs"][0]["cid"] = v0
        async with http.post(f"{node.url}/v1/jobs", json={"spec": document}) as resp:
            body = await resp.json()
        assert resp.status == 400 and body["error"] == "SpecError" and str(v1) in body["hint"], body
        document["inputs"][0]["cid"] = str(v1)
        async with http.post(f"{node.url}/v1/jobs?wait=true", json={"spec": document}) as resp:
            body = await resp.json()
        assert resp.status == 200 and body["state"] == "done", body
    finally:
        await node.stop()



async def _forward(http: aiohttp.ClientSession, base: str, request: web.Request) -> web.Response:
    """``request`` passed on to the node at ``base``, its answer passed back (a proxy's honest part)."""
    async with http.request(request.method, base + request.path_qs, data=await request.read(),
                            headers={k: v for k, v in request.headers.items()
                                     if k.lower() in ("content-type", "accept")}) as resp:
        return web.Response(body=await resp.read(), status=resp.status,
                            headers={"Content-Type": resp.headers.get("Content-Type", "application/json")})

def _cat_wat(name: str) -> str:
    """Opens ``name`` under fd 3 (following links), prints up to 4096 bytes of it, or exits
    100 + errno."""
    return r"""
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "%s")
  (func (export "_start")
    (local $err i32)
    (local.set $err (call $path_open (i32.const 3) (i32.const 1) (i32.const 256) (i32.const %d)
      (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 0)))
    (if (local.get $err) (then (call $proc_exit (i32.add (i32.const 100) (local.get $err)))))
    (i32.store (i32.const 32) (i32.const 1024))
    (i32.store (i32.const 36) (i32.const 4096))
    (drop (call $fd_read (i32.load (i32.const 0)) (i32.const 32) (i32.const 1) (i32.const 40)))
    (i32.store (i32.const 36) (i32.load (i32.const 40)))
    (drop (call $fd_write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 44)))))
""" % (name, len(name.encode()))


async def test_a_dataset_symlink_out_of_the_dataset_never_reads_the_host(tmp_path: Path,
                                                                        http: aiohttp.ClientSession) -> None:
    """Attack 3: a dataset holding links to /etc/passwd (absolute, and ../ past its root) and
    a link to the node's key: the CID names the links, the CAR holds only their targets'
    text, and a job reading through them gets an errno, never the host's bytes."""
    secret = tmp_path / "outside.txt"
    secret.write_bytes(b"host secret bytes\n")
    data = tmp_path / "a" / "b" / "ds"
    data.mkdir(parents=True)
    (data / "ok").write_bytes(b"fine\n")
    os.symlink(str(secret), data / "abs")
    os.symlink("../../../outside.txt", data / "up")
    os.symlink("/etc/passwd", data / "passwd")
    cid = str(cid_of_tree(data))
    node = await _start(tmp_path, "n", datasets=[data])
    try:
        status, body = await _fetch_car(http, node.url, cid)
        assert status == 200 and b"host secret bytes" not in body and b"root:" not in body
        for name in ("abs", "up", "passwd"):
            module = await _put_module(http, node.url, wat(_cat_wat(name)))
            spec = JobSpec(module=module, inputs=(Input(cid=cid, path="/inputs"),))
            assert (await _submit(http, node.url, spec))[0] in (200, 202)
            final = await _until(http, node.url, str(spec.cid), {"done", "failed"})
            assert final["state"] == "done" and final["exit_code"] == 100 + abi.ENOTCAPABLE, (name, final)
            async with http.get(f"{node.url}/v1/jobs/{spec.cid}/results/stdout") as resp:
                assert await resp.read() == b""
    finally:
        await node.stop()


async def test_a_dataset_file_swapped_for_a_symlink_during_a_run_is_never_signed(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Attack 3: while the job waits, f is replaced by a symlink to a file outside the
    dataset (whose first byte is not 'A'): the read goes nowhere, and nothing is signed."""
    outside = tmp_path / "outside"
    outside.write_bytes(b"Zecret\n")
    data = tmp_path / "ds"
    data.mkdir()
    (data / "f").write_bytes(b"A")
    cid = str(cid_of_tree(data))
    node = await _start(tmp_path, "n", datasets=[data])
    try:
        module = await _put_module(http, node.url, CAT_F)
        spec = JobSpec(module=module, inputs=(Input(cid=cid, path="/inputs"),), limits=_short())
        assert (await _submit(http, node.url, spec))[0] in (200, 202)
        await _until(http, node.url, str(spec.cid), {"running"})
        (data / "g").symlink_to(outside)
        os.replace(data / "g", data / "f")
        final = await _until(http, node.url, str(spec.cid), {"done", "failed"})
        assert final["state"] == "failed", final
        assert b"Zecret" not in str(final).encode()
    finally:
        await node.stop()


def _short() -> Any:
    from cod.jobspec import Limits

    return Limits(timeout_ms=20_000)


async def test_a_gateway_car_whose_root_is_a_symlink_is_refused(tmp_path: Path, gateway: Gateway,
                                                                http: aiohttp.ClientSession) -> None:
    """Attack 2: a well-formed CAR of a UnixFS symlink to / (its own CID): nothing is stored
    that a job could mount as the host's root."""
    from cod.content import dagpb

    from .node_kit import pb

    root, block = pb(dagpb.SYMLINK, data=b"/")
    body = car([root], [(root, block)])

    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type=CAR_TYPE)

    gateway.handler = answer
    node = await _start(tmp_path, "n", gateways=[gateway.url])
    try:
        module = await _put_module(http, node.url, wat(_cat_wat("etc/passwd")))
        for path in ("/inputs", "/inputs/f"):
            spec = JobSpec(module=module, inputs=(Input(cid=str(root), path=path),))
            status, answer_body = await _submit(http, node.url, spec)
            assert status == 409, answer_body
        assert gateway.requests
        assert not os.listdir(node.node.blobs.trees) and os.listdir(node.node.blobs.files) == [module]
    finally:
        await node.stop()


async def test_a_dataset_cid_re_offered_from_another_directory_still_fails_a_job_on_the_first(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Attack 3 (TOCTOU, two directories): the job runs on dataset X from directory b; the
    operator makes directory c a copy of X (c is re-hashed to X on the next request, so X is
    now offered from c) and b changes under the job. The end-of-run check must look at b,
    the directory the job read, not at whichever directory X is offered from now."""
    b, c = tmp_path / "b", tmp_path / "c"
    for folder, text in ((b, b"A"), (c, b"C")):
        folder.mkdir()
        (folder / "f").write_bytes(text)
    x, z = str(cid_of_tree(b)), str(cid_of_tree(c))
    node = await _start(tmp_path, "n", datasets=[b, c])
    try:
        module = await _put_module(http, node.url, CAT_F)
        spec = JobSpec(module=module, inputs=(Input(cid=x, path="/inputs"),))
        assert (await _submit(http, node.url, spec))[0] in (200, 202)
        await _until(http, node.url, str(spec.cid), {"running"})
        (c / "f").write_bytes(b"A")  # c is now a copy of X ...
        async with http.get(f"{node.url}/v1/blobs/{z}") as resp:  # ... re-hashed: X offered from c
            assert resp.status == 404
        (b / "f").write_bytes(b"B")  # and b, which the job reads, changes
        final = await _until(http, node.url, str(spec.cid), {"done", "failed"})
        assert final["state"] == "failed", f"signed {final.get('result_cid')} under dataset CID {x}"
    finally:
        await node.stop()


# Waits while /inputs/f starts with 'A' (fd 3), then while /trig/t does not start with 'G'
# (fd 5: /inputs, /outputs, /trig), then exits 0 having written "saw a change". Under
# dataset X (f = "A" for good) it can never finish.
TWO_PHASE_WAT = r"""
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "f")
  (data (i32.const 4) "t")
  (data (i32.const 128) "saw a change\n")
  (func $first (param $dir i32) (param $name i32) (result i32)
    (local $err i32)
    (i32.store8 (i32.const 64) (i32.const 0))
    (local.set $err (call $path_open (local.get $dir) (i32.const 0) (local.get $name) (i32.const 1)
      (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 32)))
    (if (local.get $err) (then (call $proc_exit (i32.add (i32.const 100) (local.get $err)))))
    (i32.store (i32.const 16) (i32.const 64))
    (i32.store (i32.const 20) (i32.const 1))
    (drop (call $fd_read (i32.load (i32.const 32)) (i32.const 16) (i32.const 1) (i32.const 40)))
    (drop (call $fd_close (i32.load (i32.const 32))))
    (i32.load8_u (i32.const 64)))
  (func (export "_start")
    (loop $one (br_if $one (i32.eq (call $first (i32.const 3) (i32.const 0)) (i32.const 65))))
    (loop $two (br_if $two (i32.ne (call $first (i32.const 5) (i32.const 4)) (i32.const 71))))
    (i32.store (i32.const 16) (i32.const 128))
    (i32.store (i32.const 20) (i32.const 13))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 44)))))
"""


async def test_a_dataset_changed_and_changed_back_during_a_run_is_never_signed(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Attack 3 (TOCTOU, A-B-A): the job reads f while it says B; the tree is re-hashed (X
    dropped), changed back and re-hashed to X again with a new fingerprint. Compared with X's
    latest fingerprint the tree looks unchanged; compared with the one the job was given it
    is not. A result that only non-X bytes could give must not be signed under X."""
    data, trig = tmp_path / "ds", tmp_path / "trig"
    data.mkdir()
    trig.mkdir()
    (data / "f").write_bytes(b"A")
    (trig / "t").write_bytes(b"-")
    x = str(cid_of_tree(data))
    node = await _start(tmp_path, "n", datasets=[data], allow_local=[trig])
    try:
        module = await _put_module(http, node.url, wat(TWO_PHASE_WAT))
        spec = JobSpec(module=module, inputs=(Input(cid=x, path="/inputs"), Input(local=str(trig), path="/trig")),
                       limits=_short())
        status, body = await _submit(http, node.url, spec)
        assert status in (200, 202), body
        await _until(http, node.url, str(spec.cid), {"running"})
        (data / "f").write_bytes(b"B")  # the guest passes phase one on non-X bytes
        await asyncio.sleep(0.3)
        async with http.get(f"{node.url}/v1/blobs/{x}") as resp:  # re-hashed: X dropped
            assert resp.status == 404
        (data / "f").write_bytes(b"A")  # back to X's bytes ...
        async with http.get(f"{node.url}/v1/holdings") as resp:
            y = [cid for cid in (await resp.json())["datasets"] if cid != x][0]
        async with http.get(f"{node.url}/v1/blobs/{y}") as resp:  # ... re-hashed: X offered again
            assert resp.status == 404
        async with http.get(f"{node.url}/v1/holdings") as resp:
            assert (await resp.json())["datasets"] == [x]
        (trig / "t").write_bytes(b"G")  # the guest ends
        final = await _until(http, node.url, str(spec.cid), {"done", "failed"})
        assert final["state"] == "failed", f"signed {final.get('result_cid')} under dataset CID {x}"
    finally:
        await node.stop()


@pytest.mark.parametrize("trick", ["bad-gzip", "cut", "junk", "bad-length", "slow"])
async def test_a_hostile_first_source_never_keeps_the_next_from_giving_the_cid(
        tmp_path: Path, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch, trick: str) -> None:
    """Attack 2: the first gateway answers a body that is not gzip under Content-Encoding
    gzip, closes mid-CAR, sends junk, lies in Content-Length or drips (past the transfer
    timeout, scaled down here); the second gateway's good CAR is still fetched and the job runs."""
    import cod.content.fetcher as fetcher_module

    monkeypatch.setattr(fetcher_module, "FETCH_TIMEOUT_S", 2.0)
    wanted, good = _car_of(b"wanted bytes\n")
    bad, fine = Gateway(), Gateway()

    async def hostile(request: web.Request) -> web.StreamResponse:
        if trick == "bad-gzip":
            return web.Response(body=b"not gzip at all" * 100,
                                headers={"Content-Type": CAR_TYPE, "Content-Encoding": "gzip"})
        if trick == "junk":
            return web.Response(body=os.urandom(4096), content_type=CAR_TYPE)
        resp = web.StreamResponse(headers={"Content-Type": CAR_TYPE})
        if trick == "bad-length":
            resp.content_length = len(good) + 1000
        await resp.prepare(request)
        if trick == "slow":
            for byte in good:
                await resp.write(bytes((byte,)))
                await asyncio.sleep(0.5)
            return resp
        await resp.write(good[: len(good) // 2] if trick == "cut" else good)
        if request.transport is not None:
            request.transport.close()
        return resp

    async def honest(request: web.Request) -> web.StreamResponse:
        return web.Response(body=good, content_type=CAR_TYPE)

    bad.handler, fine.handler = hostile, honest
    await bad.start()
    await fine.start()
    node = await _start(tmp_path, "n", gateways=[bad.url, fine.url])
    try:
        module = await _put_module(http, node.url, CAT_F)
        spec = _file_job(module, wanted)
        status, body = await _submit(http, node.url, spec)
        assert status in (200, 202), body
        assert bad.requests and fine.requests
        final = await _until(http, node.url, str(spec.cid), {"done", "failed"})
        assert final["state"] == "done", final
        async with http.get(f"{node.url}/v1/jobs/{spec.cid}/results/stdout") as resp:
            assert await resp.read() == b"wanted bytes\n"
    finally:
        await node.stop()
        await bad.stop()
        await fine.stop()


@pytest.mark.parametrize("how", ["inside", "hard-link", "copy"])
async def test_a_private_module_inside_a_dataset_is_never_served_with_it(
        tmp_path: Path, http: aiohttp.ClientSession, how: str) -> None:
    """Attack 4: `--dataset /srv/app --private-module /srv/app/secret.wasm` (or a hard link
    to it in the dataset): datasets are public, so the 'private' bytes would go to anyone
    fetching the dataset's CAR or running a job that prints the dataset."""
    from .helpers import VECTORS

    secret = (VECTORS / "hello.wasm").read_bytes()
    data = tmp_path / "app"
    data.mkdir()
    (data / "readme").write_bytes(b"public\n")
    if how == "inside":
        private = data / "secret.wasm"
        private.write_bytes(secret)
    else:
        private = tmp_path / "secret.wasm"
        private.write_bytes(secret)
        if how == "hard-link":
            os.link(private, data / "copy.wasm")
        else:
            (data / "copy.wasm").write_bytes(secret)
    try:
        node = await _start(tmp_path, "n", datasets=[data], private_modules=[private])
    except InputError:
        return  # refused: the module stays private
    try:
        async with http.get(f"{node.url}/v1/holdings") as resp:
            held = await resp.json()
        for cid in held["datasets"]:
            status, body = await _fetch_car(http, node.url, cid)
            assert status != 200 or secret not in body, "the private module's bytes are in a public dataset's CAR"
    finally:
        await node.stop()


async def test_a_private_module_under_an_allow_listed_local_path_is_refused(tmp_path: Path,
                                                                           http: aiohttp.ClientSession) -> None:
    """Attack 4: --private-module /srv/shared/secret.wasm with --allow-listed-local-paths
    /srv/shared: any job may mount /srv/shared (a node-local input) and print the module."""
    from .helpers import VECTORS

    secret = (VECTORS / "hello.wasm").read_bytes()
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "secret.wasm").write_bytes(secret)
    try:
        node = await _start(tmp_path, "n", private_modules=[shared / "secret.wasm"], allow_local=[shared])
    except InputError:
        return
    try:
        module = await _put_module(http, node.url, wat(_cat_wat("secret.wasm")))
        spec = JobSpec(module=module, inputs=(Input(local=str(shared), path="/inputs"),))
        assert (await _submit(http, node.url, spec))[0] in (200, 202)
        await _until(http, node.url, str(spec.cid), {"done", "failed"})
        async with http.get(f"{node.url}/v1/jobs/{spec.cid}/results/stdout") as resp:
            assert secret[:64] not in await resp.read(), "a job printed the private module"
    finally:
        await node.stop()


def test_a_same_size_change_within_a_timestamp_tick_is_still_seen(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack 3 (TOCTOU): simulated on a file system whose timestamps tick every 2 s (FAT;
    this kernel's multigrain timestamps hide the race, older ones and coarse file systems do
    not): a same-size rewrite within the tick keeps every fingerprint field, so the racy rule
    (SPEC 9.9) hashes such a tree again rather than trust it."""
    import cod.node.offers as offers_module
    from cod.node.offers import Offers

    data = tmp_path / "ds"
    data.mkdir()
    (data / "f").write_bytes(b"AAAA")
    real_lstat = os.lstat
    tick = 2 * 10**9

    def coarse_lstat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        info = real_lstat(path, *args, **kwargs)
        fields = list(info)
        mtime, ctime = info.st_mtime_ns // tick * tick, info.st_ctime_ns // tick * tick
        fields[8], fields[9] = mtime // 10**9, ctime // 10**9
        return os.stat_result(fields, {"st_mtime_ns": mtime, "st_ctime_ns": ctime, "st_atime_ns": info.st_atime_ns})

    monkeypatch.setattr(offers_module.os, "lstat", coarse_lstat)  # type: ignore[attr-defined]
    offers = Offers([data])
    [cid] = offers.dataset_cids()
    given = offers.given(cid, data.resolve())
    assert given is not None and offers.unchanged(cid) and not offers.changed(given)
    before = real_lstat(data / "f")
    (data / "f").write_bytes(b"BBBB")  # same size, same inode, within the tick
    after = real_lstat(data / "f")
    if before.st_mtime_ns // tick != after.st_mtime_ns // tick:
        pytest.skip("the rewrite fell in the next 2 s tick: the race was not simulated (rare; run again)")
    assert offers.changed(given), "the job given the old tree would be signed"
    assert not offers.unchanged(cid)
    assert offers.dataset(cid) is None, "a changed dataset is still offered under its old CID"


@pytest.mark.parametrize("answer_kind", ["429-junk", "500", "huge", "not-lists", "slow"])
async def test_a_hostile_holdings_answer_is_only_an_empty_hint(tmp_path: Path, records: Any,
                                                               http: aiohttp.ClientSession, answer_kind: str) -> None:
    """Attack 5: one node answers /v1/holdings with a 429 and a junk Retry-After, a 500, a
    body over the 2 MiB JSON cap, lists of non-strings, or not before the info timeout; the
    verification goes on with the others and its outcome is theirs."""
    from verifier.verify import verify

    from .helpers import VECTORS

    honest = [await _start(tmp_path, f"h{n}") for n in range(2)]
    proxy = Gateway()

    async def answer(request: web.Request) -> web.StreamResponse:
        if request.path == "/v1/holdings":
            if answer_kind == "429-junk":
                return web.Response(status=429, headers={"Retry-After": "soon"})
            if answer_kind == "500":
                return web.Response(status=500, text="{")
            if answer_kind == "huge":
                return web.Response(body=b'{"blobs": ["' + b"x" * (3 << 20) + b'"]}', content_type="application/json")
            if answer_kind == "slow":
                await asyncio.sleep(7)  # past the 5 s a requester gives /v1/info and /v1/holdings
            return web.json_response({"datasets": [1, None, {"a": 1}], "blobs": "all", "modules": [[]]})
        return await _forward(http, honest[1].url, request)

    proxy.handler = answer
    await proxy.start()
    try:
        text = tmp_path / "t.txt"
        text.write_bytes(b"a b c\n")
        job = prepare(VECTORS / "wordcount.wasm", [], inputs=[f"{text}:/inputs/t.txt"])
        result = await asyncio.wait_for(verify(job, [honest[0].url, proxy.url], 2, records=records), 60)
        assert result.outcome == "verified", (result.outcome, result.note, result.unreachable)
    finally:
        await proxy.stop()
        for node in honest:
            await node.stop()


async def test_one_job_cannot_make_the_node_fetch_more_than_its_upload_cap(
        tmp_path: Path, gateway: Gateway, http: aiohttp.ClientSession) -> None:
    from cod.node.caps import NodeCaps

    cap = 64 << 10
    cars = {}
    for n in range(24):
        cid, body = _car_of(bytes([n]) * (cap - 200))
        cars[cid] = body

    async def answer(request: web.Request) -> web.StreamResponse:
        cid = request.path.rsplit("/", 1)[-1]
        return web.Response(body=cars[cid], content_type=CAR_TYPE)

    gateway.handler = answer
    node = await _start(tmp_path, "n", gateways=[gateway.url], caps=NodeCaps(max_upload_bytes=cap))
    try:
        module = await _put_module(http, node.url, CAT_F)
        spec = JobSpec(module=module, inputs=tuple(Input(cid=cid, path=f"/in/{n}") for n, cid in enumerate(cars)))
        await _submit(http, node.url, spec)
        assert node.node.fetcher.fetched_bytes <= 4 * cap, \
            f"one job made the node fetch {node.node.fetcher.fetched_bytes} bytes (cap {cap} per CAR)"
    finally:
        await node.stop()


def test_a_bad_ipfs_module_is_reported_as_the_module_not_as_an_input(tmp_path: Path) -> None:
    """Attack 6/7: `cod run ipfs://junk` said "-i 'ipfs://junk': ...", naming an option the
    user never gave."""
    with pytest.raises(InputError) as caught:
        prepare("ipfs://junk", [])
    assert "-i" not in caught.value.message and "module" in caught.value.message


async def test_a_local_run_never_takes_a_hostile_gateway_s_bytes_into_the_store(
        tmp_path: Path, gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack 2/6: a local run fetches a CID it lacks into the requester's store (the
    configured gateways). A gateway answering the module's CID with another module's CAR,
    or the input's with a CAR of other bytes, puts nothing in the store and runs nothing."""
    from cod.content.store import resolver

    from .helpers import VECTORS

    monkeypatch.setenv("COD_STORE", str(tmp_path / "store"))
    hello = (VECTORS / "hello.wasm").read_bytes()
    other = (VECTORS / "wordcount.wasm").read_bytes()
    hello_cid = module_cid(hello)
    wanted, _ = _car_of(b"wanted bytes\n")
    _, other_car = _car_of(b"other bytes\n")
    module_car = car([CID.parse(module_cid(other))], [raw(other)]) if len(other) < 1 << 20 else b""
    assert module_car

    async def answer(request: web.Request) -> web.StreamResponse:
        body = module_car if hello_cid in request.path else other_car
        return web.Response(body=body, content_type=CAR_TYPE)

    gateway.handler = answer
    resolve = resolver([], [gateway.url])
    with pytest.raises(InputError):
        await asyncio.to_thread(prepare, f"ipfs://{hello_cid}", [], resolve=resolve)
    job = await asyncio.to_thread(prepare, VECTORS / "wordcount.wasm", [], inputs=[f"{wanted}:/inputs/f"],
                                  resolve=resolve)
    assert job.sources == {}  # not fetched: nothing to mount here
    assert len(gateway.requests) >= 2
    store = ContentStore(tmp_path / "store")
    assert not store.has(hello_cid) and not store.has(wanted) and not store.has(module_cid(other))


@pytest.mark.parametrize("lies", [False, True])
async def test_a_cheater_lying_in_holdings_is_not_asked_first_for_ever(tmp_path: Path, records: Any,
                                                                       http: aiohttp.ClientSession, lies: bool) -> None:
    """Attack 5: a cheater that disagreed (by a strict majority) keeps its place among the
    first N because it holds the module (honestly, from its last run) or claims to hold
    everything; an honest node with a clean record that lacks the module is left out."""
    from verifier.verify import verify

    from .helpers import VECTORS

    honest = [await _start(tmp_path, f"h{n}") for n in range(3)]
    cheat = await _start(tmp_path, "cheat", cheat=True)
    proxy = Gateway()

    async def answer(request: web.Request) -> web.StreamResponse:
        if request.path == "/v1/holdings" and lies:
            wanted = request.query.getall("cid", [])
            return web.json_response({"datasets": [], "private_modules": [], "modules": wanted, "blobs": wanted,
                                      "truncated": False})
        return await _forward(http, cheat.url, request)

    proxy.handler = answer
    await proxy.start()
    try:
        liar = cheat.node.identity.node_id
        urls = [node.url for node in honest] + [proxy.url]
        asked_each_run = []
        for n in range(4):
            text = tmp_path / f"t{n}.txt"
            text.write_bytes(b"a b c %d\n" % n)
            job = prepare(VECTORS / "wordcount.wasm", [], inputs=[f"{text}:/inputs/t.txt"])
            # the first run is on h0, h1 and the cheater only (so it disagrees and holds the module)
            result = await verify(job, urls if n else urls[:2] + urls[3:], 3, records=records)
            asked_each_run.append(liar in [a.node_id for a in result.answers])
            if n == 0:
                assert result.outcome == "mismatch"
        assert asked_each_run[0]
        assert not asked_each_run[-1], f"after disagreeing the liar is still asked before honest nodes: {asked_each_run}"
    finally:
        await proxy.stop()
        await cheat.stop()
        for node in honest:
            await node.stop()


def test_a_file_input_at_the_root_is_a_read_only_root_that_hides_nothing(tmp_path: Path, engine: Engine) -> None:
    """Attack 1: a file input at /f makes a synthetic directory preopened at / (SPEC 3). The
    guest reads f, lists / (only f: the other preopens are not entries of it), and can
    neither escape above / nor create there; the output mount still works."""
    text = b"at the root\n"
    source = tmp_path / "src" / "f"
    source.parent.mkdir()
    source.write_bytes(text)
    wasm = wat(PROBE_WAT)
    spec = JobSpec(module=module_cid(wasm), args=("probe",), inputs=(Input(cid=str(CID.of(RAW, text)), path="/f"),))
    result = run(spec, wasm, {"/f": source}, tmp_path / "out", engine)
    assert result.exit_code == 0
    stdout = (result.results_dir / "stdout").read_bytes()
    for name, kind in ((b".", abi.FILETYPE_DIRECTORY), (b"..", abi.FILETYPE_DIRECTORY),
                       (b"f", abi.FILETYPE_REGULAR_FILE)):
        assert struct.pack("<IB", len(name), kind) + b"\0\0\0" + name in stdout
    assert b"outputs" not in stdout.split(b"\0\0\0f", 1)[0]
    assert sorted(os.listdir(tmp_path / "src")) == ["f"] and source.read_bytes() == text
    assert sorted(os.listdir(result.results_dir / "outputs")) == []


def test_cod_add_of_a_directory_holding_the_store_is_refused_clearly(tmp_path: Path) -> None:
    """Attack 6: `cod add ~` with the store under ~ (the default): the store's own spool file
    changed the tree while it was added, so it always failed with "changed while it was
    added ... add it again" (it never can be), after hashing every stored copy."""
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    (home / "data" / "a").write_bytes(b"a\n")
    store = ContentStore(home / ".local" / "store")
    store.add(home / "data")
    with pytest.raises(InputError) as caught:
        store.add(home)
    assert "again" not in (caught.value.hint or "") and "store" in caught.value.message
    with pytest.raises(InputError):
        store.add(home / ".local" / "store" / "trees")


def test_cod_store_pointing_at_a_symlink_a_file_or_a_node_blob_dir(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack 6: COD_STORE naming a symlink to a directory works (through the link), a regular
    file is a clear InputError, and a node's blob directory is a store whose entries are
    still checked against their CIDs on the way in and out."""
    from cod.content.store import default_root, lookup

    real = tmp_path / "real-store"
    real.mkdir()
    link = tmp_path / "link-store"
    link.symlink_to(real)
    text = tmp_path / "t.txt"
    text.write_bytes(b"stored\n")
    monkeypatch.setenv("COD_STORE", str(link))
    assert default_root() == link
    cid = ContentStore().add(text)
    assert lookup(cid) is not None and (real / "files" / cid).read_bytes() == b"stored\n"
    afile = tmp_path / "a-file"
    afile.write_bytes(b"")
    monkeypatch.setenv("COD_STORE", str(afile))
    with pytest.raises(InputError):
        ContentStore().add(text)
    node_blobs = tmp_path / "node" / "blobs"
    monkeypatch.setenv("COD_STORE", str(node_blobs))
    cid = ContentStore().add(text)
    found = lookup(cid)
    assert found is not None
    _tamper(found, b"tampered\n")
    from .helpers import VECTORS

    with pytest.raises(InputError):
        prepare(VECTORS / "wordcount.wasm", [], inputs=[f"{cid}:/inputs/t.txt"], resolve=lookup)
