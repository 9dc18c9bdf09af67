"""Attacks on fetching by CID (cod.content.fetcher, SPEC 9.8): hostile IPFS gateways and peers
(wrong roots, endless streams, gzip bombs, trees over the caps, symlink roots, slow sources)
and jobs that ask a node to fetch more than its upload cap.

Hostile gateways are small aiohttp servers (tests/hostile.py); CARs are built by hand.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from cod.content.car import header, write_car
from cod.content.cid import CID
from cod.jobspec import Input, JobSpec

from ..hostile_gateway import Gateway, car_of
from ..node_kit import (CAR_TYPE, CAT_F, car, cat_wat, file_job, put, put_module, start_node_in, submit_spec,
                        until_state, wat)
from ..wasm.module_kit import random_cids


async def test_a_gateway_car_of_another_root_is_refused(tmp_path: Path, gateway: Gateway,
                                                         http: aiohttp.ClientSession) -> None:
    wanted, _ = car_of(b"wanted bytes\n")
    _, other = car_of(b"other bytes\n")

    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(body=other, content_type=CAR_TYPE)

    gateway.handler = answer
    node = await start_node_in(tmp_path, "n", gateways=[gateway.url])
    try:
        module = await put_module(http, node.url, CAT_F)
        status, body = await submit_spec(http, node.url, file_job(module, wanted))
        assert status == 409 and wanted in str(body), body
        assert not node.node.blobs.has(wanted)
        assert gateway.requests
    finally:
        await node.stop()


async def test_a_gateway_that_streams_for_ever_is_cut_at_max_upload_bytes(tmp_path: Path, gateway: Gateway,
                                                                           http: aiohttp.ClientSession) -> None:
    from cod.node.caps import NodeCaps

    wanted, _ = car_of(b"wanted bytes\n")
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
    node = await start_node_in(tmp_path, "n", gateways=[gateway.url], caps=NodeCaps(max_upload_bytes=cap))
    try:
        module = await put_module(http, node.url, CAT_F)
        status, body = await asyncio.wait_for(submit_spec(http, node.url, file_job(module, wanted)), 60)
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
    wanted, good = car_of(b"wanted bytes\n")

    async def answer(request: web.Request) -> web.StreamResponse:
        if request.path == "/good":
            return web.Response(body=good, content_type=CAR_TYPE)
        if trick == "redirect":
            raise web.HTTPFound("/good")
        if trick == "content-type":
            return web.Response(body=good, content_type="text/html")
        return web.Response(body=good, status=203, content_type=CAR_TYPE)

    gateway.handler = answer
    node = await start_node_in(tmp_path, "n", gateways=[gateway.url])
    try:
        module = await put_module(http, node.url, CAT_F)
        status, body = await submit_spec(http, node.url, file_job(module, wanted))
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

    wanted, _ = car_of(b"wanted bytes\n")
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\0" * (1 << 20)
    bomb = (packer.compress(header(CID.parse(wanted)))  # the right header: only the cap can stop it
            + b"".join(packer.compress(zeros) for _ in range(256)) + packer.flush())
    assert len(bomb) < 1 << 20

    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(body=bomb, headers={"Content-Type": CAR_TYPE, "Content-Encoding": "gzip"})

    gateway.handler = answer
    cap = 1 << 20
    node = await start_node_in(tmp_path, "n", gateways=[gateway.url], caps=NodeCaps(max_upload_bytes=cap))
    try:
        module = await put_module(http, node.url, CAT_F)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        status, body = await submit_spec(http, node.url, file_job(module, wanted))
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
    wanted, good = car_of(b"wanted bytes\n")
    release = asyncio.Event()

    async def answer(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.Response(body=good, content_type=CAR_TYPE)

    gateway.handler = answer
    node = await start_node_in(tmp_path, "n", gateways=[gateway.url])
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
        module = await put_module(http, node.url, CAT_F)
        spec = file_job(module, wanted)
        status, body = await submit_spec(http, node.url, spec)
        assert status in (200, 202), body
        final = await until_state(http, node.url, str(spec.cid), {"done", "failed"})
        assert final["state"] == "done", final
        async with http.get(f"{node.url}/v1/jobs/{spec.cid}/results/stdout") as resp:
            assert await resp.read() == b"wanted bytes\n"
    finally:
        await node.stop()


async def test_the_last_asker_giving_up_ends_the_fetch_and_frees_its_slot(
        tmp_path: Path, gateway: Gateway) -> None:
    """A fetch no one waits for any more (its only job was cancelled, SPEC 9.6) used to go on
    holding its fetch slot for up to 600 s. Now it is cancelled with its last asker, which
    returns once its slot is free; a later fetch of the CID asks the gateway again and gets it."""
    wanted, good = car_of(b"wanted once more\n")
    release = asyncio.Event()

    async def answer(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.Response(body=good, content_type=CAR_TYPE)

    gateway.handler = answer
    node = await start_node_in(tmp_path, "n", gateways=[gateway.url])
    try:
        fetcher = node.node.fetcher
        first = asyncio.ensure_future(fetcher.fetch(wanted))
        while not gateway.requests:
            await asyncio.sleep(0.01)
        assert fetcher.slots_in_use() == 1
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        assert first.cancelled() and fetcher.slots_in_use() == 0
        release.set()
        assert await asyncio.wait_for(fetcher.fetch(wanted), 30) is True
        assert len(gateway.requests) == 2 and node.node.blobs.file(wanted) is not None
    finally:
        release.set()
        await node.stop()


async def test_a_fetch_asked_for_while_the_dropped_one_ends_is_made_anew(
        tmp_path: Path, gateway: Gateway) -> None:
    """The last asker of a fetch gives up (its job was cancelled) and, before that fetch has
    ended, another job asks for the same CID: it must not join the fetch being cancelled (it
    would be cancelled with it) but get a fetch of its own."""
    wanted, good = car_of(b"asked for again at once\n")
    release = asyncio.Event()

    async def answer(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.Response(body=good, content_type=CAR_TYPE)

    gateway.handler = answer
    node = await start_node_in(tmp_path, "n", gateways=[gateway.url])
    try:
        fetcher = node.node.fetcher
        first = asyncio.ensure_future(fetcher.fetch(wanted))
        while not gateway.requests:
            await asyncio.sleep(0.01)
        first.cancel()
        await asyncio.sleep(0)  # the first asker leaves: its fetch is being cancelled, not ended yet
        second = asyncio.ensure_future(fetcher.fetch(wanted))
        await asyncio.gather(first, return_exceptions=True)
        release.set()
        assert await asyncio.wait_for(second, 30) is True
        assert node.node.blobs.file(wanted) is not None
    finally:
        release.set()
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
    node = await start_node_in(tmp_path, "n", gateways=[gateway.url], caps=NodeCaps(max_entries=10))
    try:
        module = await put_module(http, node.url, CAT_F)
        spec = JobSpec(module=module, inputs=(Input(cid=wanted, path="/inputs"),))
        status, answer_body = await submit_spec(http, node.url, spec)
        assert status == 409, answer_body
        assert not node.node.blobs.has(wanted)
        assert gateway.requests
    finally:
        await node.stop()


async def test_a_gateway_car_whose_root_is_a_symlink_is_refused(tmp_path: Path, gateway: Gateway,
                                                                http: aiohttp.ClientSession) -> None:
    """Attack 2: a well-formed CAR of a UnixFS symlink to / (its own CID): nothing is stored
    that a job could mount as the host's root."""
    from cod.content import dagpb

    from ..node_kit import pb

    root, block = pb(dagpb.SYMLINK, data=b"/")
    body = car([root], [(root, block)])

    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type=CAR_TYPE)

    gateway.handler = answer
    node = await start_node_in(tmp_path, "n", gateways=[gateway.url])
    try:
        module = await put_module(http, node.url, wat(cat_wat("etc/passwd")))
        for path in ("/inputs", "/inputs/f"):
            spec = JobSpec(module=module, inputs=(Input(cid=str(root), path=path),))
            status, answer_body = await submit_spec(http, node.url, spec)
            assert status == 409, answer_body
        assert gateway.requests
        assert not os.listdir(node.node.blobs.trees) and os.listdir(node.node.blobs.files) == [module]
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
    wanted, good = car_of(b"wanted bytes\n")
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
    node = await start_node_in(tmp_path, "n", gateways=[bad.url, fine.url])
    try:
        module = await put_module(http, node.url, CAT_F)
        spec = file_job(module, wanted)
        status, body = await submit_spec(http, node.url, spec)
        assert status in (200, 202), body
        assert bad.requests and fine.requests
        final = await until_state(http, node.url, str(spec.cid), {"done", "failed"})
        assert final["state"] == "done", final
        async with http.get(f"{node.url}/v1/jobs/{spec.cid}/results/stdout") as resp:
            assert await resp.read() == b"wanted bytes\n"
    finally:
        await node.stop()
        await bad.stop()
        await fine.stop()


