"""Attacks on a compute node (cod.node.app), each reproduced against a real node on loopback.

CARs here are built block by block by hand (tests/node_kit.py), so they can say what cod's
importer never would: a symlink root, one leaf linked a million times, duplicate names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cod import JobSpec, Limits, module_cid
from cod.content import dagpb
from cod.content.cid import CID, DAG_PB
from cod.content.dagpb import Link
from cod.jobspec import Input
from cod.errors import InputError
from cod.node.app import Node
from cod.node.caps import NodeCaps
from cod.node.server import RunningNode, start_node

from ..helpers import VECTORS, run_cod
from ..node_kit import CAT_KEY_WAT, car, pb, put, raw, wat

HELLO = (VECTORS / "hello.wasm").read_bytes()
MIB = 1 << 20


async def _job(http: aiohttp.ClientSession, url: str, spec: JobSpec) -> tuple[int, Any]:
    async with http.post(url + "/v1/jobs?wait=true", json={"spec": spec.to_dict()}) as resp:
        return resp.status, await resp.json(content_type=None)


def _nothing_kept(running: RunningNode) -> None:
    blobs = running.node.data_dir / "blobs"
    assert [sorted(p.name for p in (blobs / d).iterdir()) for d in ("trees", "files", "tmp")] == [[], [], []]


def _is_error(body: Any, name: str) -> None:
    assert set(body) >= {"error", "message", "hint"} and body["error"] == name, body
    assert body["message"] and body["hint"]


# -- an allow-listed root that holds the data dir (Stage 9 point 3) ---------------------------
@pytest.mark.parametrize("layout", ["root holds the data dir", "root is the data dir", "root inside the data dir",
                                    "root links to the data dir's parent"])
def test_an_allow_listed_root_overlapping_the_data_dir_is_refused_at_start(tmp_path: Path, layout: str) -> None:
    """With ``--allow-listed-local-paths /srv --data-dir /srv/cod`` a job mounting /srv/cod read
    node.key. Any root that is, holds or lies inside the data dir (after symlinks) is refused
    before the data dir is created or a key is made."""
    srv = tmp_path / "srv"
    srv.mkdir()
    (tmp_path / "link").symlink_to(srv)
    data, root = {"root holds the data dir": (srv / "cod", srv), "root is the data dir": (srv, srv),
                  "root inside the data dir": (srv, srv / "sub"),
                  "root links to the data dir's parent": (srv / "cod", tmp_path / "link")}[layout]
    with pytest.raises(InputError, match="overlaps the node's data directory") as refused:
        Node(data, allow_local=[tmp_path / "elsewhere", root])
    assert str(root) in str(refused.value) and refused.value.hint
    assert not (data / "node.key").exists()


def test_an_allow_listed_root_beside_the_data_dir_is_accepted(tmp_path: Path) -> None:
    """The control: /srv/data allow-listed, /srv/cod the data dir (siblings, one name a prefix of
    the other's parent) is fine."""
    (tmp_path / "srv" / "data").mkdir(parents=True)
    (tmp_path / "srv" / "cod-data").mkdir()
    node = Node(tmp_path / "srv" / "cod", allow_local=[tmp_path / "srv" / "data", tmp_path / "srv" / "cod-data"])
    assert node.allow_local == [tmp_path / "srv" / "data", tmp_path / "srv" / "cod-data"]


def test_cod_serve_refuses_an_allow_listed_root_holding_its_data_dir(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    done = run_cod(tmp_path, "serve", "--port", "0", "--data-dir", str(tmp_path / "srv" / "cod"),
                   "--allow-listed-local-paths", str(tmp_path / "srv"))
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert "overlaps the node's data directory" in done.stderr and "hint:" in done.stderr, done.stderr
    assert not (tmp_path / "srv" / "cod" / "node.key").exists()


# -- hole 1: reading the node's key through a symlink-rooted input ----------------------------
async def test_a_symlink_rooted_car_cannot_steal_the_node_key(node: RunningNode,
                                                              http: aiohttp.ClientSession) -> None:
    """The attack end to end: a CAR whose root is a UnixFS symlink to ``../..`` (from
    blobs/trees/<cid> that is the data dir), mounted as /inputs by a job that copies
    /inputs/node.key to stdout. Before Stage 3 the upload was stored (201) as a real
    symlink and the job's stdout was the node's signing key."""
    key = (node.node.data_dir / "node.key").read_bytes()
    link_cid, link_block = pb(dagpb.SYMLINK, data=b"../..")
    status, body = await put(http, node.url, link_cid, car([link_cid], [(link_cid, link_block)]))
    cat = wat(CAT_KEY_WAT)
    assert (await put(http, node.url, module_cid(cat), cat, "application/octet-stream"))[0] == 201
    job_status, job = await _job(http, node.url, JobSpec(module=module_cid(cat),
                                                         inputs=(Input(str(link_cid), "/inputs"),)))
    if job_status == 200 and job["state"] == "done":
        async with http.get(f"{node.url}/v1/jobs/{job['job_cid']}/results/stdout") as resp:
            assert key not in await resp.read()
    assert status == 400, body
    _is_error(body, "CIDError")
    assert "symlink" in body["message"]
    assert job_status == 409 and job["missing"] == [str(link_cid)]  # the link is no input here
    assert sorted(p.name for p in (node.node.data_dir / "blobs" / "trees").iterdir()) == []


async def test_a_symlink_planted_in_the_store_is_never_followed(node: RunningNode,
                                                               http: aiohttp.ClientSession) -> None:
    """Even if a link got into the store (an older node's upload), it is not a tree or a file."""
    link_cid, _ = pb(dagpb.SYMLINK, data=b"../..")
    (node.node.data_dir / "blobs" / "trees" / str(link_cid)).symlink_to("../..")
    (node.node.data_dir / "blobs" / "files" / str(link_cid)).symlink_to("../../node.key")
    assert node.node.blobs.tree(str(link_cid)) is None and node.node.blobs.file(str(link_cid)) is None
    async with http.head(f"{node.url}/v1/blobs/{link_cid}") as resp:
        assert resp.status == 404
    cat = wat(CAT_KEY_WAT)
    await put(http, node.url, module_cid(cat), cat, "application/octet-stream")
    status, body = await _job(http, node.url, JobSpec(module=module_cid(cat),
                                                      inputs=(Input(str(link_cid), "/inputs"),)))
    assert status == 409 and str(link_cid) in body["missing"]


async def test_a_car_whose_root_is_a_file_is_stored_as_a_file(node: RunningNode,
                                                              http: aiohttp.ClientSession) -> None:
    leaf, data = raw(HELLO)
    assert leaf == CID.parse(module_cid(HELLO))  # a module under 1 MiB is its raw block
    assert (await put(http, node.url, leaf, car([leaf], [(leaf, data)])))[0] == 201
    assert node.node.blobs.file(str(leaf)) is not None and node.node.blobs.tree(str(leaf)) is None
    async with http.get(f"{node.url}/v1/blobs/{leaf}") as resp:
        assert await resp.read() == HELLO


# -- hole 2: a small CAR that unpacks to a full disk ---------------------------------------
def _bomb() -> tuple[CID, list[tuple[CID, bytes]], int]:
    """1.1 MB of CAR declaring 1 PiB: one 1 MiB leaf linked 1024 times by a file node (1 GiB),
    that node 1024 times by another (1 TiB), that one under 1024 names in a directory."""
    leaf, leaf_block = raw(bytes(MIB))
    gib, gib_block = pb(dagpb.FILE, [Link(leaf, b"", MIB)] * 1024, filesize=1024 * MIB, blocksizes=[MIB] * 1024)
    tib, tib_block = pb(dagpb.FILE, [Link(gib, b"", len(gib_block) + 1024 * MIB)] * 1024,
                        filesize=1 << 40, blocksizes=[1 << 30] * 1024)
    names = [b"f%04d" % i for i in range(1024)]
    root, root_block = pb(dagpb.DIRECTORY, [Link(tib, name, 0) for name in names])
    declared = 1024 * 1024 * 1024 * MIB  # by hand: 2^10 names x 2^10 x 2^10 x 2^20 bytes
    assert declared == 1 << 50
    return root, [(leaf, leaf_block), (gib, gib_block), (tib, tib_block), (root, root_block)], declared


async def test_a_car_declaring_a_pebibyte_is_refused_before_a_byte_is_written(
        node: RunningNode, http: aiohttp.ClientSession) -> None:
    root, blocks, _ = _bomb()
    body_bytes = car([root], blocks)
    assert len(body_bytes) < 2 * MIB
    status, body = await put(http, node.url, root, body_bytes)
    assert status == 413, body
    _is_error(body, "CapExceeded")
    assert body["cap"] == "max_unpacked_bytes" and body["limit"] == NodeCaps().max_unpacked_bytes
    _nothing_kept(node)


async def test_unpacked_bytes_count_every_link_at_the_exact_cap(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """A directory linking one 1000-byte file under 3 names unpacks to 3000 bytes (not 1000):
    admitted at a cap of 3000, refused at 2999."""
    leaf, leaf_block = raw(bytes(1000))
    root, root_block = pb(dagpb.DIRECTORY, [Link(leaf, name, 1000) for name in (b"a", b"b", b"c")])
    body_bytes = car([root], [(leaf, leaf_block), (root, root_block)])
    for cap, expected in ((2999, 413), (3000, 201)):
        running = await start_node(tmp_path / str(cap), concurrency=1, caps=NodeCaps(max_unpacked_bytes=cap))
        try:
            status, body = await put(http, running.url, root, body_bytes)
            assert status == expected, body
            if status == 413:
                assert body["cap"] == "max_unpacked_bytes"
                _nothing_kept(running)
            else:
                tree = running.node.blobs.tree(str(root))
                assert tree is not None and sorted(p.stat().st_size for p in tree.iterdir()) == [1000] * 3
        finally:
            await running.stop()


async def test_blocks_entries_and_depth_are_capped(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    running = await start_node(tmp_path / "n", concurrency=1, caps=NodeCaps(max_car_blocks=3, max_entries=4))
    try:
        files = [raw(b"%d" % i) for i in range(5)]
        five, five_block = pb(dagpb.DIRECTORY, [Link(c, b"%d" % i, 1) for i, (c, _) in enumerate(files)])
        status, body = await put(http, running.url, five, car([five], files + [(five, five_block)]))
        assert status == 413 and body["cap"] == "max_car_blocks" and body["limit"] == 3, body
        one = files[0]
        # five names for one block: two blocks in the CAR, five entries in the tree
        fan, fan_block = pb(dagpb.DIRECTORY, [Link(one[0], b"%d" % i, 1) for i in range(5)])
        status, body = await put(http, running.url, fan, car([fan], [one, (fan, fan_block)]))
        assert status == 413 and body["cap"] == "max_entries" and body["limit"] == 4, body
        _nothing_kept(running)
    finally:
        await running.stop()
    deep = await start_node(tmp_path / "deep", concurrency=1)
    try:
        chain: list[tuple[CID, bytes]] = [pb(dagpb.DIRECTORY)]
        tsize = len(chain[0][1])  # Tsize as the importer writes it: block length plus the child's
        for _ in range(257):  # the last: the empty directory at depth 257 (the root's children are at 1)
            chain.append(pb(dagpb.DIRECTORY, [Link(chain[-1][0], b"d", tsize)]))
            tsize += len(chain[-1][1])
        status, body = await put(http, deep.url, chain[-1][0], car([chain[-1][0]], chain))
        assert status == 413 and body["cap"] == "max_tree_depth" and body["limit"] == 256, body
        status, body = await put(http, deep.url, chain[-2][0], car([chain[-2][0]], chain[:-1]))
        assert status == 201, body  # 256 levels are allowed
    finally:
        await deep.stop()


async def test_malformed_cars_are_400_json(node: RunningNode, http: aiohttp.ClientSession) -> None:
    leaf, leaf_block = raw(b"x")
    twice, twice_block = pb(dagpb.DIRECTORY, [Link(leaf, b"same", 1), Link(leaf, b"same", 1)])
    garbage = (CID.of(DAG_PB, b"\xff\xff\xff"), b"\xff\xff\xff")
    dotdot, dotdot_block = pb(dagpb.DIRECTORY, [Link(leaf, b"..", 1)])
    cases = {
        "empty roots": (leaf, car([], [(leaf, leaf_block)])),
        "two roots": (leaf, car([leaf, twice], [(leaf, leaf_block)])),
        "duplicate names": (twice, car([twice], [(leaf, leaf_block), (twice, twice_block)])),
        "a name ..": (dotdot, car([dotdot], [(leaf, leaf_block), (dotdot, dotdot_block)])),
        "a malformed block": (garbage[0], car([garbage[0]], [garbage])),
        "a missing block": (twice, car([twice], [(twice, twice_block)])),
        "a truncated header": (leaf, b"\x30\xa2\x65roots"),
        "not a CAR": (leaf, b"hello"),
    }
    for what, (root, body_bytes) in cases.items():
        status, body = await put(http, node.url, root, body_bytes)
        assert status == 400, (what, body)
        _is_error(body, "CIDError")
    _nothing_kept(node)


# -- hole 3: caps, published and enforced; cancel ----------------------------------------------
async def test_caps_are_published_and_enforced(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    caps = NodeCaps(max_fuel=10**9, max_timeout_ms=60_000)
    running = await start_node(tmp_path / "n", concurrency=1, caps=caps)
    try:
        async with http.get(running.url + "/v1/info") as resp:
            limits = (await resp.json())["limits"]
        # max_memory_bytes: a 4 GiB memory and 8 tables of 2^20 elements at 8 bytes (SPEC 9.3)
        assert limits == {"concurrency": 1, "queue_size": 64, "max_fuel": 10**9,
                          "max_memory_bytes": (1 << 32) + 8 * (1 << 20) * 8, "max_table_elements": 1 << 20,
                          "max_timeout_ms": 60_000, "max_stdout_bytes": 64 * MIB, "max_stderr_bytes": 64 * MIB,
                          "max_output_bytes": 4 << 30, "max_upload_bytes": 8 << 30,
                          "max_unpacked_bytes": 8 << 30, "max_car_blocks": 1 << 18, "max_tree_depth": 256,
                          "max_entries": 1 << 17, "max_fetch_cids": 256}
        async with http.get(running.url + "/v1/openapi.json") as resp:
            document = await resp.json()
        assert sorted(document["components"]["schemas"]["Info"]["properties"]["limits"]["required"]) == sorted(limits)
        assert "delete" in document["paths"]["/v1/jobs/{cid}"]
        await put(http, running.url, module_cid(HELLO), HELLO, "application/octet-stream")
        huge = (1 << 63) - 1
        spec = {"module": module_cid(HELLO), "limits": {"fuel": huge, "memory_bytes": 1 << 32, "timeout_ms": huge}}
        async with http.post(running.url + "/v1/jobs", json={"spec": spec}) as resp:
            body = await resp.json()
        assert resp.status == 422 and body["cap"] == "max_fuel" and body["limit"] == 10**9, body
        _is_error(body, "CapExceeded")
        spec["limits"] = {"fuel": 10**9, "timeout_ms": 60_001}
        async with http.post(running.url + "/v1/jobs", json={"spec": spec}) as resp:
            body = await resp.json()
        assert resp.status == 422 and body["cap"] == "max_timeout_ms", body
        spec["limits"] = {"fuel": 10**9, "timeout_ms": 60_000}
        async with http.post(running.url + "/v1/jobs?wait=1", json={"spec": spec}) as resp:
            assert resp.status == 200 and (await resp.json())["state"] == "done"
        big = bytes(100)
        small = await start_node(tmp_path / "small", concurrency=1, caps=NodeCaps(max_upload_bytes=99))
        try:
            status, body = await put(http, small.url, module_cid(big), big, "application/octet-stream")
            assert status == 413 and body["cap"] == "max_upload_bytes" and body["limit"] == 99, body

            async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
                for _ in range(10):
                    yield bytes(10)

            async with http.put(f"{small.url}/v1/blobs/{module_cid(big)}", data=chunked(),
                                headers={"Content-Type": "application/vnd.ipld.car"}) as resp:
                body = await resp.json()
            assert "Content-Length" not in resp.request_info.headers
            assert resp.status == 413 and body["cap"] == "max_upload_bytes", body
            _nothing_kept(small)
        finally:
            await small.stop()
    finally:
        await running.stop()


def _table_grow(tables: int, delta: int) -> bytes:
    """``tables`` tables of 1 element; grows the first by ``delta`` and exits with the grow's
    answer + 1 (so a refused grow, -1, exits 0; a grow from size 1 exits 2)."""
    defined = " ".join(f"(table $t{k} 1 funcref)" for k in range(tables))
    return wat(f"""(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1) {defined}
  (func (export "_start")
    (call $exit (i32.add (i32.const 1) (table.grow $t0 (ref.null func) (i32.const {delta}))))))""")


async def test_table_elements_are_capped_and_tables_count_in_the_memory_budget(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """A job with 64 KiB of memory and ``table_elements: 2^32-1`` held 550 MiB of executor RSS
    after one table.grow of 2^26: there was no table cap. Now ``max_table_elements`` refuses
    it (422, naming the cap), a table.grow past the cap fails in the guest (-1), and a job's
    memories and tables (8 bytes an element, each table of the module at its limit) must fit
    ``max_memory_bytes`` together."""
    caps = NodeCaps(max_table_elements=1000, max_memory_bytes=MIB)
    running = await start_node(tmp_path / "n", concurrency=1, caps=caps)
    try:
        one, two = _table_grow(1, 1000), _table_grow(2, 999)
        for wasm in (one, two):
            await put(http, running.url, module_cid(wasm), wasm, "application/octet-stream")
        status, body = await _job(http, running.url, JobSpec(module=module_cid(one), limits=Limits(
            memory_bytes=65536, table_elements=(1 << 32) - 1)))
        assert status == 422 and body["cap"] == "max_table_elements" and body["limit"] == 1000, body
        _is_error(body, "CapExceeded")
        assert "limits.table_elements" in body["message"]
        # at the cap: 1 + 1000 elements is past it, so the grow answers -1 and the job exits 0
        status, body = await _job(http, running.url, JobSpec(module=module_cid(one), limits=Limits(
            memory_bytes=MIB - 8000, table_elements=1000)))
        assert status == 200 and body["state"] == "done" and body["exit_code"] == 0, body
        # one table of 1000 elements is 8000 bytes: 1 MiB - 7999 of memory with it is 1 byte over
        status, body = await _job(http, running.url, JobSpec(module=module_cid(one), limits=Limits(
            memory_bytes=MIB - 7999, table_elements=1000)))
        assert status == 422 and body["cap"] == "max_memory_bytes" and body["limit"] == MIB, body
        _is_error(body, "CapExceeded")
        assert "1 table" in body["message"] and "limits.table_elements" in body["hint"], body
        # two tables count twice: 16000 bytes
        status, body = await _job(http, running.url, JobSpec(module=module_cid(two), limits=Limits(
            memory_bytes=MIB - 8000, table_elements=1000)))
        assert status == 422 and body["cap"] == "max_memory_bytes", body
        status, body = await _job(http, running.url, JobSpec(module=module_cid(two), limits=Limits(
            memory_bytes=MIB - 16000, table_elements=1000)))
        assert status == 200 and body["exit_code"] == 2, body  # 1 -> 1000 is within the cap: old size 1
        assert running.node.jobs.list() and len(running.node.jobs.list()) == 2  # nothing stored for a refusal
    finally:
        await running.stop()


def test_odd_reports_never_escape_the_hand_on(caplog: pytest.LogCaptureFixture) -> None:
    """_hand_on_telemetry gets what the worker sent; junk (a list of events that are not dicts,
    an exit with no enter, a deep stack) is logged, never raised into the job."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from cod import telemetry
    from cod.node.app import Node

    exporter = InMemorySpanExporter()
    telemetry.configure([exporter], [])
    try:
        hand_on = Node._hand_on_telemetry
        fake: Any = type("N", (), {"guest_telemetry": None})()
        deep = {"events": [{"kind": "enter", "name": str(i), "func": None, "ns": i} for i in range(1024)],
                "end_ns": 2000}
        with telemetry.span("node.job"):
            hand_on(fake, "job", deep)
            hand_on(fake, "job", {"events": ["junk", 3]})
            hand_on(fake, "job", {"events": [{"kind": "exit", "ns": 1}, {"kind": "enter"}]})
            hand_on(fake, "job", [1, 2])
        names = [s.name for s in exporter.get_finished_spans()]
        assert names.count("0") == 1 and "1023" in names and "node.job" in names
    finally:
        telemetry.shutdown()
