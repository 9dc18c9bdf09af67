"""A hostile IPFS trustless gateway on loopback: each test sets how it answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from .node_kit import car, raw


class Gateway:
    """An IPFS 'trustless gateway' on loopback whose every answer is chosen by the test."""

    def __init__(self) -> None:
        self.handler: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None
        self.requests: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def any_path(request: web.Request) -> web.StreamResponse:
            self.requests.append(request.path_qs)
            assert self.handler is not None
            return await self.handler(request)

        application = web.Application()
        application.router.add_route("*", "/{tail:.*}", any_path)
        self._runner = web.AppRunner(application, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def car_of(data: bytes) -> tuple[str, bytes]:
    """A one-block CAR of ``data`` (a raw leaf: the file's CID under --raw-leaves), by hand."""
    cid, block = raw(data)
    return str(cid), car([cid], [(cid, block)])


async def forward_to(http: aiohttp.ClientSession, base: str, request: web.Request) -> web.Response:
    """``request`` passed on to the node at ``base``, its answer passed back (a proxy's honest part)."""
    async with http.request(request.method, base + request.path_qs, data=await request.read(),
                            headers={k: v for k, v in request.headers.items()
                                     if k.lower() in ("content-type", "accept")}) as resp:
        return web.Response(body=await resp.read(), status=resp.status,
                            headers={"Content-Type": resp.headers.get("Content-Type", "application/json")})
