"""An HTTP client for one compute node's /v1 API (aiohttp)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from cod.errors import NodeBusy, NodeError, NotFound

CAR_TYPE = "application/vnd.ipld.car"


class MissingBlobs(NodeError):
    def __init__(self, node: str, missing: list[str]) -> None:
        super().__init__(f"node {node} lacks {', '.join(missing)}")
        self.missing = missing


class NodeClient:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url.rstrip("/")

    async def _json(self, method: str, path: str, timeout: float = 30, **kwargs: Any) -> tuple[int, Any]:
        try:
            async with self.session.request(method, self.url + path, timeout=aiohttp.ClientTimeout(total=timeout),
                                            **kwargs) as resp:
                body = await resp.json(content_type=None) if resp.content_length != 0 else None
                if resp.status == 429:
                    raise NodeBusy(self.url, float(resp.headers.get("Retry-After", "1")))
                return resp.status, body
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            raise NodeError(f"node {self.url} did not answer {method} {path}: {type(exc).__name__} {exc}") from exc

    @staticmethod
    def _raise(status: int, body: Any, what: str, url: str) -> None:
        message = body.get("message", "") if isinstance(body, dict) else str(body)
        if status == 404:
            raise NotFound(f"{url}: {message or what + ' not found'}")
        raise NodeError(f"node {url} refused {what} (HTTP {status}): {message}")

    async def info(self) -> dict[str, Any]:
        status, body = await self._json("GET", "/v1/info", timeout=5)
        if status != 200 or not isinstance(body, dict) or "node_id" not in body:
            self._raise(status, body, "info", self.url)
        info: dict[str, Any] = body
        return info

    async def has(self, cid: str) -> bool:
        try:
            async with self.session.head(f"{self.url}/v1/blobs/{cid}", timeout=aiohttp.ClientTimeout(total=10)) as r:
                return r.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise NodeError(f"node {self.url} did not answer HEAD blob: {exc}") from exc

    async def put(self, cid: str, data: bytes | Path, car: bool) -> None:
        headers = {"Content-Type": CAR_TYPE if car else "application/octet-stream"}
        if isinstance(data, Path):
            with open(data, "rb") as handle:
                status, body = await self._json("PUT", f"/v1/blobs/{cid}", timeout=600, data=handle,
                                                headers=headers)
        else:
            status, body = await self._json("PUT", f"/v1/blobs/{cid}", timeout=600, data=data, headers=headers)
        if status not in (200, 201):
            self._raise(status, body, f"blob {cid}", self.url)

    async def submit(self, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
        status, body = await self._json("POST", "/v1/jobs?wait=true", timeout=timeout, json={"spec": spec})
        if status == 409 and isinstance(body, dict) and body.get("missing"):
            raise MissingBlobs(self.url, list(body["missing"]))
        if status not in (200, 202) or not isinstance(body, dict):
            self._raise(status, body, "the job", self.url)
        job: dict[str, Any] = body
        return job

    async def job(self, job_cid: str) -> dict[str, Any]:
        status, body = await self._json("GET", f"/v1/jobs/{job_cid}")
        if status != 200:
            self._raise(status, body, f"job {job_cid}", self.url)
        job: dict[str, Any] = body
        return job

    async def results(self, job_cid: str, dest: Path, limit: int) -> bytes | None:
        """The job's results CAR, in one request: in memory when it has a length of at most
        ``limit`` bytes, else streamed to ``dest`` (and None returned)."""
        try:
            async with self.session.get(f"{self.url}/v1/jobs/{job_cid}/results.car",
                                        timeout=aiohttp.ClientTimeout(total=600)) as resp:
                if resp.status != 200:
                    self._raise(resp.status, await resp.json(content_type=None), "the results", self.url)
                if resp.content_length is not None and resp.content_length <= limit:
                    return await resp.read()
                with open(dest, "wb") as out:
                    async for chunk in resp.content.iter_chunked(1 << 20):
                        out.write(chunk)
                return None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            raise NodeError(f"node {self.url} failed to send results: {exc}") from exc