async def test_one_job_cannot_make_the_node_fetch_more_than_its_upload_cap(
        tmp_path: Path, gateway: Gateway, http: aiohttp.ClientSession) -> None:
    from cod.node.caps import NodeCaps

    cap = 64 << 10
    cars = {}
    for n in range(24):
        cid, body = car_of(bytes([n]) * (cap - 200))
        cars[cid] = body

    async def answer(request: web.Request) -> web.StreamResponse:
        cid = request.path.rsplit("/", 1)[-1]
        return web.Response(body=cars[cid], content_type=CAR_TYPE)

    gateway.handler = answer
    node = await start_node_in(tmp_path, "n", gateways=[gateway.url], caps=NodeCaps(max_upload_bytes=cap))
    try:
        module = await put_module(http, node.url, CAT_F)
        spec = JobSpec(module=module, inputs=tuple(Input(cid=cid, path=f"/in/{n}") for n, cid in enumerate(cars)))
        await submit_spec(http, node.url, spec)
        assert node.node.fetcher.fetched_bytes <= 4 * cap, \
            f"one job made the node fetch {node.node.fetcher.fetched_bytes} bytes (cap {cap} per CAR)"
    finally:
        await node.stop()


async def _hanging(gateway: Gateway, release: asyncio.Event) -> list[int]:
    """Make ``gateway`` hold every request until ``release`` (then 404); the list holds the most
    requests it held at once."""
    held, most = [0], [0]

    async def answer(request: web.Request) -> web.StreamResponse:
        held[0] += 1
        most[0] = max(most[0], held[0])
        try:
            await release.wait()
        finally:
            held[0] -= 1
        return web.Response(status=404)

    gateway.handler = answer
    return most


