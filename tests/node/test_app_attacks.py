"""Attacks on a compute node (cod.node.app), each reproduced against a real node on loopback.

CARs here are built block by block by hand (tests/node_kit.py), so they can say what cod's
importer never would: a symlink root, one leaf linked a million times, duplicate names.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web

from cod import JobSpec, Limits, module_cid
from cod.content import dagpb
from cod.content.car import write_car
from cod.content.cid import CID, DAG_PB
from cod.content.dagpb import Link
from cod.content.unixfs import cid_of_tree
from cod.errors import InputError
from cod.jobspec import Input
from cod.node.app import Node
from cod.node.caps import NodeCaps
from cod.node.server import RunningNode, start_node

from ..helpers import VECTORS, run_cod
from ..hostile_gateway import Gateway, car_of
from ..node_kit import BUSY_WAT, CAR_TYPE, CAT_KEY_WAT, car, pb, put, raw, wat

HELLO = (VECTORS / "hello.wasm").read_bytes()
MIB = 1 << 20

T = TypeVar("T")


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


@pytest.fixture()
def bind_mount(tmp_path: Path) -> Iterator[Callable[[Path, Path], None]]:
    """``bind(source, target)``: ``mount --bind`` (needs root; skips without), undone after the test."""
    mounted: list[Path] = []

    def bind(source: Path, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"mount --bind is not allowed here: {done.stderr.strip()}")
        mounted.append(target)

    yield bind
    for target in reversed(mounted):
        subprocess.run(["umount", str(target)], check=False)


@pytest.mark.parametrize("layout", ["root is a bind of the data dir", "root is a bind of the data dir's parent"])
def test_an_allow_listed_root_bind_mounting_the_data_dir_is_refused(
        tmp_path: Path, bind_mount: Callable[[Path, Path], None], layout: str) -> None:
    """A second round: realpath() does not see a bind mount, so a root that is the data dir (or holds
    it) through ``mount --bind`` passed the path check, and a job mounting it printed node.key.
    The check compares the directories themselves (device and inode)."""
    srv = tmp_path / "srv"
    (srv / "cod").mkdir(parents=True)
    source = srv / "cod" if layout == "root is a bind of the data dir" else srv
    bind_mount(source, tmp_path / "view")
    with pytest.raises(InputError, match="overlaps the node's data directory"):
        Node(srv / "cod", allow_local=[tmp_path / "view"])
    assert not (srv / "cod" / "node.key").exists()


def test_a_dataset_bind_mounting_the_data_dir_is_refused(tmp_path: Path,
                                                          bind_mount: Callable[[Path, Path], None]) -> None:
    """The same through ``--dataset``: the node would copy its own key into a dataset any job reads."""
    (tmp_path / "cod").mkdir()
    bind_mount(tmp_path / "cod", tmp_path / "view")
    with pytest.raises(InputError, match="overlaps the node's data directory"):
        Node(tmp_path / "cod", datasets=[tmp_path / "view"])


def test_cod_serve_refuses_an_allow_listed_root_holding_its_data_dir(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    done = run_cod(tmp_path, "serve", "--port", "0", "--data-dir", str(tmp_path / "srv" / "cod"),
                   "--allow-listed-local-paths", str(tmp_path / "srv"))
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert "overlaps the node's data directory" in done.stderr and "hint:" in done.stderr, done.stderr
    assert not (tmp_path / "srv" / "cod" / "node.key").exists()


# -- odd result names, raw control bytes, HTML outputs (Stage 9 point 9) ----------------------
async def _done_with_base(node: RunningNode, http: aiohttp.ClientSession, tmp_path: Path,
                          files: dict[str, bytes]) -> str:
    """A done job (hello) whose outputs/ starts as a base holding ``files``; its job CID."""
    base = tmp_path / "base"
    base.mkdir()
    for name, data in files.items():
        (base / name).write_bytes(data)
    root = write_car(base, tmp_path / "base.car")
    assert (await put(http, node.url, root, (tmp_path / "base.car").read_bytes()))[0] == 201
    assert (await put(http, node.url, module_cid(HELLO), HELLO, "application/octet-stream"))[0] == 201
    status, job = await _job(http, node.url, JobSpec(module=module_cid(HELLO), output_base=str(root)))
    assert status == 200 and job["state"] == "done", job
    return str(job["job_cid"])


@pytest.mark.parametrize("name", ["%00", "a%00b", "outputs/a%00", "a" * 5000, "outputs/" + "b" * 256,
                                  "/".join(["c"] * 3000), "%1b[2J%1b]0;owned%07",
                                  "%1b[2J%1b]0;owned%07%00"])
async def test_odd_result_names_are_json_404s_and_log_nothing_raw(
        node: RunningNode, http: aiohttp.ClientSession, tmp_path: Path, name: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """``results/%00`` and ``results/a%00b`` answered 500 (embedded null byte), a 5000-character
    name 500 (ENAMETOOLONG), and the 500 logged the decoded path, ESC and BEL included, to the
    operator's terminal. Every such name is a file the results do not have: a 404 JSON body."""
    job = await _done_with_base(node, http, tmp_path, {"page.txt": b"fine"})
    async with http.get(f"{node.url}/v1/jobs/{job}/results/{name}") as resp:
        status, body = resp.status, await resp.json(content_type=None)
    assert status == 404, body
    _is_error(body, "NotFound")
    assert len(body["message"]) < 400 and "\x00" not in body["message"] and "\x1b" not in body["message"]
    assert not [r for r in caplog.records if r.levelno >= 40], caplog.text
    assert not any(ch in caplog.text for ch in "\x00\x07\x1b"), caplog.text
    async with http.get(f"{node.url}/v1/jobs/{job}/results/outputs/page.txt") as resp:
        assert (resp.status, await resp.read()) == (200, b"fine")  # the node serves on


