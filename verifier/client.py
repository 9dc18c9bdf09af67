"""An HTTP client for one compute node's /v1 API (aiohttp).

Every answer is untrusted: JSON bodies are read under ``schema.MAX_JSON_BYTES`` and checked
by ``verifier.schema`` before anything uses them; every request has a total timeout, so a
node that drips its answer cannot hold the requester past it. Errors of aiohttp become a
NodeError naming the node.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from cod import telemetry
from cod.errors import NodeBusy, NodeError, NotFound, PolicyRefused

from . import schema

CAR_TYPE = "application/vnd.ipld.car"
INFO_TIMEOUT_S = 5.0
HOLDINGS_PAGE = 64  # CIDs asked about in one GET /v1/holdings: about 4 KiB of URL, under aiohttp's 8 KiB line
HEALTH_TIMEOUT_S = 1.5
HEALTH_BODY_BYTES = 4096
REQUEST_TIMEOUT_S = 30.0
UPLOAD_TIMEOUT_S = 600.0
READ_CHUNK = 1 << 16


class MissingBlobs(NodeError):
    def __init__(self, node: str, missing: list[str]) -> None:
        super().__init__(f"node {node} lacks {', '.join(missing)}")
        self.missing = missing


async def read_capped(resp: aiohttp.ClientResponse, limit: int, node: str, what: str) -> bytes:
    """A response body of at most ``limit`` bytes; NodeError if it declares or sends more."""
    if resp.content_length is not None and resp.content_length > limit:
        raise NodeError(f"node {node} sent {what} of {resp.content_length} bytes, over the cap of {limit}")
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = await resp.content.read(READ_CHUNK)
        if not chunk:
            return b"".join(parts)
        size += len(chunk)
        if size > limit:
            raise NodeError(f"node {node} sent {what} of more than {limit} bytes, over the cap of {limit}")
        parts.append(chunk)


class _Counting(io.BufferedReader):
    """A file read for an upload that tells ``on_bytes`` how much has been read (aiohttp reads
    it in a worker thread, so the callback must be thread-safe; rich's progress is)."""

    def __init__(self, raw: Any, total: int, on_bytes: Callable[[int, int | None], None] | None) -> None:
        super().__init__(raw)
        self._total = total
        self._sent = 0
        self._on_bytes = on_bytes

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self._sent += len(data)
        if self._on_bytes is not None:
            self._on_bytes(self._sent, self._total)
        return data


class NodeClient:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url.rstrip("/")

    async def _json(self, method: str, path: str, timeout: float = REQUEST_TIMEOUT_S,
                    **kwargs: Any) -> tuple[int, Any]:
        """Status and decoded JSON body (None when empty); NodeBusy on 429, NodeError otherwise.
        While tracing is on, the request carries the current span's ``traceparent``."""
        if telemetry.enabled():
            headers = dict(kwargs.pop("headers", None) or {})
            telemetry.inject(headers)
            kwargs["headers"] = headers
        try:
            async with self.session.request(method, self.url + path, timeout=aiohttp.ClientTimeout(total=timeout),
                                            **kwargs) as resp:
                if resp.status == 429:
                    raise NodeBusy(self.url, schema.retry_after(self.url, resp.headers.get("Retry-After")))
                data = await read_capped(resp, schema.MAX_JSON_BYTES, self.url, f"an answer to {method} {path}")
                return resp.status, schema.parse_json(self.url, f"{method} {path}", data)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            raise NodeError(f"node {self.url} did not answer {method} {path}: "
                            f"{type(exc).__name__} {schema.clean(str(exc), 200)}".rstrip()) from exc

    def _raise(self, status: int, body: Any, what: str) -> None:
        error = schema.error_body(self.url, body)
        message = error["message"] or error["error"]
        if status == 404:
            raise NotFound(f"{self.url}: {message or what + ' not found'}")
        if status == 403 and error["error"] == "PolicyRefused":
            raise PolicyRefused(message or "the node's FIL+ policy refuses the job", error.get("hint"))
        raise NodeError(f"node {self.url} refused {what} (HTTP {status}): {message}".rstrip(": "))

    async def alive(self) -> bool:
        """Whether the node answers ``GET /v1/health`` with 200 within HEALTH_TIMEOUT_S (on a
        connection of its own: the job's request may be waiting on another)."""
        try:
            async with self.session.get(self.url + "/v1/health",
                                        timeout=aiohttp.ClientTimeout(total=HEALTH_TIMEOUT_S)) as resp:
                await read_capped(resp, HEALTH_BODY_BYTES, self.url, "its health")
                return resp.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, NodeError):
            return False

    async def holdings(self, cids: list[str]) -> set[str]:
        """Which of ``cids`` the node says it holds (GET /v1/holdings?cid=...): only a hint for
        ordering nodes, so any failure or malformed answer is the empty set."""
        pages = [cids[start:start + HOLDINGS_PAGE] for start in range(0, len(cids), HOLDINGS_PAGE)]
        try:  # pages at once, all within the one INFO_TIMEOUT_S: many pages never make a slow node slower
            answers = await asyncio.wait_for(asyncio.gather(*(self._held(page) for page in pages)), INFO_TIMEOUT_S)
        except (NodeError, asyncio.TimeoutError):
            return set()
        return set().union(*answers)

    async def _held(self, page: list[str]) -> set[str]:
        """One page of :meth:`holdings` (at most HOLDINGS_PAGE CIDs, so the URL stays short);
        NodeError for any answer that is not a holdings object."""
        status, body = await self._json("GET", "/v1/holdings", timeout=INFO_TIMEOUT_S,
                                        params=[("cid", cid) for cid in page])
        if status != 200 or not isinstance(body, dict):
            raise NodeError(f"node {self.url} answered its holdings with HTTP {status}")
        wanted = set(page)
        held: set[str] = set()
        for name in ("datasets", "modules", "private_modules", "blobs", "inside"):
            listed = body.get(name)
            if isinstance(listed, list):
                held.update(cid for cid in listed if isinstance(cid, str) and cid in wanted)
        return held

    async def info(self) -> schema.NodeInfo:
        status, body = await self._json("GET", "/v1/info", timeout=INFO_TIMEOUT_S)
        if status != 200:
            self._raise(status, body, "info")
        return schema.node_info(self.url, body)

    async def put(self, cid: str, data: bytes | Path, car: bool,
                  on_bytes: Callable[[int, int | None], None] | None = None) -> None:
        """Upload a blob; ``on_bytes`` is told the bytes sent so far (for a progress bar)."""
        headers = {"Content-Type": CAR_TYPE if car else "application/octet-stream"}
        if isinstance(data, Path):
            total = data.stat().st_size
            with open(data, "rb", buffering=0) as raw:
                handle = _Counting(raw, total, on_bytes)
                status, body = await self._json("PUT", f"/v1/blobs/{cid}", timeout=UPLOAD_TIMEOUT_S, data=handle,
                                                headers=headers)
        else:
            status, body = await self._json("PUT", f"/v1/blobs/{cid}", timeout=UPLOAD_TIMEOUT_S, data=data,
                                            headers=headers)
            if on_bytes is not None:
                on_bytes(len(data), len(data))
        if status not in (200, 201):
            self._raise(status, body, f"blob {cid}")

    async def submit(self, spec: dict[str, Any], job_cid: str, timeout: float, wait: bool = True) -> dict[str, Any]:
        """Submit and (unless ``wait`` is False) wait: the checked job record (schema.job_record)."""
        path = "/v1/jobs?wait=true" if wait else "/v1/jobs"
        status, body = await self._json("POST", path, timeout=timeout, json={"spec": spec})
        if status == 409 and isinstance(body, dict) and "missing" in body:
            raise MissingBlobs(self.url, schema.missing_blobs(self.url, body))
        if status not in (200, 202):
            self._raise(status, body, "the job")
        return schema.job_record(self.url, body, job_cid)

    async def cancel(self, job_cid: str, timeout: float, finished: str | None = None) -> str | None:
        """Ask the node to stop ``job_cid`` (DELETE /v1/jobs/{cid}, SPEC 9.6). None when it is
        stopped (cancelled now, or unknown: 404, or no longer queued or running: 409, for which
        ``finished`` is answered when given); else why the request failed. Never raises: a cancel
        is best effort, each node on its own."""
        try:
            status, body = await self._json("DELETE", f"/v1/jobs/{job_cid}", timeout=timeout)
        except NodeBusy:
            return "busy (429)"
        except NodeError as exc:
            return exc.message
        if status == 409:
            return finished
        if status in (200, 404):
            return None
        return f"HTTP {status}"

    async def job(self, job_cid: str) -> dict[str, Any]:
        status, body = await self._json("GET", f"/v1/jobs/{job_cid}")
        if status != 200:
            self._raise(status, body, f"job {job_cid}")
        return schema.job_record(self.url, body, job_cid)