async def test_one_client_s_unknown_cids_on_a_slow_gateway_leave_slots_for_another_client(
        tmp_path: Path, gateway: Gateway, http: aiohttp.ClientSession) -> None:
    """Issue 19 point 2: a job naming 40 CIDs no one has, with a slow gateway, held all 4 of the
    node's fetch slots (600 s a source), and another requester's job whose input a fast peer
    holds got no answer. Now one client address holds at most FETCH_SLOTS_PER_CLIENT (2) of the
    FETCH_CONCURRENCY (4): client B (from 127.0.0.2) gets its input from the peer and its job
    runs while client A's 40 fetches still hang on the gateway."""
    from cod.content.fetcher import FETCH_CONCURRENCY, FETCH_SLOTS_PER_CLIENT

    assert (FETCH_CONCURRENCY, FETCH_SLOTS_PER_CLIENT) == (4, 2)
    release = asyncio.Event()
    most = await _hanging(gateway, release)
    peer = await start_node_in(tmp_path, "peer")
    node = await start_node_in(tmp_path, "n", peers=[peer.url], gateways=[gateway.url])
    other = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0)))
    a: asyncio.Future[tuple[int, Any]] | None = None
    try:
        module = await put_module(http, node.url, CAT_F)
        wanted, body = car_of(b"B's input\n")
        assert (await put(http, peer.url, wanted, body))[0] == 201  # only the peer holds B's input
        unknown = random_cids(40, "nobody has these")
        spec_a = JobSpec(module=module, inputs=tuple(Input(cid=c, path=f"/in/{n}") for n, c in enumerate(unknown)))
        a = asyncio.ensure_future(submit_spec(http, node.url, spec_a))
        while len(gateway.requests) < FETCH_SLOTS_PER_CLIENT:  # A holds its slots on the gateway
            await asyncio.sleep(0.01)
        spec_b = file_job(module, wanted)
        status, answer = await asyncio.wait_for(submit_spec(other, node.url, spec_b), 60)  # guard, not a timing
        assert status in (200, 202), answer
        final = await until_state(other, node.url, str(spec_b.cid), {"done", "failed"})
        assert final["state"] == "done", final
        assert not a.done() and most[0] == FETCH_SLOTS_PER_CLIENT  # A's fetches hang still, on 2 slots only
        release.set()
        status, answer = await asyncio.wait_for(a, 120)
        assert status == 409 and sorted(answer["missing"]) == sorted(unknown), answer
    finally:
        release.set()
        if a is not None:
            await asyncio.gather(a, return_exceptions=True)
        await other.close()
        await node.stop()
        await peer.stop()


