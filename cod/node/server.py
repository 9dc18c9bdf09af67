"""Starting a node: in this process on loopback (tests, devstack) or as `cod serve`."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from ..errors import NodeError
from .app import Node, app, http_error_body

MAX_PORT = 65535


class _JsonErrorsHandler(RequestHandler):
    """aiohttp's connection handler, answering what its HTTP parser refuses (an unknown method,
    a malformed request line or header) with the node's JSON error body instead of text."""

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs; raises if a response was begun
        response = web.json_response(http_error_body(status, "the request could not be parsed as HTTP"),
                                     status=status)
        response.force_close()
        return response


class _JsonErrorsServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorsHandler(self, loop=self._loop, **self._kwargs)


class _Runner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorsServer  # same state, one method more
        return server


@dataclass
class RunningNode:
    node: Node
    runner: web.AppRunner
    url: str

    async def stop(self) -> None:
        await self.node.stop()
        await self.runner.cleanup()


async def start_node(data_dir: Path, host: str = "127.0.0.1", port: int = 0, **options: Any) -> RunningNode:
    """Start a node server; port 0 picks a free one. Returns its base URL.

    Raises NodeError for a port out of range, an address that cannot be bound (in use, not
    permitted, not local) or a data directory that cannot be used; nothing is left running then.
    """
    if not 0 <= port <= MAX_PORT:
        raise NodeError(f"port {port} is out of range", f"use a port from 0 to {MAX_PORT} (0: any free port)")
    node = Node(data_dir, **options)
    await node.start()
    runner = _Runner(app(node), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await node.stop()
        await runner.cleanup()
        raise NodeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                        "pick another --port (0: any free port) or --host, or stop what holds it") from None
    sockets = getattr(site._server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return RunningNode(node, runner, f"http://{host}:{bound}")


async def until_interrupted() -> None:
    """Wait for SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def serve_forever(data_dir: Path, host: str, port: int, **options: Any) -> None:
    running = await start_node(data_dir, host, port, **options)
    policy = running.node.policy
    ledger = f" (policy {policy.name}, ledger {policy.ledger})" if policy.ledger else ""
    print(f"cod node {running.node.identity.node_id} serving on {running.url}{ledger}", flush=True)
    await until_interrupted()
    await running.stop()