async def test_a_result_file_is_never_served_through_a_link(node: RunningNode, http: aiohttp.ClientSession,
                                                          tmp_path: Path) -> None:
    """Results may hold symlinks (SPEC 4.5; here from an output base): ``results/{path}`` serves
    regular files only, and never resolves a link on the host, even one leading back inside."""
    base = tmp_path / "linked"
    base.mkdir()
    (base / "page.txt").write_bytes(b"fine")
    links = {"to-page": "page.txt", "up": "..", "here": ".", "far": "../../../../../../etc/hostname"}
    for name, target in links.items():
        os.symlink(target, base / name)
    root = write_car(base, tmp_path / "linked.car")
    assert (await put(http, node.url, root, (tmp_path / "linked.car").read_bytes()))[0] == 201
    assert (await put(http, node.url, module_cid(HELLO), HELLO, "application/octet-stream"))[0] == 201
    status, job = await _job(http, node.url, JobSpec(module=module_cid(HELLO), output_base=str(root)))
    assert status == 200 and job["state"] == "done", job
    for name in ("outputs/to-page", "outputs/up/stdout", "outputs/here/page.txt", "outputs/far", "outputs/up"):
        async with http.get(f"{node.url}/v1/jobs/{job['job_cid']}/results/{name}") as resp:
            assert resp.status == 404, (name, await resp.read())
    async with http.get(f"{node.url}/v1/jobs/{job['job_cid']}/results/outputs/page.txt") as resp:
        assert (resp.status, await resp.read()) == (200, b"fine")


