"""Docker jobs through the Docker Engine API on its unix socket (aiohttp). Never verifiable.

A container's output depends on its image's whole user space, the kernel and the clock,
so cod runs such jobs but always reports them ``unverifiable`` and never signs them as
eligible for verification. The results directory has the same layout as a WASM job's.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
from pathlib import Path
from typing import Any

import aiohttp

from .errors import EngineUnavailable, NodeError

API = "/v1.41"
DEFAULT_SOCKET = "/var/run/docker.sock"


def socket_path() -> str:
    host = os.environ.get("DOCKER_HOST", "")
    return host[len("unix://"):] if host.startswith("unix://") else DEFAULT_SOCKET


class DockerEngine:
    """A Docker-compatible engine (Docker, or podman's Docker API service) on a unix socket."""

    def __init__(self, socket: str | None = None) -> None:
        self.socket = socket or socket_path()

    def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=self.socket),
                                     timeout=aiohttp.ClientTimeout(total=None, connect=5))

    async def available(self) -> bool:
        if not os.path.exists(self.socket):
            return False
        try:
            async with self._session() as http, http.get("http://docker/_ping") as resp:
                return resp.status == 200
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
            return False

    async def require(self) -> None:
        if not await self.available():
            raise EngineUnavailable(
                f"no Docker-compatible engine answers on {self.socket}",
                "start Docker, or podman's Docker API service, and point DOCKER_HOST at its socket",
            )

    async def run(self, image: str, cmd: list[str], env: dict[str, str], mounts: dict[str, str], outputs: Path,
                  timeout_s: float) -> tuple[int, bytes, bytes]:
        """Run ``image`` with ``cmd``; inputs bind-mounted read-only, ``outputs`` at /outputs."""
        await self.require()
        binds = [f"{host}:{path}:ro" for path, host in sorted(mounts.items())]
        binds.append(f"{outputs}:/outputs:rw")
        body: dict[str, Any] = {
            "Image": image, "Cmd": cmd or None, "Env": [f"{k}={v}" for k, v in sorted(env.items())],
            "HostConfig": {"NetworkMode": "none", "Binds": binds}, "AttachStdout": False, "AttachStderr": False,
        }
        async with self._session() as http:
            async with http.post(f"http://docker{API}/containers/create", json=body) as resp:
                created = await _json(resp, "create the container")
            ident = created["Id"]
            try:
                async with http.post(f"http://docker{API}/containers/{ident}/start") as resp:
                    if resp.status not in (204, 304):
                        await _json(resp, "start the container")
                async with asyncio.timeout(timeout_s):
                    async with http.post(f"http://docker{API}/containers/{ident}/wait") as resp:
                        waited = await _json(resp, "wait for the container")
                async with http.get(f"http://docker{API}/containers/{ident}/logs?stdout=1&stderr=1") as resp:
                    stdout, stderr = demux(await resp.read())
            finally:
                async with http.delete(f"http://docker{API}/containers/{ident}?force=1"):
                    pass
        return int(waited.get("StatusCode", -1)), stdout, stderr


async def _json(resp: aiohttp.ClientResponse, doing: str) -> Any:
    text = await resp.text()
    if resp.status >= 300:
        try:
            message = json.loads(text).get("message", text)
        except ValueError:
            message = text
        raise NodeError(f"the Docker engine could not {doing}: {message.strip()[:300]}")
    return json.loads(text) if text else {}


def demux(stream: bytes) -> tuple[bytes, bytes]:
    """Split Docker's multiplexed log stream (8-byte headers: stream, 0, 0, 0, big-endian size)."""
    out, err, pos = bytearray(), bytearray(), 0
    while pos + 8 <= len(stream):
        kind, size = stream[pos], struct.unpack(">I", stream[pos + 4 : pos + 8])[0]
        chunk = stream[pos + 8 : pos + 8 + size]
        (err if kind == 2 else out).extend(chunk)
        pos += 8 + size
    return bytes(out), bytes(err)
