"""Every file and directory inside what a node holds is addressable by its own CID (SPEC 9.9,
"Contents"): inside a dataset, a stored tree (an upload, a fetch) and a job's results, a node
answers `GET /v1/holdings?cid=` for it (under ``inside``), mounts it for a job (a file CID as a
single-file input, a directory CID as a directory), serves it at `GET /v1/blobs/{cid}`, and the
verifier's require_local counts it as held.

Real nodes on loopback; expected CIDs come from the js-ipfs-unixfs importer and ipfs-car, the
expected outputs from the files' own bytes (a word count by hand, a `cat`).
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cod.content.car import read_car
from cod.content.cid import CID
from cod.local import PreparedJob, prepare
from cod.node.caps import NodeCaps
from cod.node.server import RunningNode, start_node
from verifier import Records, verify

from ..helpers import VECTORS, ipfs_car_cid, js_unixfs_cid
from ..node_kit import CAR_TYPE, cat_wat, put, put_module, wat

WORDCOUNT = VECTORS / "wordcount.wasm"


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    copy = tmp_path / "corpus"
    shutil.copytree(VECTORS / "data" / "wordcount", copy)
    return copy


@pytest.fixture()
def cat(tmp_path: Path) -> Path:
    """A module printing /inputs/f (up to 4096 bytes): a job on one single-file input."""
    path = tmp_path / "cat.wasm"
    path.write_bytes(wat(cat_wat("f")))
    return path


async def _start(tmp_path: Path, name: str, **options: object) -> RunningNode:
    return await start_node(tmp_path / name, concurrency=1, **options)


async def _modules(http: aiohttp.ClientSession, urls: list[str], *modules: Path) -> None:
    """Give the nodes the modules (require_local asks the nodes to hold the module too)."""
    for url in urls:
        for module in modules:
            await put_module(http, url, module.read_bytes())


async def _inside(http: aiohttp.ClientSession, url: str, *cids: str) -> list[str]:
    async with http.get(f"{url}/v1/holdings", params=[("cid", cid) for cid in cids]) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["truncated"] is False
    inside: list[str] = body.get("inside", [])
    return inside


def _counted(folder: Path, mount: str) -> str:
    """wordcount's count.txt for ``folder``, by hand: 'lines words bytes path' of every file in
    path order."""
    rows = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        rows.append((data.count(b"\n"), len(data.split()), len(data), f"{mount}/{path.relative_to(folder)}"))
    return "".join(f"{a} {b} {c} {name}\n" for a, b, c, name in rows)


def _by_cid(module: Path, cid: str, mount: str) -> PreparedJob:
    job = prepare(module, [], inputs=[f"ipfs://{cid}:{mount}"])
    assert job.sources == {}  # this requester has no bytes of it: only nodes do
    return job


async def test_a_file_and_a_directory_inside_a_dataset_run_on_three_nodes_by_their_cids(
        tmp_path: Path, corpus: Path, cat: Path, records: Records, http: aiohttp.ClientSession) -> None:
    """The issue's case: three nodes serve a dataset; `-i FILECID:/inputs/f` and `-i DIRCID:/inputs`
    (a file and a subdirectory of it) run verified on all three with require_local."""
    file_cid = js_unixfs_cid(corpus / "moby.txt")
    dir_cid = js_unixfs_cid(corpus / "more")
    nodes = [await _start(tmp_path, f"n{i}", datasets=[corpus]) for i in range(3)]
    urls = [n.url for n in nodes]
    try:
        await _modules(http, urls, cat, WORDCOUNT)
        for url in urls:
            assert await _inside(http, url, file_cid, dir_cid) == sorted([file_cid, dir_cid])
        by_file = await verify(_by_cid(cat, file_cid, "/inputs/f"), urls, 3, records=records,
                               require_local=True, output_dir=tmp_path / "f")
        assert by_file.outcome == "verified"
        assert (tmp_path / "f" / "stdout").read_bytes() == (corpus / "moby.txt").read_bytes()
        by_dir = await verify(_by_cid(WORDCOUNT, dir_cid, "/inputs"), urls, 3, records=records,
                              require_local=True, output_dir=tmp_path / "d")
        assert by_dir.outcome == "verified"
        assert (tmp_path / "d" / "outputs" / "count.txt").read_text() == _counted(corpus / "more", "/inputs")
        assert all(n.node.fetcher.fetched_bytes == 0 for n in nodes)  # nothing was fetched or uploaded
        async with http.get(f"{urls[0]}/v1/blobs/{file_cid}") as resp:  # served as its bytes
            assert resp.status == 200 and await resp.read() == (corpus / "moby.txt").read_bytes()
        async with http.get(f"{urls[0]}/v1/blobs/{dir_cid}") as resp:  # and a directory as its CAR
            assert resp.status == 200 and resp.content_type == CAR_TYPE
            roots, blocks = read_car(io.BytesIO(await resp.read()))
            assert [str(r) for r in roots] == [dir_cid] and len(list(blocks)) == 3  # the directory, two files
    finally:
        for node in nodes:
            await node.stop()


async def test_inside_an_uploaded_tree_a_file_and_a_directory_are_held_served_and_mounted(
        tmp_path: Path, corpus: Path, cat: Path, records: Records, http: aiohttp.ClientSession) -> None:
    car = tmp_path / "corpus.car"
    root = ipfs_car_cid(corpus, car)
    file_cid = js_unixfs_cid(corpus / "more" / "cod.txt")
    dir_cid = js_unixfs_cid(corpus / "more")
    node = await _start(tmp_path, "n")
    try:
        assert (await put(http, node.url, root, car.read_bytes()))[0] == 201
        await _modules(http, [node.url], cat, WORDCOUNT)
        assert await _inside(http, node.url, file_cid, dir_cid, root) == sorted([file_cid, dir_cid, root])
        async with http.get(f"{node.url}/v1/blobs/{file_cid}") as resp:
            assert resp.status == 200 and await resp.read() == (corpus / "more" / "cod.txt").read_bytes()
        await verify(_by_cid(cat, file_cid, "/inputs/f"), [node.url], 1, records=records, require_local=True,
                     output_dir=tmp_path / "f")
        assert (tmp_path / "f" / "stdout").read_bytes() == (corpus / "more" / "cod.txt").read_bytes()
        await verify(_by_cid(WORDCOUNT, dir_cid, "/inputs"), [node.url], 1, records=records,
                     require_local=True, output_dir=tmp_path / "d")
        assert (tmp_path / "d" / "outputs" / "count.txt").read_text() == _counted(corpus / "more", "/inputs")
    finally:
        await node.stop()


async def test_inside_a_result_a_file_and_the_outputs_directory_are_addressable(
        tmp_path: Path, corpus: Path, cat: Path, records: Records, http: aiohttp.ClientSession) -> None:
    node = await _start(tmp_path, "n", datasets=[corpus])
    try:
        first = await verify(_by_cid(WORDCOUNT, js_unixfs_cid(corpus), "/inputs"), [node.url], 1,
                             records=records, output_dir=tmp_path / "r")
        count = tmp_path / "r" / "outputs" / "count.txt"
        file_cid, outputs_cid = js_unixfs_cid(count), js_unixfs_cid(tmp_path / "r" / "outputs")
        result_cid = js_unixfs_cid(tmp_path / "r")
        assert result_cid == first.result_cid
        await node.node.listed()  # a result is listed after its job is answered, off its path
        assert await _inside(http, node.url, file_cid, outputs_cid, result_cid) == sorted(
            [file_cid, outputs_cid, result_cid])
        await _modules(http, [node.url], cat)
        await verify(_by_cid(cat, file_cid, "/inputs/f"), [node.url], 1, records=records,
                     require_local=True, output_dir=tmp_path / "f")
        assert (tmp_path / "f" / "stdout").read_bytes() == count.read_bytes()
        async with http.get(f"{node.url}/v1/blobs/{outputs_cid}") as resp:
            assert resp.status == 200 and resp.content_type == CAR_TYPE
            roots, _ = read_car(io.BytesIO(await resp.read()))
            assert [str(r) for r in roots] == [outputs_cid]
    finally:
        await node.stop()


async def test_the_index_outlives_a_restart_and_forgets_what_is_gone(tmp_path: Path, corpus: Path,
                                                                    http: aiohttp.ClientSession) -> None:
    from cod.node.contents import Contents

    moby = js_unixfs_cid(corpus / "moby.txt")
    cod_txt = js_unixfs_cid(corpus / "more" / "cod.txt")
    node = await _start(tmp_path, "n", datasets=[corpus])
    await node.stop()
    assert {row[0] for row in Contents(tmp_path / "n" / "contents.db").find(moby)} == {"dataset"}  # on disk
    node = await _start(tmp_path, "n", datasets=[corpus])
    try:
        assert await _inside(http, node.url, moby, cod_txt) == sorted([moby, cod_txt])
        (corpus / "moby.txt").write_bytes(b"Call me Ishmael.\n")  # the dataset changes: a new CID
        changed = js_unixfs_cid(corpus / "moby.txt")
        async with http.get(f"{node.url}/v1/blobs/{moby}") as resp:  # the fingerprint is taken: changed
            assert resp.status == 404
        assert await _inside(http, node.url, moby, cod_txt, changed) == sorted([cod_txt, changed])
    finally:
        await node.stop()


async def test_a_chunk_of_a_file_is_not_a_file_of_the_tree(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Only the roots of files and directories are addressable: a raw leaf of a file of two
    chunks (a block, not a file of the tree) is not held, whatever it hashes to."""
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "big").write_bytes(b"a" * (1 << 20) + b"b")  # two chunks: a dag-pb File over two raw leaves
    (tree / "small").write_bytes(b"b")  # (the same bytes as the second leaf: a file of its own too)
    car = tmp_path / "t.car"
    root = ipfs_car_cid(tree, car)
    leaf = str(CID.of(0x55, b"a" * (1 << 20)))
    node = await _start(tmp_path, "n")
    try:
        assert (await put(http, node.url, root, car.read_bytes()))[0] == 201
        assert root == js_unixfs_cid(tree)
        files = [js_unixfs_cid(tree / "big"), js_unixfs_cid(tree / "small")]
        assert await _inside(http, node.url, leaf, *files) == sorted(files)
        async with http.get(f"{node.url}/v1/blobs/{leaf}") as resp:
            assert resp.status == 404
    finally:
        await node.stop()