async def test_a_job_has_a_fetch_time_budget_for_all_its_cids(
        tmp_path: Path, gateway: Gateway, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch) -> None:
    """All of one job's fetches (queueing for a slot included) get FETCH_JOB_SECONDS together
    (scaled down here to 1 s), not 600 s a source: a job of 40 CIDs a gateway holds for ever is
    answered 409; only the 2 fetches that got a slot ever reached the gateway."""
    import cod.content.fetcher as fetcher_module

    monkeypatch.setattr(fetcher_module, "FETCH_JOB_SECONDS", 1.0)
    release = asyncio.Event()
    await _hanging(gateway, release)
    node = await start_node_in(tmp_path, "n", gateways=[gateway.url])
    try:
        module = await put_module(http, node.url, CAT_F)
        unknown = random_cids(40, "held for ever")
        spec = JobSpec(module=module, inputs=tuple(Input(cid=c, path=f"/in/{n}") for n, c in enumerate(unknown)))
        status, body = await asyncio.wait_for(submit_spec(http, node.url, spec), 60)  # a guard against a hang
        assert status == 409 and sorted(body["missing"]) == sorted(unknown), body
        assert len(gateway.requests) == 2, gateway.requests
    finally:
        release.set()
        await node.stop()


async def test_a_job_may_ask_a_node_to_fetch_at_most_max_fetch_cids(
        tmp_path: Path, gateway: Gateway, http: aiohttp.ClientSession) -> None:
    """One POST of 5,000 unknown CIDs made 5,000 gateway requests. A node now fetches at most
    ``max_fetch_cids`` CIDs for one job (all rounds together; published under ``limits``); a
    job lacking more is answered 409 at once, naming the cap, and the node asks no source. So
    one POST makes at most max_fetch_cids x sources requests."""
    from cod.limits import MAX_INPUTS
    from cod.node.caps import NodeCaps

    async def absent(request: web.Request) -> web.StreamResponse:
        return web.Response(status=404)

    gateway.handler = absent
    node = await start_node_in(tmp_path, "n", gateways=[gateway.url], caps=NodeCaps(max_fetch_cids=8))
    default = await start_node_in(tmp_path, "d", gateways=[gateway.url])
    try:
        async with http.get(node.url + "/v1/info") as resp:
            assert (await resp.json())["limits"]["max_fetch_cids"] == 8
        async with http.get(default.url + "/v1/info") as resp:
            assert (await resp.json())["limits"]["max_fetch_cids"] == 256
        module = await put_module(http, node.url, CAT_F)

        def job(count: int, salt: str) -> JobSpec:
            return JobSpec(module=module, inputs=tuple(Input(cid=c, path=f"/in/{n}")
                                                       for n, c in enumerate(random_cids(count, salt))))

        status, body = await submit_spec(http, node.url, job(9, "nine"))
        assert status == 409 and len(body["missing"]) == 9, body
        assert "max_fetch_cids = 8" in body["message"] and "upload" in body["hint"], body
        assert gateway.requests == []  # over the cap: nothing is fetched
        status, body = await submit_spec(http, node.url, job(8, "eight"))
        assert status == 409 and len(body["missing"]) == 8, body
        assert len(gateway.requests) == 8  # at the cap: each CID once, from the one source
        await put_module(http, default.url, CAT_F)
        status, body = await submit_spec(http, default.url, job(MAX_INPUTS, "most"))
        assert status == 409 and len(body["missing"]) == MAX_INPUTS, body
        assert len(gateway.requests) == 8  # 1024 > 256: the default node asked for none
    finally:
        await node.stop()
        await default.stop()
