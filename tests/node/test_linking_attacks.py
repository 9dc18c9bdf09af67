"""Attacks on a node resolving a job's modules by CID (SPEC 5.4, 9.4): hostile peers serving
modules that name many CIDs or chains past the cap, private dependencies, floods of jobs naming
fresh dependencies, and dependency CIDs that name the node's datasets.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from cod import JobSpec, module_cid

from ..hostile_gateway import Gateway
from ..node_kit import CAR_TYPE, car, put_module, raw, start_node_in, submit_spec, until_state
from ..wasm.module_kit import MIX, MIX_TOP, importer, random_cids
from ..wasm.test_linking import root


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
    further = random_cids(62, "further")
    dependency = importer(further)
    dep_cid = module_cid(dependency)
    peer = await _serving([dependency])
    node = await start_node_in(tmp_path, "n", peers=[peer.url])
    try:
        top = root(f'(import "{dep_cid}" "f" (func $f))', "(call $f)")
        cid = await put_module(http, node.url, top)
        status, body = await asyncio.wait_for(submit_spec(http, node.url, JobSpec(module=cid)), 60)
        assert status == 409, body
        assert body["missing"] == further
        assert sorted(peer.requests) == sorted([f"/v1/blobs/{dep_cid}"] + [f"/v1/blobs/{c}" for c in further])
        status, body = await asyncio.wait_for(submit_spec(http, node.url, JobSpec(module=cid)), 60)
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
    chain: list[bytes] = [importer([])]
    for _ in range(19):
        chain.append(importer([module_cid(chain[-1])]))
    peer = await _serving(chain)
    node = await start_node_in(tmp_path, "n", peers=[peer.url])
    try:
        top = root(f'(import "{module_cid(chain[-1])}" "f" (func $f))', "(call $f)")
        spec = JobSpec(module=await put_module(http, node.url, top))
        status, body = await asyncio.wait_for(submit_spec(http, node.url, spec), 60)
        assert len(peer.requests) <= 17, peer.requests
        if status != 200 or body["state"] != "failed":
            assert status in (200, 202), body
            body = await until_state(http, node.url, str(spec.cid), {"done", "failed"})
        assert body["state"] == "failed", body
        assert "deeper than 16" in str(body["error"]), body
    finally:
        await node.stop()
        await peer.stop()


async def test_a_private_dependency_runs_on_its_node_and_never_travels(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """A node offers a private library; a root importing it by CID runs there (mix(1, 2) =
    1*31 + 2 = 33). Another node that has the owner as its peer cannot get the library for
    the same job (409 naming it; the owner answered 404 and nothing of it is stored); the
    owner's blob routes and the job's results never give its bytes."""
    lib = module_cid(MIX)
    (tmp_path / "mix.wasm").write_bytes(MIX)
    owner = await start_node_in(tmp_path, "owner", private_modules=[tmp_path / "mix.wasm"])
    other = await start_node_in(tmp_path, "other", peers=[owner.url])
    try:
        spec = JobSpec(module=await put_module(http, owner.url, MIX_TOP))
        status, body = await submit_spec(http, owner.url, spec)
        assert status in (200, 202), body
        final = await until_state(http, owner.url, str(spec.cid), {"done", "failed"})
        assert (final["state"], final["exit_code"]) == ("done", 33), final
        await put_module(http, other.url, MIX_TOP)
        status, body = await asyncio.wait_for(submit_spec(http, other.url, spec), 60)
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
    node = await start_node_in(tmp_path, "n", peers=[peer.url])
    floods: list[asyncio.Task[Any]] = []
    try:
        for n, dep in enumerate(random_cids(12, "flood")):
            top = root(f'(import "{dep}" "f" (func $f))', f"(call $exit (i32.const {n}))")
            cid = await put_module(http, node.url, top)
            floods.append(asyncio.create_task(submit_spec(http, node.url, JobSpec(module=cid))))
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


async def test_a_dependency_cid_that_is_a_dataset_of_the_node_is_never_linked(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """A root imports "f" from the CID of a directory the node serves as a dataset. A
    directory is no module: the node never treats it as one; the job is answered 409 naming
    that CID (no module bytes under it), never run."""
    from cod.content.unixfs import cid_of_tree

    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_bytes(b"a\n")
    node = await start_node_in(tmp_path, "n", datasets=[tmp_path / "corpus"])
    dataset = str(cid_of_tree(tmp_path / "corpus"))
    try:
        assert node.node.offers.dataset_cids() == [dataset]
        top = root(f'(import "{dataset}" "f" (func $f))', "(call $f)")
        spec = JobSpec(module=await put_module(http, node.url, top))
        status, body = await asyncio.wait_for(submit_spec(http, node.url, spec), 30)
        assert status == 409 and body["missing"] == [dataset], body
        async with http.get(f"{node.url}/v1/jobs/{spec.cid}") as resp:
            assert resp.status == 404
    finally:
        await node.stop()
