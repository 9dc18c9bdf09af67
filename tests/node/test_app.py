"""The compute node: real aiohttp servers on loopback, real SQLite, real executor processes."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cod import JobSpec, Limits, module_cid
from cod.content.car import write_car
from cod.content.cid import CID
from cod.content.export import unpack_car
from cod.content.unixfs import cid_of_tree
from cod.identity import node_id_of
from cod.jobspec import Input
from cod.node.server import RunningNode, start_node
from cod.statement import SignedStatement

from ..helpers import VECTORS, load_vector

HELLO = (VECTORS / "hello.wasm").read_bytes()
WORDCOUNT = (VECTORS / "wordcount.wasm").read_bytes()
FUELBOMB = (VECTORS / "fuelbomb.wasm").read_bytes()


@pytest.fixture()
async def node(tmp_path: Path) -> AsyncIterator[RunningNode]:
    running = await start_node(tmp_path / "node", concurrency=1, queue_size=1,
                               allow_local=[VECTORS / "data"])
    yield running
    await running.stop()


async def _json(resp: aiohttp.ClientResponse) -> Any:
    return await resp.json(content_type=None)


async def _until_failed(http: aiohttp.ClientSession, url: str, job_cid: str) -> Any:
    """The job's record once it failed, or as it stands after 10 s."""
    for _ in range(100):
        async with http.get(f"{url}/v1/jobs/{job_cid}") as resp:
            job = await _json(resp)
        if job["state"] == "failed":
            break
        await asyncio.sleep(0.1)
    return job


async def _put(http: aiohttp.ClientSession, url: str, cid: str, data: bytes, car: bool = False) -> int:
    headers = {"Content-Type": "application/vnd.ipld.car" if car else "application/octet-stream"}
    async with http.put(f"{url}/v1/blobs/{cid}", data=data, headers=headers) as resp:
        return resp.status


async def test_info_identity_and_openapi(node: RunningNode, http: aiohttp.ClientSession) -> None:
    async with http.get(node.url + "/v1/info") as resp:
        info = await _json(resp)
    assert node_id_of(bytes.fromhex(info["public_key"])) == info["node_id"]  # self-certifying
    assert "wasm" in info["capabilities"] and "docker" not in info["capabilities"]
    assert info["profile"].startswith("wasmtime-50.0.1+")
    async with http.get(node.url + "/v1/openapi.json") as resp:
        doc = await _json(resp)
    assert {"/v1/info", "/v1/blobs/{cid}", "/v1/jobs", "/v1/jobs/{cid}", "/v1/jobs/{cid}/results.car"} <= set(
        doc["paths"])
    async with http.get(node.url + "/v1/health") as resp:
        assert (await _json(resp))["status"] == "ok"


async def test_blobs_are_checked_against_their_cid(node: RunningNode, http: aiohttp.ClientSession,
                                                   tmp_path: Path) -> None:
    cid = module_cid(HELLO)
    assert await _put(http, node.url, cid, HELLO + b"tampered") == 400
    async with http.head(f"{node.url}/v1/blobs/{cid}") as resp:
        assert resp.status == 404  # nothing was kept
    assert await _put(http, node.url, cid, HELLO) == 201
    async with http.get(f"{node.url}/v1/blobs/{cid}") as resp:
        assert await resp.read() == HELLO
    # a directory travels as a CAR; a CAR for another root is refused
    tree = VECTORS / "data" / "wordcount"
    car = tmp_path / "in.car"
    root = write_car(tree, car)
    other = str(cid_of_tree(VECTORS / "data" / "probe"))
    assert await _put(http, node.url, other, car.read_bytes(), car=True) == 400
    assert await _put(http, node.url, str(root), car.read_bytes(), car=True) == 201
    assert node.node.blobs.tree(str(root)) is not None
    assert cid_of_tree(node.node.blobs.tree(str(root))) == root  # type: ignore[arg-type]