async def test_a_tree_past_max_entries_is_addressable_by_its_root_only(tmp_path: Path, corpus: Path,
                                                                       http: aiohttp.ClientSession) -> None:
    """The index is bounded: with max_entries = 3, a dataset of 5 entries below its root lists
    none of them (its root is still offered), one of 3 lists all; a request never walks a tree."""
    small = tmp_path / "small"
    (small / "d").mkdir(parents=True)
    (small / "a").write_bytes(b"a\n")
    (small / "d" / "b").write_bytes(b"b\n")
    node = await _start(tmp_path, "n", datasets=[corpus, small], caps=NodeCaps(max_entries=3))
    try:
        async with http.get(f"{node.url}/v1/holdings") as resp:
            assert (await resp.json())["datasets"] == sorted([js_unixfs_cid(corpus), js_unixfs_cid(small)])
        inner = [js_unixfs_cid(small / "a"), js_unixfs_cid(small / "d"), js_unixfs_cid(small / "d" / "b")]
        assert await _inside(http, node.url, js_unixfs_cid(corpus / "moby.txt"), *inner) == sorted(inner)
    finally:
        await node.stop()


async def test_a_directory_inside_is_served_as_a_car_never_kept(tmp_path: Path, corpus: Path,
                                                                http: aiohttp.ClientSession) -> None:
    """The CAR of a directory inside a held tree is built per request and never kept: nested
    directories cannot make the node keep a copy of a tree per level."""
    dir_cid = js_unixfs_cid(corpus / "more")
    node = await _start(tmp_path, "n", datasets=[corpus])
    try:
        async def car() -> bytes:
            async with http.get(f"{node.url}/v1/blobs/{dir_cid}") as resp:
                assert resp.status == 200 and resp.headers["X-Content-Type-Options"] == "nosniff"
                return await resp.read()

        cars = await asyncio.gather(*(car() for _ in range(4)))  # at once: each built, all the same
        assert len(set(cars)) == 1
        roots, _ = read_car(io.BytesIO(cars[0]))
        assert [str(r) for r in roots] == [dir_cid]
        builds = node.node.cars.builds
        async with http.head(f"{node.url}/v1/blobs/{dir_cid}") as resp:
            assert resp.status == 200 and resp.content_type == CAR_TYPE
        async with http.head(f"{node.url}/v1/blobs/{CID.of(0x55, b'absent')}") as resp:
            assert resp.status == 404
        assert node.node.cars.builds == builds  # HEAD builds no CAR
        assert dir_cid not in node.node.cars.kept() and not [
            p for p in (tmp_path / "n" / "cars").iterdir() if dir_cid in p.name or p.name.startswith(".car-")]
    finally:
        await node.stop()


