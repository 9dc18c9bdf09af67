"""Starting a node: in this process on loopback (tests, devstack) or as `cod serve`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from ..errors import CodError, NodeError
from ..web.server import MAX_PORT, listen, until_interrupted
from .app import Node, app, http_error_body


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
    try:
        await node.start()
    except BaseException:
        await node.stop()  # its executors, and the data directory's lock
        raise
    try:
        served = await listen(app(node), host, port, http_error_body)
    except OSError as exc:
        await node.stop()
        raise NodeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                        "pick another --port (0: any free port) or --host, or stop what holds it") from None
    except CodError:  # a COD_HTTP_* limit that is not a number
        await node.stop()
        raise
    return RunningNode(node, served.runner, served.url)


async def serve_forever(data_dir: Path, host: str, port: int, **options: Any) -> None:
    running = await start_node(data_dir, host, port, **options)
    policy = running.node.policy
    ledger = f" (policy {policy.name}, ledger {policy.ledger})" if policy.ledger else ""
    print(f"cod node {running.node.identity.node_id} serving on {running.url}{ledger}", flush=True)
    await until_interrupted()
    await running.stop()
