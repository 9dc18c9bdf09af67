"""Hostile compute nodes for the verifier's tests, built beside the honest node, never in it.

A ``Hostile`` node is a real aiohttp server on loopback. In front of a real node (its
backend) it passes requests through and alters what it serves: wrong types in its info or
job records, raw bodies (oversized, not JSON, nested without end), answers dripped slowly,
its own key signing a copied answer or a lie (under the profile its info shows, or another),
and results CARs that are tampered, incomplete, of another root, junk, endless or dripping.
It counts the results bytes it sent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from cod.content.car import car_bytes
from cod.content.cid import CID, RAW, read_varint
from cod.content.unixfs import cid_of_tree
from cod.identity import Identity
from cod.statement import Statement

CAR_TYPE = "application/vnd.ipld.car"
LIE = str(CID.of(RAW, b"a lie, signed"))
RESULT_MODES = ("tampered", "incomplete", "truncated", "short", "other-root", "junk", "endless", "huge", "drip",
                "not-a-car")
Patch = Callable[[dict[str, Any]], Any]


def without_first_block(car: bytes) -> bytes:
    """The CAR with its first block section removed (a leaf: blocks come leaves first)."""
    head_len, pos = read_varint(car, 0)
    start = pos + head_len
    section_len, body = read_varint(car, start)
    return car[:start] + car[body + section_len:]


async def on_loopback(handle: Any, max_body: int) -> tuple[web.AppRunner, str]:
    """Serve ``handle`` for every method and path on a free loopback port: (runner, URL)."""
    application = web.Application(client_max_size=max_body)
    application.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(application)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


class Hostile:
    """A node that lies in one chosen way; everything else is its backend's honest answer."""

    def __init__(self, backend: str | None = None, *, info: Patch | None = None, job: Patch | None = None,
                 raw_info: bytes | None = None, raw_job: bytes | None = None, drip_job: bool = False,
                 identity: Identity | None = None, lie: bool = False, profile: str | None = None,
                 results: str | None = None, other_tree: Path | None = None) -> None:
        self.backend = backend
        self.patch_info, self.patch_job = info, job
        self.raw_info, self.raw_job, self.drip_job = raw_info, raw_job, drip_job
        self.identity, self.lie, self.profile = identity, lie, profile
        self.results, self.other_tree = results, other_tree
        self.sent = 0  # bytes of results.car bodies sent
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> "Hostile":
        self._runner, self.url = await on_loopback(self.handle, 1 << 30)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> tuple[int, bytes, str]:
        assert self.backend is not None
        async with aiohttp.ClientSession() as http:
            async with http.request(request.method, self.backend + request.path_qs, data=await request.read(),
                                    headers={"Content-Type": request.content_type}) as resp:
                return resp.status, await resp.read(), resp.content_type

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/v1/info":
            return await self._info(request)
        if request.method == "POST" and request.path == "/v1/jobs":
            return await self._job(request)
        if request.path.endswith("/results.car") and self.results:
            return await self._results(request)
        status, body, kind = await self._forward(request)
        return web.Response(body=body, status=status, content_type=kind)

    async def _info(self, request: web.Request) -> web.StreamResponse:
        if self.raw_info is not None:
            return web.Response(body=self.raw_info, content_type="application/json")
        status, body, kind = await self._forward(request)
        info = json.loads(body)
        if self.identity is not None:
            info["node_id"], info["public_key"] = self.identity.node_id, self.identity.public_key.hex()
        if self.patch_info is not None:
            info = self.patch_info(info)
        return web.Response(body=json.dumps(info).encode(), status=status, content_type=kind)

    async def _job(self, request: web.Request) -> web.StreamResponse:
        if self.raw_job is not None:
            return web.Response(body=self.raw_job, content_type="application/json")
        if self.drip_job:
            return await self._drip(request, "application/json")
        status, body, kind = await self._forward(request)
        if status != 200:
            return web.Response(body=body, status=status, content_type=kind)
        record = json.loads(body)
        if self.identity is not None and record.get("state") == "done":
            self._resign(record)
        if self.patch_job is not None:
            record = self.patch_job(record)
        return web.Response(body=json.dumps(record).encode(), status=status, content_type=kind)

    def _resign(self, record: dict[str, Any]) -> None:
        """Sign the backend's answer (or a lie) with this node's own key: a copier, or a liar."""
        assert self.identity is not None
        members = dict(record["statement"]["statement"], node=self.identity.node_id)
        if self.lie:
            members["result"] = LIE
        if self.profile is not None:  # signed as if run under another profile than /v1/info shows
            members["profile"] = self.profile
        record["result_cid"] = members["result"]
        record["statement"] = Statement(**members).sign(self.identity).to_json()

    async def _drip(self, request: web.Request, kind: str) -> web.StreamResponse:
        """Headers at once, then a byte every 0.2 s, forever (until the client gives up)."""
        response = web.StreamResponse(headers={"Content-Type": kind})
        await response.prepare(request)
        try:
            while True:
                await response.write(b" ")
                self.sent += 1
                await asyncio.sleep(0.2)
        except (ConnectionError, asyncio.CancelledError):
            pass
        return response

    async def _results(self, request: web.Request) -> web.StreamResponse:
        mode = self.results
        if mode == "drip":
            return await self._drip(request, CAR_TYPE)
        if mode in ("endless", "huge"):
            response = web.StreamResponse(headers={"Content-Type": CAR_TYPE})
            if mode == "huge":
                response.content_length = 1 << 50
            await response.prepare(request)
            chunk = b"\x00" * (1 << 20)
            try:
                while True:
                    await response.write(chunk)
                    self.sent += len(chunk)
            except (ConnectionError, asyncio.CancelledError):
                pass
            return response
        status, car, _ = await self._forward(request)
        if mode == "tampered":
            car = car[:-1] + bytes([car[-1] ^ 1])  # the root block's last byte
        elif mode == "incomplete":
            car = without_first_block(car)
        elif mode == "truncated":
            car = car[: len(car) // 2]
        elif mode == "other-root":
            assert self.other_tree is not None
            car = car_bytes(self.other_tree, cid_of_tree(self.other_tree))
        elif mode == "junk":
            car = b"junk" * 1000
        if mode == "short":  # declares the whole CAR, sends half, hangs up
            response = web.StreamResponse(headers={"Content-Type": CAR_TYPE})
            response.content_length = len(car)
            await response.prepare(request)
            await response.write(car[: len(car) // 2])
            self.sent += len(car) // 2
            assert request.transport is not None
            request.transport.close()
            return response
        self.sent += len(car)
        return web.Response(body=car, status=status, content_type="text/html" if mode == "not-a-car" else CAR_TYPE)