async def test_a_private_module_inside_a_tree_is_never_answered(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    hello = VECTORS / "hello.wasm"
    tree = tmp_path / "t"
    tree.mkdir()
    shutil.copy(hello, tree / "copy.wasm")
    (tree / "other").write_bytes(b"x")
    car = tmp_path / "t.car"
    root = ipfs_car_cid(tree, car)
    private = js_unixfs_cid(hello)
    node = await _start(tmp_path, "n", private_modules=[hello])
    try:
        assert (await put(http, node.url, root, car.read_bytes()))[0] == 201
        assert await _inside(http, node.url, private, js_unixfs_cid(tree / "other")) == [js_unixfs_cid(tree / "other")]
        async with http.get(f"{node.url}/v1/blobs/{private}") as resp:
            assert resp.status == 404
    finally:
        await node.stop()


async def test_the_collector_keeps_a_result_a_running_job_reads_then_forgets_it(
        tmp_path: Path, corpus: Path, records: Records, http: aiohttp.ClientSession) -> None:
    from cod.jobspec import Input, JobSpec, Limits
    from cod.node.collector import Retention

    from ..node_kit import BUSY_WAT, until_state

    node = await _start(tmp_path, "n", datasets=[corpus], retention=Retention(keep_jobs=0, keep_results_s=0))
    try:
        await verify(_by_cid(WORDCOUNT, js_unixfs_cid(corpus), "/inputs"), [node.url], 1, records=records,
                     output_dir=tmp_path / "r")
        count = js_unixfs_cid(tmp_path / "r" / "outputs" / "count.txt")
        await node.node.listed()
        busy = await put_module(http, node.url, wat(BUSY_WAT))
        spec = JobSpec(module=busy, inputs=(Input(cid=count, path="/inputs/f"),), limits=Limits(timeout_ms=120_000))
        async with http.post(f"{node.url}/v1/jobs", json={"spec": spec.to_dict()}) as resp:
            assert resp.status == 202, await resp.text()
        await until_state(http, node.url, str(spec.cid), {"running"})
        far = node.node.clock() + 10**18
        assert (await node.node.collect(far))["results"] == []  # the running job reads a file of it
        assert await _inside(http, node.url, count) == [count]
        async with http.delete(f"{node.url}/v1/jobs/{spec.cid}") as resp:
            assert resp.status == 200
        removed = await node.node.collect(far)
        assert len(removed["results"]) == 1 and await _inside(http, node.url, count) == []
        assert node.node.contents.find(count) == []
    finally:
        await node.stop()


async def test_a_lost_index_is_made_again_at_start_and_a_tree_gone_behind_the_node_answers_nothing(
        tmp_path: Path, corpus: Path, http: aiohttp.ClientSession) -> None:
    car = tmp_path / "c.car"
    root = ipfs_car_cid(corpus, car)
    cod_txt = js_unixfs_cid(corpus / "more" / "cod.txt")
    node = await _start(tmp_path, "n")
    assert (await put(http, node.url, root, car.read_bytes()))[0] == 201
    await node.stop()
    for name in ("contents.db", "contents.db-wal", "contents.db-shm"):
        (tmp_path / "n" / name).unlink(missing_ok=True)
    node = await _start(tmp_path, "n")
    try:
        await node.node.listed()  # the listing of what was stored unlisted
        assert await _inside(http, node.url, cod_txt) == [cod_txt]
        shutil.rmtree(tmp_path / "n" / "blobs" / "trees" / root)  # removed behind the node's back
        assert await _inside(http, node.url, cod_txt) == []
        async with http.get(f"{node.url}/v1/blobs/{cod_txt}") as resp:
            assert resp.status == 404
        unknown = [str(CID.of(0x55, n.to_bytes(4, "big"))) for n in range(64)]  # CIDs nothing lists
        assert await _inside(http, node.url, *unknown) == []
    finally:
        await node.stop()


async def test_a_job_naming_a_file_of_a_stored_tree_keeps_the_tree_in_use(tmp_path: Path, corpus: Path, cat: Path,
                                                                         http: aiohttp.ClientSession) -> None:
    """A stored tree is used (SPEC 9.11) when a job names a file inside it: the collector keeps
    it keep_blobs_s from that job, not from the upload (a clock the test sets)."""
    from cod.jobspec import Input, JobSpec
    from cod.node.collector import Retention

    now = [10**18]
    car = tmp_path / "c.car"
    root = ipfs_car_cid(corpus, car)
    node = await _start(tmp_path, "n", retention=Retention(keep_blobs_s=100, collect_every_s=0), clock=lambda: now[0])
    try:
        assert (await put(http, node.url, root, car.read_bytes()))[0] == 201
        module = await put_module(http, node.url, cat.read_bytes())
        now[0] += 90 * 10**9
        spec = JobSpec(module=module, inputs=(Input(cid=js_unixfs_cid(corpus / "moby.txt"), path="/inputs/f"),))
        async with http.post(f"{node.url}/v1/jobs?wait=true", json={"spec": spec.to_dict()}) as resp:
            assert resp.status == 200 and (await resp.json())["state"] == "done"
        removed = await node.node.collect(now[0] + 50 * 10**9)  # 140 s after the upload, 50 s after the job
        assert root not in removed["blobs"] and node.node.blobs.tree(root) is not None
    finally:
        await node.stop()


async def test_a_car_built_for_a_request_that_went_away_is_removed(tmp_path: Path, corpus: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that goes away while the CAR of a directory inside is being built leaves no file
    behind (the build under way is removed when it ends; one not begun never runs)."""
    import threading

    from cod.node import cars
    from cod.node.cars import CarCache

    started, release = threading.Event(), threading.Event()
    real = cars.car_format.write_car

    def held_write(tree: Path, dest: str) -> object:
        started.set()
        release.wait(30)
        return real(tree, dest)

    cache = CarCache(tmp_path / "cars", builders=1)
    try:
        monkeypatch.setattr(cars.car_format, "write_car", held_write)
        gone = asyncio.ensure_future(cache.transient(js_unixfs_cid(corpus), corpus))
        assert await asyncio.to_thread(started.wait, 30)  # the build is under way
        queued = asyncio.ensure_future(cache.transient(js_unixfs_cid(corpus), corpus))
        await asyncio.sleep(0)
        gone.cancel()
        queued.cancel()  # not begun: never runs
        release.set()
        for task in (gone, queued):
            with pytest.raises(asyncio.CancelledError):
                await task
        monkeypatch.setattr(cars.car_format, "write_car", real)
        kept = await cache.transient(js_unixfs_cid(corpus / "more"), corpus / "more")  # after them, on the one builder
        assert sorted(p.name for p in (tmp_path / "cars").iterdir()) == [kept.name]
        kept.unlink()
    finally:
        cache.close()


async def test_a_result_is_listed_again_at_start_when_its_listing_was_lost(
        tmp_path: Path, corpus: Path, records: Records, http: aiohttp.ClientSession) -> None:
    node = await _start(tmp_path, "n", datasets=[corpus])
    try:
        await verify(_by_cid(WORDCOUNT, js_unixfs_cid(corpus), "/inputs"), [node.url], 1, records=records,
                     output_dir=tmp_path / "r")
        await node.node.listed()
    finally:
        await node.stop()
    count = js_unixfs_cid(tmp_path / "r" / "outputs" / "count.txt")
    for name in ("contents.db", "contents.db-wal", "contents.db-shm"):
        (tmp_path / "n" / name).unlink(missing_ok=True)
    node = await _start(tmp_path, "n", datasets=[corpus])
    try:
        await node.node.listed()
        assert await _inside(http, node.url, count) == [count]
        async with http.get(f"{node.url}/v1/blobs/{count}") as resp:
            assert resp.status == 200 and await resp.read() == (tmp_path / "r" / "outputs" / "count.txt").read_bytes()
    finally:
        await node.stop()


async def test_a_damaged_index_is_set_aside_and_made_again_at_start(tmp_path: Path, corpus: Path,
                                                                   http: aiohttp.ClientSession) -> None:
    """contents.db is only a hint, made from what the node holds: a damaged one (not a database
    any more) never keeps the node from starting; it is set aside and every tree listed again."""
    car = tmp_path / "c.car"
    root = ipfs_car_cid(corpus, car)
    cod_txt = js_unixfs_cid(corpus / "more" / "cod.txt")
    node = await _start(tmp_path, "n")
    assert (await put(http, node.url, root, car.read_bytes()))[0] == 201
    await node.stop()
    for name in ("contents.db-wal", "contents.db-shm"):
        (tmp_path / "n" / name).unlink(missing_ok=True)
    (tmp_path / "n" / "contents.db").write_bytes(b"\x00not a database\xff" * 512)
    node = await _start(tmp_path, "n")
    try:
        await node.node.listed()
        assert await _inside(http, node.url, cod_txt) == [cod_txt]
        async with http.get(f"{node.url}/v1/blobs/{cod_txt}") as resp:
            assert resp.status == 200 and await resp.read() == (corpus / "more" / "cod.txt").read_bytes()
    finally:
        await node.stop()


async def test_an_index_that_fails_to_read_answers_nothing_and_jobs_still_run(
        tmp_path: Path, corpus: Path, cat: Path, http: aiohttp.ClientSession) -> None:
    """A read of contents.db that fails (damaged pages, an I/O error) is a hint lost: holdings
    answer without ``inside``, and a job on a stored tree's root still runs; never a 500."""
    import sqlite3

    from cod.jobspec import Input, JobSpec

    car = tmp_path / "c.car"
    root = ipfs_car_cid(corpus, car)
    cod_txt = js_unixfs_cid(corpus / "more" / "cod.txt")
    node = await _start(tmp_path, "n")
    try:
        assert (await put(http, node.url, root, car.read_bytes()))[0] == 201
        module = await put_module(http, node.url, cat.read_bytes())
        for db in (node.node.contents.db, node.node.contents.reads):  # every statement now fails in sqlite3
            db.set_authorizer(lambda *_: sqlite3.SQLITE_DENY)
        assert await _inside(http, node.url, cod_txt, root) == []
        spec = JobSpec(module=module, inputs=(Input(cid=root, path="/inputs"),))
        async with http.post(f"{node.url}/v1/jobs?wait=true", json={"spec": spec.to_dict()}) as resp:
            assert resp.status == 200, await resp.text()
        spec = JobSpec(module=module, inputs=(Input(cid=cod_txt, path="/inputs/f"),))
        async with http.post(f"{node.url}/v1/jobs?wait=true", json={"spec": spec.to_dict()}) as resp:
            assert resp.status == 409 and (await resp.json())["missing"] == [cod_txt]
    finally:
        await node.stop()


def _open_deleted(folder: Path) -> int:
    """Files under ``folder`` this process (the node's) holds open after their removal."""
    held = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        held += target.startswith(str(folder)) and target.endswith("(deleted)")
    return held


async def test_slow_clients_cannot_pile_up_cars_of_directories_inside(
        tmp_path: Path, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture) -> None:
    """Each download of a directory inside a held tree has a CAR file of its own on the node's
    disk until it is sent: clients that read nothing would hold one each (8 nested directories
    over 16 MiB: 16 MiB a client, 1024 connections). The node sends at most TRANSIENT_CARS at
    once and answers 429 past it; a client that goes away mid-CAR is no node error."""
    import logging
    import socket

    from cod.node.cars import TRANSIENT_CARS

    dataset, here, nested = tmp_path / "ds", tmp_path / "ds", []
    for name in "abcdefgh":
        here = here / name
        here.mkdir(parents=True)
        nested.append(here)
    (here / "big").write_bytes(b"".join(n.to_bytes(4, "big") for n in range(4 << 20)))  # 16 MiB, no chunk twice
    (dataset / "x").write_bytes(b"x")
    cids = [js_unixfs_cid(path) for path in nested]
    node = await _start(tmp_path, "n", datasets=[dataset])
    host, port = node.url.rsplit("//", 1)[1].rsplit(":", 1)
    slow: list[socket.socket] = []
    caplog.set_level(logging.ERROR, logger="cod.node")
    try:
        for cid in cids[:TRANSIENT_CARS]:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # reads nothing: the answer stalls
            sock.connect((host, int(port)))
            sock.sendall(f"GET /v1/blobs/{cid} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            slow.append(sock)
        cars = tmp_path / "n" / "cars"
        for _ in range(600):  # until every stalled answer holds its CAR (built, removed, being sent)
            if _open_deleted(cars) >= TRANSIENT_CARS:
                break
            await asyncio.sleep(0.05)
        assert _open_deleted(cars) == TRANSIENT_CARS
        async with http.get(f"{node.url}/v1/blobs/{cids[-1]}") as resp:
            assert resp.status == 429 and resp.headers["Retry-After"] == "1"
            assert (await resp.json())["error"] == "NodeBusy"
        for sock in slow:
            sock.close()
        for _ in range(600):
            if _open_deleted(cars) == 0:
                break
            await asyncio.sleep(0.05)
        async with http.get(f"{node.url}/v1/blobs/{cids[-1]}") as resp:  # the places are free again
            assert resp.status == 200
            roots, _ = read_car(io.BytesIO(await resp.read()))
            assert [str(r) for r in roots] == [cids[-1]]
        assert _open_deleted(cars) == 0 and not list(cars.iterdir())
        assert [r.getMessage() for r in caplog.records if r.name.startswith("cod.node")] == []
    finally:
        for sock in slow:
            sock.close()
        await node.stop()


async def test_the_collector_keeps_the_tree_a_running_job_mounts_whatever_else_holds_the_file(
        tmp_path: Path, corpus: Path, http: aiohttp.ClientSession) -> None:
    """A running job mounts a file of stored tree T by the file's CID. Others then upload trees
    holding the same file whose roots sort before T's: the index answers at most MAX_PLACES trees
    for a CID, so T is no longer among them; the collector must still keep T (the job reads it)."""
    from cod.content.car import write_car
    from cod.content.unixfs import cid_of_tree
    from cod.jobspec import Input, JobSpec, Limits
    from cod.node.collector import Retention
    from cod.node.contents import MAX_PLACES

    from ..node_kit import BUSY_WAT, until_state

    car = tmp_path / "t.car"
    root = ipfs_car_cid(corpus, car)
    moby = js_unixfs_cid(corpus / "moby.txt")
    node = await _start(tmp_path, "n", retention=Retention(keep_blobs_s=0, collect_every_s=0))
    try:
        assert (await put(http, node.url, root, car.read_bytes()))[0] == 201
        busy = await put_module(http, node.url, wat(BUSY_WAT))
        spec = JobSpec(module=busy, inputs=(Input(cid=moby, path="/inputs/f"),), limits=Limits(timeout_ms=120_000))
        async with http.post(f"{node.url}/v1/jobs", json={"spec": spec.to_dict()}) as resp:
            assert resp.status == 202, await resp.text()
        await until_state(http, node.url, str(spec.cid), {"running"})
        others: list[str] = []
        for n in range(200):  # trees holding moby.txt whose roots sort before T's
            other = tmp_path / f"o{n}"
            other.mkdir()
            shutil.copy(corpus / "moby.txt", other / "moby.txt")
            (other / "tag").write_bytes(str(n).encode())
            if str(cid_of_tree(other)) < root:
                other_car = tmp_path / f"o{n}.car"
                others.append(str(write_car(other, other_car)))
                assert (await put(http, node.url, others[-1], other_car.read_bytes()))[0] == 201
            if len(others) == MAX_PLACES:
                break
        assert len(others) == MAX_PLACES and root not in {r for _k, r, _p, _d in node.node.contents.find(moby)}
        removed = await node.node.collect(node.node.clock() + 10**18)
        assert root not in removed["blobs"] and node.node.blobs.tree(root) is not None
    finally:
        await node.stop()


async def test_a_file_of_a_dataset_that_keeps_changing_stays_held(tmp_path: Path, corpus: Path,
                                                                   http: aiohttp.ClientSession) -> None:
    """A dataset whose log file grows is offered under a new CID at each change, and the copies
    of its old versions stay on disk until the collector runs. moby.txt never changes: the node
    holds it all along, whatever the index answers for it (at most MAX_PLACES trees: old copies
    whose roots sort first must not hide the one offered)."""
    from cod.content.unixfs import cid_of_tree
    from cod.node.collector import Retention
    from cod.node.contents import MAX_PLACES

    moby = js_unixfs_cid(corpus / "moby.txt")
    node = await _start(tmp_path, "n", datasets=[corpus], retention=Retention(collect_every_s=0))
    try:
        older: list[str] = []
        current = str(cid_of_tree(corpus))
        for n in range(100):
            if sum(root < current for root in older) >= MAX_PLACES:
                break
            older.append(current)
            (corpus / "log").write_bytes(b"line\n" * (n + 1))  # the operator's dataset changes
            current = str(cid_of_tree(corpus))
            async with http.get(f"{node.url}/v1/blobs/{older[-1]}") as resp:  # the change is seen
                assert resp.status == 404
            async with http.get(f"{node.url}/v1/blobs/{current}") as resp:  # offered (and copied) anew
                assert resp.status == 200
        assert sum(root < current for root in older) >= MAX_PLACES
        for restarted in (False, True):  # a restart lists no copy of an old version again
            if restarted:
                await node.stop()
                node = await _start(tmp_path, "n", datasets=[corpus], retention=Retention(collect_every_s=0))
                await node.node.listed()
                assert len(node.node.offers.stale_copies()) >= MAX_PLACES  # still on disk
            assert await _inside(http, node.url, moby) == [moby]
            async with http.get(f"{node.url}/v1/blobs/{moby}") as resp:
                assert resp.status == 200 and await resp.read() == (corpus / "moby.txt").read_bytes()
    finally:
        await node.stop()


async def test_a_module_inside_a_dataset_runs_by_its_cid_on_three_nodes(
        tmp_path: Path, corpus: Path, cat: Path, records: Records, http: aiohttp.ClientSession) -> None:
    """A module is a file like any other: three nodes serve a dataset holding cat.wasm; a
    requester with none of its bytes runs it by its CID (`cod run ipfs://CID --require-local`),
    as /v1/holdings says the nodes hold it, on a file of the dataset by its CID."""
    shutil.copy(cat, corpus / "cat.wasm")
    module, moby = js_unixfs_cid(corpus / "cat.wasm"), js_unixfs_cid(corpus / "moby.txt")
    nodes = [await _start(tmp_path, f"n{i}", datasets=[corpus]) for i in range(3)]
    try:
        urls = [n.url for n in nodes]
        for url in urls:
            assert await _inside(http, url, module) == [module]
        job = prepare(f"ipfs://{module}", [], inputs=[f"ipfs://{moby}:/inputs/f"], remote=True)
        assert not job.wasm and job.sources == {}  # no bytes here: only the nodes have them
        verification = await verify(job, urls, 3, records=records, require_local=True, output_dir=tmp_path / "r")
        assert verification.outcome == "verified", verification.unreachable
        assert (tmp_path / "r" / "stdout").read_bytes() == (corpus / "moby.txt").read_bytes()
        assert all(n.node.fetcher.fetched_bytes == 0 for n in nodes)
    finally:
        for node in nodes:
            await node.stop()


async def test_a_queued_job_whose_module_leaves_the_dataset_runs_the_copy_it_was_given(
        tmp_path: Path, corpus: Path, cat: Path, http: aiohttp.ClientSession) -> None:
    """The job's module is a file of a dataset; while the job waits in the queue the operator
    changes the dataset. The job runs the module it was given (the old copy's, hashing to its
    CID: as its inputs, SPEC 9.9), never a node error; a new job naming it gets MissingBlobs."""
    from cod.jobspec import Input, JobSpec, Limits

    from ..node_kit import BUSY_WAT, until_state

    shutil.copy(cat, corpus / "cat.wasm")
    module, moby = js_unixfs_cid(corpus / "cat.wasm"), js_unixfs_cid(corpus / "moby.txt")
    node = await _start(tmp_path, "n", datasets=[corpus])
    try:
        busy = JobSpec(module=await put_module(http, node.url, wat(BUSY_WAT)), limits=Limits(timeout_ms=120_000))
        async with http.post(f"{node.url}/v1/jobs", json={"spec": busy.to_dict()}) as resp:
            assert resp.status == 202
        await until_state(http, node.url, str(busy.cid), {"running"})
        spec = JobSpec(module=module, inputs=(Input(cid=moby, path="/inputs/f"),))
        async with http.post(f"{node.url}/v1/jobs", json={"spec": spec.to_dict()}) as resp:
            assert resp.status == 202 and (await resp.json())["state"] == "queued"
        (corpus / "cat.wasm").write_bytes(b"\0asm\1\0\0\0")  # the operator's dataset changes
        async with http.delete(f"{node.url}/v1/jobs/{busy.cid}") as resp:
            assert resp.status == 200
        record = await until_state(http, node.url, str(spec.cid), {"done", "failed"})
        assert record["state"] == "done", record
        async with http.get(f"{node.url}/v1/jobs/{spec.cid}/results/stdout") as resp:
            assert await resp.read() == (corpus / "moby.txt").read_bytes()
        again = JobSpec(module=module, inputs=(Input(cid=moby, path="/inputs/g"),))
        async with http.post(f"{node.url}/v1/jobs", json={"spec": again.to_dict()}) as resp:
            assert resp.status == 409 and (await resp.json())["missing"] == [module]
    finally:
        await node.stop()


async def test_a_node_stopping_while_it_lists_leaves_no_listing_running(
        tmp_path: Path, corpus: Path, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The listing a node makes at start (of a tree stored without one) is under way when the
    node stops: it ends with the node (one entry at most is read after), writes nothing into the
    closed index, and the tree is listed at the next start."""
    import logging
    import threading

    from cod.content.listing import Listing
    from cod.node import app as node_app

    car = tmp_path / "c.car"
    root = ipfs_car_cid(corpus, car)
    cod_txt = js_unixfs_cid(corpus / "more" / "cod.txt")
    node = await _start(tmp_path, "n")
    assert (await put(http, node.url, root, car.read_bytes()))[0] == 201
    await node.stop()
    for name in ("contents.db", "contents.db-wal", "contents.db-shm"):
        (tmp_path / "n" / name).unlink(missing_ok=True)
    stopped, ended, late = threading.Event(), threading.Event(), []
    under_way, closing = threading.Event(), threading.Event()

    class Held(Listing):  # the listing is under way (one entry told) when the node stops
        def __call__(self, *told: Any) -> None:
            super().__call__(*told)
            if not under_way.is_set():
                under_way.set()
                closing.wait(30)  # until the node is stopping
            elif stopped.wait(30):  # the next entry: read once the node is stopped?
                late.append(told)

    real = node_app.Node._list_unlisted

    def listing_at_start(self: node_app.Node, results: dict[str, str]) -> None:
        try:
            real(self, results)
        finally:
            ended.set()

    monkeypatch.setattr(node_app, "Listing", Held)
    monkeypatch.setattr(node_app.Node, "_list_unlisted", listing_at_start)
    caplog.set_level(logging.ERROR)
    node = await _start(tmp_path, "n")
    assert await asyncio.to_thread(under_way.wait, 30)
    stopping = asyncio.ensure_future(node.stop())
    while not node.node.pool.closing:
        await asyncio.sleep(0)
    closing.set()
    await stopping
    stopped.set()
    assert await asyncio.to_thread(ended.wait, 60)
    assert late == [] and [r.getMessage() for r in caplog.records] == []
    monkeypatch.setattr(node_app, "Listing", Listing)
    node = await _start(tmp_path, "n")
    try:
        await node.node.listed()
        assert await _inside(http, node.url, cod_txt) == [cod_txt]
    finally:
        await node.stop()


class _HeldRows(list):  # type: ignore[type-arg]
    """Listing rows whose reading blocks half-way until ``release`` is set (at most 30 s): a
    listing of a tree at the max_entries bound takes seconds to write."""

    def __init__(self, rows: list[tuple[str, bytes, bool]], writing: Any, release: Any) -> None:
        super().__init__(rows)
        self.writing, self.release = writing, release

    def __iter__(self) -> Any:
        for n, row in enumerate(super().__iter__()):
            if n == len(self) // 2:
                self.writing.set()
                self.release.wait(30)
            yield row


def test_a_listing_being_written_never_delays_a_lookup(tmp_path: Path) -> None:
    """Writing the listing of a big tree takes seconds (1.8 s at max_entries = 2^17); lookups
    (every holdings request and job submission) read the index meanwhile, never waiting for it."""
    import threading

    from cod.content.listing import Listing
    from cod.node.contents import Contents

    contents = Contents(tmp_path / "contents.db")
    old = Listing(10)
    old.rows = [("bafkreiold", b"a", False)]
    contents.add("blob", "bafyold", old)
    writing, release = threading.Event(), threading.Event()
    big = Listing(10)
    big.rows = _HeldRows([(f"bafkrei{n}", b"f%d" % n, False) for n in range(10)], writing, release)
    writer = threading.Thread(target=contents.add, args=("blob", "bafynew", big))
    writer.start()
    try:
        assert writing.wait(30)
        found: list[object] = []
        reader = threading.Thread(target=lambda: found.append(contents.find("bafkreiold")))
        reader.start()
        reader.join(20)  # a hang guard, not a timing: the write is held until released
        assert found == [[("blob", "bafyold", b"a", False)]], "a lookup waited for a listing being written"
        assert not release.is_set()
    finally:
        release.set()
        writer.join(30)
    assert contents.find("bafkrei3") == [("blob", "bafynew", b"f3", False)]
    contents.close()


async def test_the_collector_never_holds_the_event_loop_while_a_listing_is_written(
        tmp_path: Path, corpus: Path, http: aiohttp.ClientSession) -> None:
    """The collector forgets the listings of what it removes while a big listing is being written
    (an upload at the bound): the node answers meanwhile (its event loop is never blocked on the
    index), and the removal completes once the write ends."""
    import threading

    from cod.content.listing import Listing
    from cod.node.collector import Retention

    car = tmp_path / "c.car"
    root = ipfs_car_cid(corpus, car)
    node = await _start(tmp_path, "n", retention=Retention(keep_blobs_s=0, collect_every_s=0))
    writing, release = threading.Event(), threading.Event()
    order: list[str] = []
    try:
        assert (await put(http, node.url, root, car.read_bytes()))[0] == 201
        big = Listing(10)
        big.rows = _HeldRows([(f"bafkrei{n}", b"f%d" % n, False) for n in range(10)], writing, release)
        writer = threading.Thread(target=node.node.contents.add, args=("blob", "bafyother", big))
        writer.start()
        assert await asyncio.to_thread(writing.wait, 30)
        guard = threading.Timer(10, lambda: (order.append("released by the guard"), release.set()))
        guard.start()  # a hang guard: were the loop blocked, only this could end the write
        collecting = asyncio.ensure_future(node.node.collect(node.node.clock() + 10**18))
        await asyncio.sleep(0)
        async with http.get(f"{node.url}/v1/health") as resp:
            assert resp.status == 200
            order.append("answered")
        release.set()
        guard.cancel()
        removed = await collecting
        writer.join(30)
        assert order == ["answered"] and root in removed["blobs"]
        assert node.node.contents.find(js_unixfs_cid(corpus / "moby.txt")) == []
    finally:
        release.set()
        await node.stop()


async def test_the_copy_a_running_job_reads_a_file_of_outlives_a_change_of_its_dataset(
        tmp_path: Path, corpus: Path, http: aiohttp.ClientSession) -> None:
    """A running job mounts moby.txt of a dataset's copy by the file's CID; the dataset changes
    (its old copy is no longer offered, and its listing is forgotten): the collector keeps the old
    copy until the job ends, then removes it."""
    from cod.jobspec import Input, JobSpec, Limits
    from cod.node.collector import Retention

    from ..node_kit import BUSY_WAT, until_state

    old_root, moby = js_unixfs_cid(corpus), js_unixfs_cid(corpus / "moby.txt")
    node = await _start(tmp_path, "n", datasets=[corpus], retention=Retention(collect_every_s=0))
    try:
        busy = await put_module(http, node.url, wat(BUSY_WAT))
        spec = JobSpec(module=busy, inputs=(Input(cid=moby, path="/inputs/f"),), limits=Limits(timeout_ms=120_000))
        async with http.post(f"{node.url}/v1/jobs", json={"spec": spec.to_dict()}) as resp:
            assert resp.status == 202, await resp.text()
        await until_state(http, node.url, str(spec.cid), {"running"})
        (corpus / "log").write_bytes(b"changed\n")
        async with http.get(f"{node.url}/v1/blobs/{old_root}") as resp:  # the change is seen
            assert resp.status == 404
        far = node.node.clock() + 10**18
        assert (await node.node.collect(far))["copies"] == [] and node.node.offers.copies is not None
        assert node.node.offers.copies.tree(old_root) is not None
        async with http.delete(f"{node.url}/v1/jobs/{spec.cid}") as resp:
            assert resp.status == 200
        assert (await node.node.collect(far))["copies"] == [old_root]
    finally:
        await node.stop()


async def test_an_output_base_inside_a_tree_counts_against_the_quota(tmp_path: Path, corpus: Path, cat: Path,
                                                                     http: aiohttp.ClientSession) -> None:
    """SPEC 9.11: a job whose output base would take the client past its quota is refused 507.
    An output base named by the CID of a directory inside a stored tree has the bytes of that
    directory (by hand: the sizes of its files), as one named by a stored tree's root has."""
    from cod.jobspec import JobSpec
    from cod.node.collector import Retention

    car = tmp_path / "c.car"
    root = ipfs_car_cid(corpus, car)
    more = js_unixfs_cid(corpus / "more")
    base_bytes = sum(p.stat().st_size for p in (corpus / "more").rglob("*") if p.is_file())
    node = await _start(tmp_path, "n", retention=Retention(client_bytes=1 << 20, collect_every_s=0))
    try:
        assert (await put(http, node.url, root, car.read_bytes()))[0] == 201
        module = await put_module(http, node.url, cat.read_bytes())
        charged = node.node.usage.charged("127.0.0.1")
        node.node.retention = Retention(client_bytes=charged + base_bytes - 1, collect_every_s=0)
        spec = JobSpec(module=module, output_base=more)
        async with http.post(f"{node.url}/v1/jobs?wait=true", json={"spec": spec.to_dict()}) as resp:
            body = await resp.json()
            assert resp.status == 507 and body["error"] == "StorageQuotaExceeded", body
        node.node.retention = Retention(client_bytes=charged + base_bytes, collect_every_s=0)
        async with http.post(f"{node.url}/v1/jobs?wait=true", json={"spec": spec.to_dict()}) as resp:
            assert resp.status == 200 and (await resp.json())["state"] == "done"
    finally:
        await node.stop()


async def test_a_job_naming_many_files_of_a_dataset_takes_its_fingerprint_once(
        tmp_path: Path, corpus: Path, cat: Path, http: aiohttp.ClientSession,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each dataset a lookup reaches is fingerprinted (a walk of the whole DIR) before a job is
    given it: a job naming 64 files inside a dataset (up to 1024 inputs) must not walk it once
    per input, nor once per input per tree. One submission: one fingerprint."""
    from cod.jobspec import Input, JobSpec
    from cod.node import offers

    moby = js_unixfs_cid(corpus / "moby.txt")
    node = await _start(tmp_path, "n", datasets=[corpus])
    walks = []
    real = offers.Offers._offered_tree

    def counted(self: offers.Offers, cid: str) -> Any:  # fingerprints (and, while racy, hashes) the DIR
        if cid in self.datasets:
            walks.append(cid)
        return real(self, cid)

    try:
        module = await put_module(http, node.url, cat.read_bytes())
        spec = JobSpec(module=module, inputs=tuple(Input(cid=moby, path=f"/inputs/f{n}") for n in range(64)))
        monkeypatch.setattr(offers.Offers, "_offered_tree", counted)
        async with http.post(f"{node.url}/v1/jobs?wait=true", json={"spec": spec.to_dict()}) as resp:
            assert resp.status == 200 and (await resp.json())["state"] == "done"
        assert walks == [js_unixfs_cid(corpus)], len(walks)
    finally:
        await node.stop()


async def test_listings_of_results_never_hold_up_submissions(
        tmp_path: Path, cat: Path, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch) -> None:
    """A result is listed after its job is done by hashing it again: seconds for big results.
    Listings under way (here: held) must not take the threads that admitting a job needs: with
    more results being listed than the event loop's default workers, a job is still admitted."""
    import concurrent.futures
    import threading

    from cod.content.listing import Listing
    from cod.jobspec import Input, JobSpec
    from cod.node import app as node_app

    release = threading.Event()
    order: list[str] = []

    class Held(Listing):
        def __call__(self, *told: Any) -> None:
            release.wait(30)
            super().__call__(*told)

    monkeypatch.setattr(node_app, "Listing", Held)
    node = await _start(tmp_path, "n")
    workers = concurrent.futures.ThreadPoolExecutor()._max_workers  # the loop's default executor's
    guard = threading.Timer(20, lambda: (order.append("released by the guard"), release.set()))
    try:
        module = await put_module(http, node.url, cat.read_bytes())
        guard.start()  # a hang guard: were every thread held, only this could end the listings
        for n in range(workers + 1):
            blob = await put_module(http, node.url, b"\0asm" + str(n).encode())  # a file of its own per job
            spec = JobSpec(module=module, inputs=(Input(cid=blob, path="/inputs/f"),))
            async with http.post(f"{node.url}/v1/jobs?wait=true", json={"spec": spec.to_dict()}) as resp:
                assert resp.status == 200 and (await resp.json())["state"] == "done"
        order.append("admitted")
    finally:
        release.set()
        guard.cancel()
        await node.stop()
    assert order == ["admitted"]