async def test_job_lifecycle_signed_and_served(node: RunningNode, http: aiohttp.ClientSession,
                                               tmp_path: Path) -> None:
    vector = load_vector("wordcount")
    spec = vector["spec"]
    async with http.post(node.url + "/v1/jobs?wait=true", json={"spec": spec}) as resp:
        assert resp.status == 409
        missing = (await _json(resp))["missing"]
    assert set(missing) == {spec["module"], spec["inputs"][0]["cid"]}
    await _put(http, node.url, spec["module"], WORDCOUNT)
    write_car(VECTORS / "data" / "wordcount", tmp_path / "in.car")
    await _put(http, node.url, spec["inputs"][0]["cid"], (tmp_path / "in.car").read_bytes(), car=True)
    async with http.post(node.url + "/v1/jobs?wait=true", json={"spec": spec}) as resp:
        assert resp.status == 200
        job = await _json(resp)
    assert job["state"] == "done" and job["result_cid"] == vector["expect"]["result_cid"]
    statement = SignedStatement.from_json(job["statement"]).verify(vector["job_cid"], node.node.identity.node_id)
    assert (statement.result, statement.exit_code, statement.fuel_used) == (
        vector["expect"]["result_cid"], 0, vector["expect"]["fuel_used"])
    async with http.get(f"{node.url}/v1/jobs/{vector['job_cid']}/results/outputs/count.txt") as resp:
        assert (await resp.read()).startswith(b"5 60 287 /inputs/a-tale.txt")
    async with http.get(f"{node.url}/v1/jobs/{vector['job_cid']}/results/../../node.key") as resp:
        assert resp.status == 404
    async with http.get(f"{node.url}/v1/jobs/{vector['job_cid']}/results.car") as resp:
        (tmp_path / "r.car").write_bytes(await resp.read())
    with open(tmp_path / "r.car", "rb") as source:
        unpack_car(source, CID.parse(job["result_cid"]), tmp_path / "results", tmp_path / "scratch")


async def test_bad_spec_is_named(node: RunningNode, http: aiohttp.ClientSession) -> None:
    async with http.post(node.url + "/v1/jobs", json={"spec": {"module": "nope"}}) as resp:
        body = await _json(resp)
    assert resp.status == 400 and body["error"] == "SpecError" and "'module'" in body["message"]