async def test_result_files_are_never_rendered_by_a_browser(node: RunningNode, http: aiohttp.ClientSession,
                                                           tmp_path: Path) -> None:
    """An HTML (or SVG) output was served as ``text/html`` on the node's origin: a job's page
    ran scripts there. Result files (and file blobs) are ``application/octet-stream``, never
    sniffed, and downloads (``Content-Disposition: attachment``)."""
    page = b"<html><script>alert(document.domain)</script></html>"
    job = await _done_with_base(node, http, tmp_path, {"page.html": page, "pic.svg": b"<svg onload=alert(1)/>"})
    for name, data in (("outputs/page.html", page), ("outputs/pic.svg", b"<svg onload=alert(1)/>")):
        for method in ("GET", "HEAD"):
            async with http.request(method, f"{node.url}/v1/jobs/{job}/results/{name}") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == "application/octet-stream", (name, dict(resp.headers))
                assert resp.headers["X-Content-Type-Options"] == "nosniff"
                assert resp.headers["Content-Disposition"] == "attachment"
                if method == "GET":
                    assert await resp.read() == data
    async with http.get(f"{node.url}/v1/blobs/{module_cid(HELLO)}") as resp:
        assert resp.headers["Content-Type"] == "application/octet-stream"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_a_result_file_is_served_as_itself_never_its_gz_sibling(
        node: RunningNode, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    """aiohttp's FileResponse answers a request for ``x`` that accepts gzip with a sibling
    ``x.gz`` (Content-Encoding: gzip): a job writing ``a.txt`` and ``a.txt.gz`` made
    ``results/outputs/a.txt`` decode to bytes that are not that file's."""
    job = await _done_with_base(node, http, tmp_path, {"a.txt": b"the file", "a.txt.gz": gzip.compress(b"another")})
    async with http.get(f"{node.url}/v1/jobs/{job}/results/outputs/a.txt",
                        headers={"Accept-Encoding": "gzip, br"}) as resp:
        assert "Content-Encoding" not in resp.headers
        assert await resp.read() == b"the file"


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
async def test_a_default_job_fits_a_default_node_with_room_to_raise_its_fuel(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Stage 10: the default fuel is 10^12 (about a minute of compute at ~15 G fuel a second, the
    rate of a Go job hashing 50 MB five times in 78 G fuel and ~5 s), a default node publishes a
    max_fuel ten times that, and runs a default spec and one asking for its max_fuel."""
    assert Limits().fuel == 10**12
    running = await start_node(tmp_path / "n", concurrency=1)
    try:
        async with http.get(running.url + "/v1/info") as resp:
            assert (await resp.json())["limits"]["max_fuel"] == 10**13
        await put(http, running.url, module_cid(HELLO), HELLO, "application/octet-stream")
        for fuel in (None, 10**13):
            spec = JobSpec(module=module_cid(HELLO), limits=Limits() if fuel is None else Limits(fuel=fuel))
            async with http.post(running.url + "/v1/jobs?wait=1", json={"spec": spec.to_dict()}) as resp:
                body = await resp.json()
                assert resp.status == 200 and body["state"] == "done", body
            assert spec.to_dict()["limits"]["fuel"] == (fuel or 10**12)
    finally:
        await running.stop()


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


# -- CARs built once, off the job path (Stage 9 point 5) ------------------------------------
def _base_tree(root: Path, files: int) -> dict[str, bytes]:
    """A tree of ``files`` small files under ``root``; returns name -> bytes (the expectation)."""
    root.mkdir(parents=True)
    wanted = {f"f{n:04}": b"file %d\n" % n for n in range(files)}
    for name, data in wanted.items():
        (root / name).write_bytes(data)
    return wanted


@pytest.mark.parametrize("what", ["results.car", "dataset"])
async def test_concurrent_car_downloads_build_the_car_once_and_never_stall_a_submission(
        tmp_path: Path, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch, what: str) -> None:
    """12 concurrent GETs of a big result's results.car each built the CAR again, in the default
    thread pool: the pool filled and a tiny job's POST waited 113 s behind them; concurrent GETs
    of a dataset's CAR each wrote a temporary CAR. Here every CAR build is held open (a hook on
    the CAR writer, no timing) while 12 GETs wait and a POST is made: the POST is answered, the
    CAR is built once, and all 12 get the same bytes, a CAR that unpacks (every block checked)
    to the tree under its CID."""
    import asyncio
    import io
    import threading

    import cod.content.car as car_module
    from cod.content.car import read_header, write_car
    from cod.content.export import unpack_car

    wanted = _base_tree(tmp_path / "base", 300)
    options: dict[str, Any] = {"datasets": [tmp_path / "base"]} if what == "dataset" else {}
    running = await start_node(tmp_path / "node", concurrency=1, queue_size=4, **options)
    try:
        async with http.put(f"{running.url}/v1/blobs/{module_cid(HELLO)}", data=HELLO) as resp:
            assert resp.status == 201
        if what == "dataset":
            root = str(cid_of_tree(tmp_path / "base"))
            url = f"{running.url}/v1/blobs/{root}"
        else:
            root_cid = write_car(tmp_path / "base", tmp_path / "base.car")
            status, body = await put(http, running.url, root_cid, (tmp_path / "base.car").read_bytes())
            assert status == 201, body
            status, body = await _job(http, running.url, JobSpec(module=module_cid(HELLO), output_base=str(root_cid)))
            assert status == 200 and body["state"] == "done", body
            root, url = body["result_cid"], f"{running.url}/v1/jobs/{body['job_cid']}/results.car"

        builds: list[int] = []
        started, release = threading.Event(), threading.Event()
        real_writer = car_module.CarWriter

        class HeldWriter(real_writer):  # type: ignore[misc,valid-type]
            def __init__(self, out: Any) -> None:
                builds.append(1)
                started.set()
                release.wait(60)
                super().__init__(out)

        monkeypatch.setattr(car_module, "CarWriter", HeldWriter)

        async def download() -> tuple[int, bytes]:
            async with http.get(url, headers={"Accept": CAR_TYPE}) as resp:
                return resp.status, await resp.read()

        downloads = [asyncio.create_task(download()) for _ in range(12)]
        try:
            assert await asyncio.to_thread(started.wait, 30), "no CAR build started"
            await asyncio.sleep(0.2)  # let all 12 requests reach the node
            tiny = JobSpec(module=module_cid(HELLO), args=("hello", "tiny"))
            status, body = await asyncio.wait_for(_job(http, running.url, tiny), 30)  # a guard, not a timing
            assert status == 200 and body["state"] == "done", body
        finally:
            release.set()
        answers = await asyncio.gather(*downloads)
        assert {status for status, _ in answers} == {200}
        bodies = {data for _, data in answers}
        assert len(bodies) == 1, f"{len(bodies)} different CARs for one CID"
        assert len(builds) == 1, f"the CAR of {root} was built {len(builds)} times for 12 GETs"
        data = bodies.pop()
        assert [str(r) for r in read_header(io.BytesIO(data))] == [root]
        (tmp_path / "got.car").write_bytes(data)
        with open(tmp_path / "got.car", "rb") as source:
            unpack_car(source, CID.parse(root), tmp_path / "got", tmp_path / "scratch")
        tree = tmp_path / "got" / ("outputs" if what == "results.car" else "")
        assert {p.name: p.read_bytes() for p in tree.iterdir()} == wanted
        leftovers = [p.name for p in (running.node.data_dir / "cars").iterdir() if p.name.startswith(".")]
        assert leftovers == [], f"temporary CARs left: {leftovers}"
    finally:
        await running.stop()


# -- two cancels of one job at once (Stage 9 point 1) ------------------------------------------
async def test_concurrent_cancels_never_wedge_the_pool(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Two DELETEs of one running job at once (concurrency 1): the second used to land while the
    killed executor was being replaced, the replacement never started (workers 0), every later
    job hung and /v1/health said ok. Now both answer the cancelled record, a next job completes,
    and health says how many executors are up."""
    running = await start_node(tmp_path / "n", concurrency=1)
    try:
        busy = wat(BUSY_WAT)
        await put(http, running.url, module_cid(busy), busy, "application/octet-stream")
        await put(http, running.url, module_cid(HELLO), HELLO, "application/octet-stream")
        for round_ in range(3):  # each round kills the only executor twice over
            spec = JobSpec(module=module_cid(busy), args=("spin", str(round_)),
                           limits=Limits(fuel=10**12, timeout_ms=600_000))
            async with http.post(running.url + "/v1/jobs", json={"spec": spec.to_dict()}) as resp:
                assert resp.status == 202, await resp.text()
            job = str(spec.cid)
            while running.node.pool.idle_workers() > 0:  # until the executor has the job (it loops for ever)
                await asyncio.sleep(0.01)

            async def cancel() -> tuple[int, Any]:
                async with http.delete(f"{running.url}/v1/jobs/{job}") as resp:
                    return resp.status, await resp.json()

            answers = await asyncio.gather(cancel(), cancel())
            for status, body in answers:
                assert status == 200 and body["state"] == "failed" and body["error"]["error"] == "Cancelled", body
            status, body = await asyncio.wait_for(_job(http, running.url, JobSpec(module=module_cid(HELLO),
                                                                                     args=("hello", str(round_)))), 60)
            assert status == 200 and body["state"] == "done", body
            async with http.get(running.url + "/v1/health") as resp:
                health = await resp.json()
            assert resp.status == 200 and health["status"] == "ok" and health["workers"] == 1, health
    finally:
        await running.stop()


class _Hold:
    """A gateway that holds every request until ``serve`` (then answers CARs of ``cars``) or the end."""

    def __init__(self) -> None:
        self.gateway = Gateway()
        self.open = asyncio.Event()
        self.cars: dict[str, bytes] = {}

        async def answer(request: web.Request) -> web.StreamResponse:
            await self.open.wait()
            body = self.cars.get(request.path.rsplit("/", 1)[-1])
            return web.Response(body=body, content_type=CAR_TYPE) if body else web.Response(status=404)

        self.gateway.handler = answer

    def serve(self, cars: dict[str, bytes]) -> None:
        self.cars = cars
        self.open.set()


@pytest.fixture
async def held() -> AsyncIterator[_Hold]:
    hold = _Hold()
    await hold.gateway.start()
    yield hold
    hold.open.set()  # so the gateway's server can stop
    await hold.gateway.stop()


def _held(call: Callable[..., Awaitable[T]]) -> tuple[Callable[..., Awaitable[T]], asyncio.Event, asyncio.Event]:
    """``call`` held at its start: (the held call, the gate that lets it go on, the event set once
    it is reached), for a test that acts while a submission waits inside the node."""
    gate, reached = asyncio.Event(), asyncio.Event()

    async def held(*args: Any) -> T:
        reached.set()
        await gate.wait()
        return await call(*args)

    return held, gate, reached


def _fetching_job(module: str, salt: str, count: int = 4) -> tuple[JobSpec, dict[str, bytes]]:
    """A job on ``module`` naming ``count`` inputs no node has; the CARs a gateway can give them as."""
    cars = dict(car_of(f"input {n} of {salt}\n".encode()) for n in range(count))
    inputs = tuple(Input(cid=cid, path=f"/inputs/{n}") for n, cid in enumerate(sorted(cars)))
    return JobSpec(module=module, args=("hello", salt), inputs=inputs), cars


async def _until_fetching(hold: _Hold, count: int = 1) -> None:
    while len(hold.gateway.requests) < count:  # until the node is fetching for the job
        await asyncio.sleep(0.01)


def _is_cancelled(status: int, body: Any) -> None:
    assert status == 200 and body["state"] == "failed" and body["error"]["error"] == "Cancelled", (status, body)
    assert "fetched its inputs" in body["error"]["message"], body


async def test_a_job_still_fetching_its_inputs_can_be_cancelled(tmp_path: Path, http: aiohttp.ClientSession,
                                                                held: _Hold) -> None:
    """A second round of point 1: the job is submitted, and the node fetches its four inputs from a
    gateway that never answers (up to the job's fetch budget, holding fetch slots). DELETE of the
    job meanwhile answered 404 "no job ... on this node", so neither its requester (Ctrl-C, cod
    cancel) nor anyone could stop it, and the POST went on waiting. It must be cancellable like a
    queued job (200, failed with Cancelled); GET says "preparing" meanwhile; the DELETE answers
    once the fetch has ended (no fetch slot held), the POST answers the same record at once, and
    the job never ran."""
    from cod.content.fetcher import FETCH_SLOTS_PER_CLIENT

    running = await start_node(tmp_path / "n", concurrency=1, gateways=[held.gateway.url])
    try:
        await put(http, running.url, module_cid(HELLO), HELLO, "application/octet-stream")
        spec, _ = _fetching_job(module_cid(HELLO), "cancelled")
        submitted = asyncio.ensure_future(_job(http, running.url, spec))
        await _until_fetching(held, FETCH_SLOTS_PER_CLIENT)
        async with http.get(f"{running.url}/v1/jobs/{spec.cid}") as resp:
            status, body = resp.status, await resp.json()
        assert status == 200 and body["state"] == "preparing" and body["spec"] == spec.to_dict(), body
        assert running.node.fetcher.slots_in_use() == FETCH_SLOTS_PER_CLIENT
        async with http.delete(f"{running.url}/v1/jobs/{spec.cid}") as resp:
            status, body = resp.status, await resp.json()
        _is_cancelled(status, body)
        assert running.node.fetcher.slots_in_use() == 0, "the cancelled job's fetches still hold slots"
        assert await asyncio.wait_for(submitted, 30) == (200, body)  # a guard against a hang, not a timing
        async with http.get(f"{running.url}/v1/jobs/{spec.cid}") as resp:
            assert resp.status == 200 and await resp.json() == body
        assert running.node.active == 0 and len(held.gateway.requests) == FETCH_SLOTS_PER_CLIENT
        async with http.delete(f"{running.url}/v1/jobs/{spec.cid}") as resp:  # once cancelled, it is failed
            assert resp.status == 409 and (await resp.json())["error"] == "NotCancellable"
    finally:
        await running.stop()


async def test_two_cancels_during_the_fetch_then_a_new_submission_fetches_again_and_runs(
        tmp_path: Path, http: aiohttp.ClientSession, held: _Hold) -> None:
    """Two DELETEs at once of a job being fetched both answer the one cancelled record; a POST of
    the same job afterwards prepares it anew (asks the gateway again) and it runs to done."""
    running = await start_node(tmp_path / "n", concurrency=1, gateways=[held.gateway.url])
    try:
        await put(http, running.url, module_cid(HELLO), HELLO, "application/octet-stream")
        spec, cars = _fetching_job(module_cid(HELLO), "again")
        submitted = asyncio.ensure_future(_job(http, running.url, spec))
        await _until_fetching(held)

        async def cancel() -> tuple[int, Any]:
            async with http.delete(f"{running.url}/v1/jobs/{spec.cid}") as resp:
                return resp.status, await resp.json()

        (s1, b1), (s2, b2) = await asyncio.gather(cancel(), cancel())
        _is_cancelled(s1, b1)
        assert (s2, b2) == (s1, b1)
        assert await asyncio.wait_for(submitted, 30) == (s1, b1)
        before = len(held.gateway.requests)
        held.serve(cars)
        status, body = await asyncio.wait_for(_job(http, running.url, spec), 60)
        assert status == 200 and body["state"] == "done", body
        asked = sorted(path.split("/")[2].split("?")[0] for path in held.gateway.requests[before:])
        assert asked == sorted(cars), "the new submission did not fetch the inputs again"
    finally:
        await running.stop()


async def test_concurrent_submissions_of_a_job_share_its_preparation_and_its_cancel(
        tmp_path: Path, http: aiohttp.ClientSession, held: _Hold) -> None:
    """Three POSTs of one job being fetched make one preparation (the gateway is asked once per
    CID, never more slots than one client's), and one DELETE answers all three."""
    from cod.content.fetcher import FETCH_SLOTS_PER_CLIENT

    running = await start_node(tmp_path / "n", concurrency=1, gateways=[held.gateway.url])
    try:
        await put(http, running.url, module_cid(HELLO), HELLO, "application/octet-stream")
        spec, _ = _fetching_job(module_cid(HELLO), "shared")
        submitted = [asyncio.ensure_future(_job(http, running.url, spec)) for _ in range(3)]
        await _until_fetching(held, FETCH_SLOTS_PER_CLIENT)
        while running.node._preparing[str(spec.cid)].users < 3:  # every POST has reached the node
            await asyncio.sleep(0.01)
        assert running.node.fetcher.slots_in_use() == FETCH_SLOTS_PER_CLIENT
        async with http.delete(f"{running.url}/v1/jobs/{spec.cid}") as resp:
            status, body = resp.status, await resp.json()
        _is_cancelled(status, body)
        assert await asyncio.wait_for(asyncio.gather(*submitted), 30) == [(200, body)] * 3
        assert len(held.gateway.requests) == FETCH_SLOTS_PER_CLIENT and running.node.fetcher.slots_in_use() == 0
    finally:
        await running.stop()


async def test_a_cancel_after_the_fetch_ended_but_before_the_job_was_queued_holds(
        tmp_path: Path, http: aiohttp.ClientSession, held: _Hold) -> None:
    """DELETE racing the fetch's end: the inputs are fetched, the submission is still checking
    the job (between the fetch and the queue). The DELETE answers the cancelled record, the POST
    answers the same record, the job is never queued, and a new POST runs it (nothing fetched
    again: the blobs are held now)."""
    running = await start_node(tmp_path / "n", concurrency=1, gateways=[held.gateway.url])
    node = running.node
    touch = node._touch_blobs
    held_after_the_fetch, gate, reached = _held(touch)
    try:
        await put(http, running.url, module_cid(HELLO), HELLO, "application/octet-stream")
        spec, cars = _fetching_job(module_cid(HELLO), "race")
        held.serve(cars)
        node._touch_blobs = held_after_the_fetch  # type: ignore[method-assign]
        submitted = asyncio.ensure_future(_job(http, running.url, spec))
        await asyncio.wait_for(reached.wait(), 60)
        assert all(node.blobs.has(cid) for cid in cars)
        async with http.delete(f"{running.url}/v1/jobs/{spec.cid}") as resp:
            status, body = resp.status, await resp.json()
        _is_cancelled(status, body)
        gate.set()
        assert await asyncio.wait_for(submitted, 30) == (200, body)
        assert node.active == 0 and not node._running
        node._touch_blobs = touch  # type: ignore[method-assign]
        before = len(held.gateway.requests)
        status, again = await asyncio.wait_for(_job(http, running.url, spec), 60)
        assert status == 200 and again["state"] == "done", again
        assert len(held.gateway.requests) == before
    finally:
        gate.set()
        await running.stop()


async def test_a_submission_right_behind_a_cancel_of_the_fetch_gets_a_fetch_of_its_own(
        tmp_path: Path, http: aiohttp.ClientSession, held: _Hold) -> None:
    """A POST of the job in the same moment as the DELETE of its fetching predecessor (before
    the cancelled fetches have ended) must not join them and be cancelled with them: it
    prepares the job anew and the job runs; the DELETE answers the cancelled record."""
    running = await start_node(tmp_path / "n", concurrency=1, gateways=[held.gateway.url])
    node = running.node
    try:
        await put(http, running.url, module_cid(HELLO), HELLO, "application/octet-stream")
        spec, cars = _fetching_job(module_cid(HELLO), "right behind")
        first = asyncio.ensure_future(_job(http, running.url, spec))
        await _until_fetching(held)
        cancel = asyncio.ensure_future(node.cancel(str(spec.cid)))
        await asyncio.sleep(0)  # the cancel is recorded and the fetches are being stopped
        held.serve(cars)
        status, again = await asyncio.wait_for(node.submit({"spec": spec.to_dict()}, wait=True,
                                                           client="127.0.0.1"), 60)
        assert status == 200 and again["state"] == "done", again
        body = await cancel
        assert body["state"] == "failed" and body["error"]["error"] == "Cancelled", body
        assert await asyncio.wait_for(first, 30) == (200, body)
    finally:
        await running.stop()


async def test_a_cancel_while_the_policy_is_asked_holds_and_fetches_nothing(
        tmp_path: Path, http: aiohttp.ClientSession, held: _Hold) -> None:
    """DELETE of a job whose submission is still being admitted (the policy asks its ledger,
    before any fetch): two DELETEs at once answer the cancelled record, the POST answers it
    once the ledger answered, nothing is fetched for it."""
    running = await start_node(tmp_path / "n", concurrency=1, gateways=[held.gateway.url])
    node = running.node
    slow_ledger, gate, reached = _held(node.policy.admit)
    try:
        await put(http, running.url, module_cid(HELLO), HELLO, "application/octet-stream")
        spec, _ = _fetching_job(module_cid(HELLO), "admitting")
        node.policy.admit = slow_ledger  # type: ignore[method-assign]
        submitted = asyncio.ensure_future(_job(http, running.url, spec))
        await asyncio.wait_for(reached.wait(), 60)

        async def cancel() -> tuple[int, Any]:
            async with http.delete(f"{running.url}/v1/jobs/{spec.cid}") as resp:
                return resp.status, await resp.json()

        (s1, b1), (s2, b2) = await asyncio.gather(cancel(), cancel())
        _is_cancelled(s1, b1)
        assert (s2, b2) == (s1, b1)
        gate.set()
        assert await asyncio.wait_for(submitted, 30) == (s1, b1)
        assert held.gateway.requests == [] and node.active == 0
    finally:
        gate.set()
        await running.stop()


async def test_a_done_job_submitted_again_after_its_inputs_were_collected_fetches_nothing(
        tmp_path: Path, http: aiohttp.ClientSession, held: _Hold) -> None:
    """A done job keeps its results 7 days, its input blobs 1 day (SPEC 9.11). Submitted again
    two days on, the node answered 409 MissingBlobs for a job it has done, after asking its
    gateway for the inputs (a fetch no DELETE could stop: the job is done). A job the node has
    is answered as it is: 200, its done record, nothing fetched."""
    now = [1_000 * 10**9]
    running = await start_node(tmp_path / "n", concurrency=1, gateways=[held.gateway.url], clock=lambda: now[0])
    try:
        held.serve({})  # the gateway has nothing, at once
        await put(http, running.url, module_cid(HELLO), HELLO, "application/octet-stream")
        spec, cars = _fetching_job(module_cid(HELLO), "collected", count=1)
        [(cid, data)] = cars.items()
        assert (await put(http, running.url, cid, data))[0] == 201
        status, done = await _job(http, running.url, spec)
        assert status == 200 and done["state"] == "done", done
        now[0] += 2 * 86_400 * 10**9
        removed = await running.node.collect()
        assert cid in removed["blobs"] and removed["results"] == [], removed
        status, again = await asyncio.wait_for(_job(http, running.url, spec), 30)
        assert (status, again) == (200, done)
        assert held.gateway.requests == []
    finally:
        await running.stop()


async def test_health_says_when_no_executor_can_run_jobs(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """A node whose executors are all gone (killed, and a replacement cannot start) answers
    /v1/health 503 with status "unavailable" and workers 0, so requesters move to a spare; it
    says ok again once an executor is back."""
    running = await start_node(tmp_path / "n", concurrency=1)
    pool = running.node.pool
    try:
        async with http.get(running.url + "/v1/health") as resp:
            assert resp.status == 200 and await resp.json() == {"status": "ok", "active_jobs": 0, "workers": 1,
                                                                "concurrency": 1}
        pool.cache_dir = str(tmp_path / "not-a-dir" / "x")  # an engine cannot start on a file: starts fail
        (tmp_path / "not-a-dir").write_bytes(b"")
        pool.kill_all()  # as a crash of every executor would
        while pool.start_error is None:
            await asyncio.sleep(0.02)
        async with http.get(running.url + "/v1/health") as resp:
            body = await resp.json()
        assert resp.status == 503 and body["status"] == "unavailable" and body["workers"] == 0, body
        assert body["message"] and body["hint"], body
        pool.cache_dir = str(tmp_path / "n" / "cache")
        while pool.alive_workers() < 1:
            await asyncio.sleep(0.02)
        async with http.get(running.url + "/v1/health") as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "ok"
    finally:
        await running.stop()
