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

import aiohttp
import pytest
from aiohttp import web

from cod.content.car import header, write_car
from cod.content.cid import CID
from cod.jobspec import Input, JobSpec

from ..hostile_gateway import Gateway, car_of
from ..node_kit import (CAR_TYPE, CAT_F, car, cat_wat, file_job, put_module,
                        start_node_in, submit_spec, until_state, wat)


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