async def test_restarted_node_serves_what_it_stored(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    first = await start_node(tmp_path / "n", concurrency=1)
    spec = JobSpec(module=module_cid(HELLO), args=("hello.wasm",)).to_dict()
    await _put(http, first.url, spec["module"], HELLO)
    async with http.post(first.url + "/v1/jobs?wait=1", json={"spec": spec}) as resp:
        before = await _json(resp)
    node_id = first.node.identity.node_id
    await first.stop()
    second = await start_node(tmp_path / "n", concurrency=1)
    try:
        assert second.node.identity.node_id == node_id
        async with http.get(f"{second.url}/v1/jobs/{before['job_cid']}") as resp:
            after = await _json(resp)
        assert after["statement"] == before["statement"] and after["state"] == "done"
        async with http.get(f"{second.url}/v1/jobs/{before['job_cid']}/results/stdout") as resp:
            assert await resp.read() == b"hello from cod\n"
    finally:
        await second.stop()


async def test_a_full_node_answers_429(node: RunningNode, http: aiohttp.ClientSession) -> None:
    await _put(http, node.url, module_cid(FUELBOMB), FUELBOMB)

    def slow(n: int) -> dict[str, Any]:
        return JobSpec(module=module_cid(FUELBOMB), args=("fuelbomb", str(n)),
                       limits=Limits(fuel=10**12, timeout_ms=5_000)).to_dict()

    statuses = []
    for n in range(3):  # concurrency 1 + queue 1: the third is one too many
        async with http.post(node.url + "/v1/jobs", json={"spec": slow(n)}) as resp:
            statuses.append(resp.status)
            if resp.status == 429:
                assert resp.headers["Retry-After"] == "1"
                assert (await _json(resp))["error"] == "NodeBusy"
    assert statuses == [202, 202, 429]


async def test_local_paths_only_under_allow_listed_roots(node: RunningNode, http: aiohttp.ClientSession,
                                                         tmp_path: Path) -> None:
    await _put(http, node.url, module_cid(WORDCOUNT), WORDCOUNT)
    inside = JobSpec(module=module_cid(WORDCOUNT), inputs=(Input(local=str(VECTORS / "data" / "wordcount")),))
    async with http.post(node.url + "/v1/jobs?wait=1", json={"spec": inside.to_dict()}) as resp:
        job = await _json(resp)
    assert job["state"] == "done"
    async with http.get(f"{node.url}/v1/jobs/{job['job_cid']}/results/stdout") as resp:
        assert await resp.read() == b"11 110 553 total\n"
    (tmp_path / "secret").mkdir()
    outside = JobSpec(module=module_cid(WORDCOUNT), inputs=(Input(local=str(tmp_path / "secret")),))
    async with http.post(node.url + "/v1/jobs?wait=1", json={"spec": outside.to_dict()}) as resp:
        assert resp.status == 403 and (await _json(resp))["error"] == "LocalPathNotAllowed"


async def test_a_crashing_executor_never_takes_the_node_down(node: RunningNode,
                                                             http: aiohttp.ClientSession) -> None:
    await _put(http, node.url, module_cid(FUELBOMB), FUELBOMB)
    await _put(http, node.url, module_cid(HELLO), HELLO)
    spec = JobSpec(module=module_cid(FUELBOMB), args=("crash-me",), limits=Limits(fuel=10**12, timeout_ms=30_000))
    async with http.post(node.url + "/v1/jobs", json={"spec": spec.to_dict()}) as resp:
        assert resp.status == 202
    await asyncio.sleep(0.5)
    (pid,) = node.node.pool.worker_pids()
    os.kill(pid, signal.SIGKILL)  # what a wasmtime abort would do to the executor
    job = await _until_failed(http, node.url, spec.cid)
    assert job["state"] == "failed" and job["error"]["error"] == "ExecutorCrashed"
    hello = JobSpec(module=module_cid(HELLO), args=("hello.wasm",))
    async with http.post(node.url + "/v1/jobs?wait=1", json={"spec": hello.to_dict()}) as resp:
        after = await _json(resp)
        assert after["state"] == "done", after["error"]  # a new executor took over
    assert node.node.pool.worker_pids() != [pid]


async def test_blob_names_must_be_cids(node: RunningNode, http: aiohttp.ClientSession) -> None:
    for name in ("..", ".", "node.key", "bafy..."):
        async with http.get(f"{node.url}/v1/blobs/{name}") as resp:
            assert resp.status in (400, 404), name
        async with http.put(f"{node.url}/v1/blobs/{name}", data=b"x",
                            headers={"Content-Type": "application/vnd.ipld.car"}) as resp:
            assert resp.status in (400, 404), name  # ".." and "." never reach the handler: URLs are normalized
    assert sorted(p.name for p in (node.node.data_dir / "blobs" / "trees").iterdir()) == []


async def test_a_job_past_its_timeout_is_killed_and_indeterminate(node: RunningNode, http: aiohttp.ClientSession,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Executors run without epoch interruption: the pool's kill is the node's wall-clock timeout."""
    from cod.node import pool

    monkeypatch.setattr(pool, "GRACE_SECONDS", 0.5)
    await _put(http, node.url, module_cid(FUELBOMB), FUELBOMB)
    await _put(http, node.url, module_cid(HELLO), HELLO)
    (pid,) = node.node.pool.worker_pids()
    spec = JobSpec(module=module_cid(FUELBOMB), args=("spin",), limits=Limits(fuel=10**12, timeout_ms=300))
    async with http.post(node.url + "/v1/jobs", json={"spec": spec.to_dict()}) as resp:
        assert resp.status == 202
    job = await _until_failed(http, node.url, spec.cid)
    assert job["state"] == "failed", job
    assert job["error"]["error"] == "Indeterminate" and job["error"]["code"] == 7
    assert "timeout" in job["error"]["message"] and "limits.timeout_ms = 300" in job["error"]["message"]
    assert "statement" not in job or not job["statement"]  # nothing signed
    hello = JobSpec(module=module_cid(HELLO), args=("hello.wasm",))
    async with http.post(node.url + "/v1/jobs?wait=1", json={"spec": hello.to_dict()}) as resp:
        after = await _json(resp)
        assert after["state"] == "done", after["error"]
    assert node.node.pool.worker_pids() != [pid]  # the overrunning executor was killed and replaced
