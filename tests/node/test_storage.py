"""A node's storage (SPEC 9.11): the per-client quota and the collector, against real nodes.

Sizes expected here are counted from the bytes the test wrote; the collector is driven by an
injected clock (``Node(clock=...)``, ``Node.collect(now_ns)``), never by waiting.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cod import JobSpec, module_cid
from cod.content.car import write_car
from cod.content.unixfs import cid_of_tree
from cod.jobspec import Input
from cod.node.collector import Retention
from cod.node.server import start_node

from ..helpers import VECTORS
from ..node_kit import BUSY_WAT, CAR_TYPE, cat_wat, put, put_module, submit_spec, until_state, wat

HELLO = (VECTORS / "hello.wasm").read_bytes()
MIB = 1 << 20
S = 1_000_000_000


def _bytes_under(root: Path) -> int:
    return sum(os.lstat(os.path.join(folder, name)).st_size
               for folder, _dirs, files in os.walk(root) for name in files)


async def _job(http: aiohttp.ClientSession, url: str, spec: JobSpec) -> tuple[int, Any]:
    async with http.post(url + "/v1/jobs?wait=true", json={"spec": spec.to_dict()}) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_an_output_base_cannot_grow_the_data_dir_past_the_client_s_quota(tmp_path: Path,
                                                                               http: aiohttp.ClientSession) -> None:
    """Stage 9 point 6: a 181-byte POST naming a 100 MiB output base grew the data dir by 100 MiB
    per job, for ever. With a quota of 3.5 MiB per client, a 1 MiB base (charged once, to its
    uploader) makes at most two results of 1 MiB each; the next job and the next upload are
    refused with 507 StorageQuotaExceeded, saying what to do, and nothing more is kept."""
    base = tmp_path / "base"
    base.mkdir()
    (base / "big").write_bytes(b"b" * MIB)
    quota = 3 * MIB + MIB // 2
    running = await start_node(tmp_path / "node", concurrency=1, retention=Retention(client_bytes=quota))
    try:
        root = write_car(base, tmp_path / "base.car")
        assert (await put(http, running.url, root, (tmp_path / "base.car").read_bytes()))[0] == 201
        module = await put_module(http, running.url, HELLO)
        answers = [await _job(http, running.url, JobSpec(module=module, args=("hello", str(n)), output_base=str(root)))
                   for n in range(6)]
        statuses = [status for status, _ in answers]
        assert statuses[:2] == [200, 200] and all(s == 200 for s, b in answers[:2]), answers[:2]
        refused = [body for status, body in answers if status == 507]
        assert refused and statuses.count(200) <= 2, statuses
        assert refused[0]["error"] == "StorageQuotaExceeded" and str(quota) in refused[0]["message"]
        assert refused[0]["hint"]
        results = _bytes_under(running.node.data_dir / "results")
        assert results <= quota, f"{results} bytes of results for one client whose quota is {quota}"
        extra = tmp_path / "extra.bin"
        extra.write_bytes(b"e" * (MIB // 2))
        status, body = await put(http, running.url, cid_of_tree(extra), extra.read_bytes(), "application/octet-stream")
        assert status == 507 and body["error"] == "StorageQuotaExceeded", body
        assert not (running.node.data_dir / "blobs" / "files" / str(cid_of_tree(extra))).exists()
        assert [p.name for p in (running.node.data_dir / "blobs" / "tmp").iterdir()] == []
        async with http.get(f"{running.url}/v1/info") as resp:
            assert (await resp.json())["storage"]["max_client_bytes"] == quota
    finally:
        await running.stop()


async def test_a_client_over_its_quota_makes_the_node_fetch_nothing(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """A client at its quota still made the node fetch (from a peer) every CID its job named,
    before the job was refused: each POST grew the data dir by the fetch budget."""
    wanted = tmp_path / "wanted.bin"
    wanted.write_bytes(b"w" * 1000)
    cid = str(cid_of_tree(wanted))
    peer = await start_node(tmp_path / "peer", concurrency=1)
    running = await start_node(tmp_path / "node", concurrency=1, peers=[peer.url],
                               retention=Retention(client_bytes=len(HELLO)))
    try:
        assert (await put(http, peer.url, cid, wanted.read_bytes(), "application/octet-stream"))[0] == 201
        module = await put_module(http, running.url, HELLO)  # the whole quota
        status, body = await _job(http, running.url, JobSpec(module=module, inputs=(Input(cid=cid, path="/in"),)))
        assert status == 507 and body["error"] == "StorageQuotaExceeded", body
        assert not (running.node.data_dir / "blobs" / "files" / cid).exists(), "fetched for a client over its quota"
    finally:
        await running.stop()
        await peer.stop()


async def test_the_collector_keeps_recent_results_and_removes_old_results_blobs_and_cars(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Stage 9 point 6: nothing was ever removed. With keep_jobs 1, results kept 100 s and blobs
    50 s (a clock the test sets): at +40 s every result and blob stays (a copy of the dataset's old CID, no longer offered, goes); at +200 s the older job's results
    and CAR go, the latest job's stay, the unused module blob goes while the module of a running
    job stays, the dataset's copy stays; the private module is untouched. A job whose results were collected runs again on submission,
    to the same result."""
    now = [1_000_000 * S]
    data = tmp_path / "ds"
    data.mkdir()
    (data / "f").write_bytes(b"A")
    first_dataset = str(cid_of_tree(data))
    private = tmp_path / "private.wasm"
    private.write_bytes(wat(cat_wat("secret")))
    running = await start_node(tmp_path / "node", concurrency=1, datasets=[data], private_modules=[private],
                               retention=Retention(keep_jobs=1, keep_results_s=100, keep_blobs_s=50,
                                                   collect_every_s=0), clock=lambda: now[0])
    node = running.node
    copies = node.data_dir / "datasets" / "trees"
    try:
        module = await put_module(http, running.url, HELLO)
        base = tmp_path / "base"
        base.mkdir()
        (base / "kept-in-the-results").write_bytes(b"base\n")
        root = write_car(base, tmp_path / "base.car")
        assert (await put(http, running.url, root, (tmp_path / "base.car").read_bytes()))[0] == 201
        older = JobSpec(module=module, args=("hello", "older"), output_base=str(root))  # another result than newer's
        status, first = await _job(http, running.url, older)
        assert status == 200 and first["state"] == "done", first
        async with http.get(f"{running.url}/v1/jobs/{older.cid}/results.car") as resp:
            assert resp.status == 200 and resp.content_type == CAR_TYPE
        now[0] += 10 * S
        newer = JobSpec(module=module, args=("hello", "newer"))
        status, second = await _job(http, running.url, newer)
        assert status == 200, second
        (data / "f").write_bytes(b"B")  # the dataset changes: its old CID is no longer offered
        async with http.get(f"{running.url}/v1/blobs/{first_dataset}") as resp:
            assert resp.status == 404
        now_dataset = str(cid_of_tree(data))
        async with http.get(f"{running.url}/v1/blobs/{now_dataset}", headers={"Accept": CAR_TYPE}) as resp:
            assert resp.status == 200  # copied now
        busy = await put_module(http, running.url, wat(BUSY_WAT))
        holder = JobSpec(module=busy, args=("busy",), inputs=(Input(cid=now_dataset, path="/inputs"),))
        assert (await submit_spec(http, running.url, holder))[0] in (200, 202)
        await until_state(http, running.url, str(holder.cid), {"running"})

        removed = await node.collect(now[0] + 30 * S)  # +40 s since the first job
        assert removed["results"] == [] and removed["blobs"] == [], removed
        assert removed["copies"] == [first_dataset], removed  # no longer offered, held by no job
        removed = await node.collect(now[0] + 190 * S)  # +200 s
        assert removed["results"] == [str(older.cid)], removed
        assert sorted(removed["blobs"]) == sorted([module, str(root)]), removed  # not busy: a running job's
        assert second["result_cid"] != first["result_cid"]
        assert not (node.data_dir / "results" / str(older.cid)).exists()
        assert (node.data_dir / "results" / str(newer.cid)).is_dir()
        assert not (node.data_dir / "cars" / f"{first['result_cid']}.car").exists()
        assert not (node.data_dir / "blobs" / "files" / module).exists()
        assert (node.data_dir / "blobs" / "files" / busy).exists()
        assert sorted(p.name for p in copies.iterdir()) == [now_dataset], "the offered dataset's copy is kept"
        assert private.read_bytes() == wat(cat_wat("secret"))
        async with http.get(f"{running.url}/v1/jobs/{older.cid}/results.car") as resp:
            assert resp.status == 404
        async with http.get(f"{running.url}/v1/jobs/{newer.cid}/results/stdout") as resp:
            assert resp.status == 200
        async with http.delete(f"{running.url}/v1/jobs/{holder.cid}") as resp:
            assert resp.status == 200

        assert await put_module(http, running.url, HELLO) == module  # collected: uploaded again
        assert (await put(http, running.url, root, (tmp_path / "base.car").read_bytes()))[0] == 201
        status, again = await _job(http, running.url, older)
        assert status == 200 and again["state"] == "done", again
        assert again["result_cid"] == first["result_cid"]
        async with http.get(f"{running.url}/v1/jobs/{older.cid}/results.car") as resp:
            assert resp.status == 200
    finally:
        await running.stop()


