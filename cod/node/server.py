"""Starting a node: in this process on loopback (tests, devstack) or as `cod serve`."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from ..errors import NodeError
from .app import Node, app

MAX_PORT = 65535


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
    runner = web.AppRunner(app(node), access_log=None)
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
    print(f"cod node {running.node.identity.node_id} serving on {running.url}", flush=True)
    await until_interrupted()
    await running.stop()
