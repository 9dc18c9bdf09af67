"""Whether nodes answer now: ``GET /v1/info`` of each, concurrently, with its latency and the
node ID it proves (``cod nodes --check``, the dashboard). Wall-clock time here is for people
reading it; nothing of it reaches a result."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from cod.errors import CodError

UP = "up"
DOWN = "down"
MOVED = "other node"
"""The URL answers, but as another node than the records knew there."""


@dataclass(frozen=True)
class Health:
    url: str
    state: str
    node_id: str | None
    profile: str | None
    latency_ms: float | None
    error: str | None


async def check(urls: list[str], expected: dict[str, str] | None = None) -> list[Health]:
    """The health of each URL (in the order given); ``expected`` maps a URL to the node ID the
    records knew there, so a different node answering is reported as MOVED."""
    from .client import NodeClient

    expected = expected or {}
    async with aiohttp.ClientSession() as session:
        async def one(url: str) -> Health:
            started = time.monotonic()
            try:
                info = await NodeClient(session, url).info()
            except CodError as exc:
                return Health(url, DOWN, None, None, None, exc.message)
            latency = round((time.monotonic() - started) * 1000, 1)
            known = expected.get(url)
            state = MOVED if known and known != info.node_id else UP
            return Health(url, state, info.node_id, info.profile, latency,
                          f"records know {known} here" if state == MOVED else None)

        return list(await asyncio.gather(*(one(u) for u in urls)))


__all__ = ["DOWN", "Health", "MOVED", "UP", "check"]