async def test_a_car_asked_for_while_its_tree_is_removed_is_a_404_not_a_500(tmp_path: Path) -> None:
    """The collector may remove a result while its CAR is asked for: the build finds no tree."""
    import pytest

    from cod.errors import NotFound
    from cod.node.cars import CarCache

    cache = CarCache(tmp_path / "cars")
    try:
        with pytest.raises(NotFound):
            await cache.get("bafkqaaa", tmp_path / "gone")
        assert cache.kept() == [] and sorted(os.listdir(tmp_path / "cars")) == []
    finally:
        cache.close()


@pytest.fixture()
def one_slash64() -> Iterator[tuple[str, str]]:
    """Two IPv6 addresses of one /64 on the loopback device (needs root; skips without), removed after."""
    prefix = f"fd00:c0d:{os.getpid() & 0xffff:x}:"
    added: list[str] = []
    try:
        for host in ("1", "2"):
            address = f"{prefix}:{host}"
            done = subprocess.run(["ip", "-6", "addr", "add", f"{address}/64", "dev", "lo", "nodad"],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                pytest.skip(f"cannot add an IPv6 address to lo: {done.stderr.strip()}")
            added.append(address)
        yield added[0], added[1]
    finally:
        for address in added:
            subprocess.run(["ip", "-6", "addr", "del", f"{address}/64", "dev", "lo"], capture_output=True)


async def test_the_quota_of_an_ipv6_client_is_its_slash64(tmp_path: Path, one_slash64: tuple[str, str]) -> None:
    """A second round of point 6: the quota was keyed by the exact peer address, so an IPv6 client
    (one host often holds a whole /64: 2^64 addresses) got a fresh quota from each address it
    sent from. Fetch slots count an IPv6 /64 as one client (SPEC 9.8); so must the quota (9.11)."""
    first, second = one_slash64
    size = 16 << 10
    running = await start_node(tmp_path / "node", host="::", concurrency=1,
                               retention=Retention(client_bytes=size + size // 2))
    url = f"http://[{first}]:{running.url.rsplit(':', 1)[1]}"
    try:
        statuses = []
        for n, local in enumerate((first, second)):
            connector = aiohttp.TCPConnector(local_addr=(local, 0))
            async with aiohttp.ClientSession(connector=connector) as http:
                content = bytes([n]) * size  # two distinct files of 16 KiB
                statuses.append((await put(http, url, module_cid(content), content, "application/octet-stream"))[0])
        assert statuses == [201, 507], statuses
    finally:
        await running.stop()
