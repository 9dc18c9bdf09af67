"""A hostile proxy in front of a real ledger, for the tests of the ledger's clients.

``HostileLedger`` is a real aiohttp server on loopback. It passes every request to its backend
(a real `cod ledger` service) and hands each answer to ``patch(path_qs, status, body) -> body``,
which may rewrite it (another job's record, a forged proof, a checkpoint signed by another key).
It records the path of every request that is not a GET (``posts``): what a client wrote.
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
from aiohttp import web

from .hostile import on_loopback

Patch = Callable[[str, int, bytes], bytes]


class HostileLedger:
    def __init__(self, backend: str, patch: Patch | None = None) -> None:
        self.backend = backend.rstrip("/")
        self.patch = patch
        self.posts: list[str] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> "HostileLedger":
        self._runner, self.url = await on_loopback(self.handle, 1 << 26)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "GET":
            self.posts.append(request.path)
        async with aiohttp.ClientSession() as http:
            async with http.request(request.method, self.backend + request.path_qs, data=await request.read(),
                                    headers={"Content-Type": request.content_type}) as resp:
                status, body, kind = resp.status, await resp.read(), resp.content_type
        if self.patch is not None:
            body = self.patch(request.path_qs, status, body)
        return web.Response(body=body, status=status, content_type=kind)
