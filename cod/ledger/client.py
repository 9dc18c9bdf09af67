"""The HTTP client of the ledger's API (SPEC.md 12.7): what every command, node and verifier uses.

One method per route. Every answer is untrusted: bodies are read under a byte cap, parsed
strictly (``cod.jobspec.load_json``) and must be a JSON object; every request has a total
timeout. A non-2xx answer becomes ``LedgerRefused(status=..., error=...)`` carrying the
ledger's own message and hint; a ledger that cannot be reached (refused, reset, timed out)
is ``LedgerRefused(status=0)``; an answer that is not what the API documents is
``LedgerRefused(status=<its status>, error="BadAnswer")``. Redirects are not followed: the
answer must come from the ledger named (a 3xx is a refusal).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp

from ..errors import CodError, LedgerRefused, RateLimited
from ..jobspec import load_json

REQUEST_TIMEOUT_S = 30.0
"""Longest any one request may take, connection to last byte (the node passes a shorter one)."""

MAX_ANSWER_BYTES = 16 << 20
"""Largest JSON answer read (a job's history with its evidence stays far below it)."""

MAX_TEXT_CHARS = 500
"""A ledger's message or hint shown to a user is cut here (and control characters replaced)."""

READ_CHUNK = 1 << 16
MAX_RETRY_AFTER_S = 3600
"""A 429's retry_after as a client believes it: a hostile ledger cannot make it wait for days."""
LEDGER_HINT = "start it (cod ledger serve), or check --ledger / COD_LEDGER / \"ledger\" in the config file"
T = TypeVar("T")


def clean(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` safe to print: control characters become '?', cut at ``limit`` characters."""
    out = "".join("?" if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F else c for c in text[:limit])
    return out + ("..." if len(text) > limit else "")


def segment(value: str) -> str:
    """``value`` as one URL path segment: '/', '..', '?' and '%' cannot reach another route."""
    return quote(value, safe="")


class LedgerClient:
    """The ledger at ``url``. Without a ``session`` each request opens and closes its own
    (simple for a command); a node passes its long-lived session."""

    def __init__(self, url: str, session: aiohttp.ClientSession | None = None, *,
                 timeout_s: float = REQUEST_TIMEOUT_S, max_bytes: int = MAX_ANSWER_BYTES) -> None:
        self.url = url.rstrip("/")
        self.session = session
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes

    # -- transport ---------------------------------------------------------------------------
    async def _request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """Status and body bytes (at most max_bytes); LedgerRefused(status=0) if unreachable."""
        if self.session is not None:
            return await self._send(self.session, method, path, body)
        async with aiohttp.ClientSession() as session:
            return await self._send(session, method, path, body)

    async def _send(self, session: aiohttp.ClientSession, method: str, path: str, body: Any) -> tuple[int, bytes]:
        what = f"{method} {path}"
        try:
            async with session.request(method, self.url + path, json=body, allow_redirects=False,
                                       timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as resp:
                return resp.status, await self._read(resp, what)
        except asyncio.TimeoutError:
            raise LedgerRefused(f"cannot reach the ledger at {self.url}: no answer to {what} within "
                                f"{self.timeout_s:g} s", LEDGER_HINT, status=0, error="Unreachable") from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise LedgerRefused(f"cannot reach the ledger at {self.url}: {type(exc).__name__} "
                                f"{clean(str(exc), 200)}".rstrip(), LEDGER_HINT, status=0,
                                error="Unreachable") from None

    async def _read(self, resp: aiohttp.ClientResponse, what: str) -> bytes:
        if resp.content_length is not None and resp.content_length > self.max_bytes:
            raise self._bad(resp.status, f"an answer to {what} of {resp.content_length} bytes, over the cap of "
                                         f"{self.max_bytes}")
        parts: list[bytes] = []
        size = 0
        while chunk := await resp.content.read(READ_CHUNK):
            size += len(chunk)
            if size > self.max_bytes:
                raise self._bad(resp.status, f"an answer to {what} of more than {self.max_bytes} bytes")
            parts.append(chunk)
        return b"".join(parts)

    def _bad(self, status: int, what: str) -> LedgerRefused:
        return LedgerRefused(f"the ledger at {self.url} sent {what}", "check that --ledger names a cod ledger",
                             status=status, error="BadAnswer")

    async def _json(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """The JSON object answered to ``method path`` (GET: status 200; POST: 200 or 201);
        raises LedgerRefused otherwise."""
        status, raw = await self._request(method, path, body)
        if status not in ((200,) if method == "GET" else (200, 201)):
            raise self._refusal(status, raw, f"{method} {path}")
        try:
            data = load_json(raw)
        except CodError as exc:
            raise self._bad(status, f"an answer to {method} {path} that is not JSON: {exc.message}") from None
        if not isinstance(data, dict):
            raise self._bad(status, f"an answer to {method} {path} that is a {type(data).__name__}, not an object")
        return data

    def _refusal(self, status: int, raw: bytes, what: str) -> LedgerRefused:
        """The ledger's JSON error body as a LedgerRefused; any other body is named by its status."""
        error, message, hint = f"HTTP{status}", "", None
        try:
            data = load_json(raw)
        except CodError:
            data = None
        if isinstance(data, dict):
            if isinstance(data.get("error"), str):
                error = clean(data["error"], 100)
            if isinstance(data.get("message"), str):
                message = clean(data["message"])
            if isinstance(data.get("hint"), str):
                hint = clean(data["hint"])
        text = f"the ledger refused {what} (HTTP {status} {error})" + (f": {message}" if message else "")
        hint = hint or "see the ledger's /v1/openapi.json"
        wait = data.get("retry_after") if isinstance(data, dict) else None
        if status == 429 and isinstance(wait, int) and not isinstance(wait, bool) and wait >= 0:
            limit = data.get("limit") if isinstance(data, dict) else None
            return RateLimited(text, hint, limit=clean(limit, 40) if isinstance(limit, str) else "unknown",
                               retry_after=min(wait, MAX_RETRY_AFTER_S))
        return LedgerRefused(text, hint, status=status, error=error)

    # -- routes (design.md "HTTP API of the ledger") -------------------------------------------
    async def info(self) -> dict[str, Any]:
        return await self._json("GET", "/v1/info")

    async def origin(self) -> str:
        """The ledger's origin (GET /v1/info), which every statement signed for it names (SPEC.md 12.4).

        The answer must be an origin (a signed-note key name) and the name of the answered vkey;
        else LedgerRefused "BadAnswer".
        """
        from .entries import EntryRefused, check_origin

        info = await self.info()
        origin, vkey = info.get("origin"), info.get("vkey")
        try:
            check_origin(origin)
        except EntryRefused as exc:
            raise self._bad(200, f"an origin that is not usable ({exc.message})") from None
        if not isinstance(vkey, str) or not vkey.startswith(f"{origin}+"):
            raise self._bad(200, f"an origin ({clean(str(origin), 100)}) that is not the name of its vkey")
        return str(origin)

    async def input(self, cid: str) -> dict[str, Any]:
        """Whether ``cid`` is blessed: {"cid", "blessed", "blessings"}."""
        return await self._json("GET", f"/v1/inputs/{segment(cid)}")

    async def bless(self, batches: list[dict[str, Any]]) -> dict[str, Any]:
        return await self._json("POST", "/v1/blessings", {"batches": batches})

    async def evidence(self, spec: dict[str, Any], statements: list[dict[str, Any]]) -> dict[str, Any]:
        """Report a job's evidence: {"job", "entry", "eligible", "reason", "result", "nodes"}."""
        return await self._json("POST", "/v1/evidence", {"spec": spec, "statements": statements})

    async def refusal(self, signed: dict[str, Any]) -> dict[str, Any]:
        return await self._json("POST", "/v1/refusals", signed)

    async def job(self, cid: str) -> dict[str, Any]:
        return await self._json("GET", f"/v1/jobs/{segment(cid)}")

    async def queue(self, cursor: int | None = None, limit: int | None = None) -> dict[str, Any]:
        """One page of the moderation queue: {"jobs", "next"}; pass "next" as ``cursor`` for the next page."""
        query = "&".join(f"{name}={int(value)}" for name, value in (("cursor", cursor), ("limit", limit))
                         if value is not None)
        return await self._json("GET", "/v1/moderation/queue" + (f"?{query}" if query else ""))

    async def queue_all(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Every job of the queue, page by page (each page under the answer cap)."""
        jobs: list[dict[str, Any]] = []
        cursor: int | None = None
        while True:
            page = await self.queue(cursor, limit)
            jobs += page["jobs"]
            cursor = page.get("next")
            if not isinstance(cursor, int) or not page["jobs"]:
                return jobs

    async def decide(self, signed: dict[str, Any]) -> dict[str, Any]:
        return await self._json("POST", "/v1/decisions", signed)

    async def moderators(self) -> dict[str, Any]:
        return await self._json("GET", "/v1/moderators")

    async def propose(self, signed: dict[str, Any]) -> dict[str, Any]:
        return await self._json("POST", "/v1/moderators/proposals", signed)

    async def approve(self, proposal_id: str, signed: dict[str, Any]) -> dict[str, Any]:
        return await self._json("POST", f"/v1/moderators/proposals/{segment(proposal_id)}/approvals", signed)

    async def result(self, cid: str) -> dict[str, Any]:
        """The notary's answer for a result CID (404: never eligible -> LedgerRefused status 404)."""
        return await self._json("GET", f"/v1/results/{segment(cid)}")

    async def inclusion(self, index: int, size: int | None = None) -> dict[str, Any]:
        query = f"index={int(index)}" + (f"&size={int(size)}" if size is not None else "")
        return await self._json("GET", f"/v1/proof/inclusion?{query}")

    async def consistency(self, old: int, new: int | None = None) -> dict[str, Any]:
        query = f"old={int(old)}" + (f"&new={int(new)}" if new is not None else "")
        return await self._json("GET", f"/v1/proof/consistency?{query}")

    async def tile(self, path: str, limit: int) -> bytes:
        """A C2SP tile or entry bundle (``tile/...``, 12.3) of at most ``limit`` bytes."""
        status, raw = await LedgerClient(self.url, self.session, timeout_s=self.timeout_s,
                                         max_bytes=limit)._request("GET", "/" + path)
        if status != 200:
            raise self._refusal(status, raw, f"GET /{path}")
        return raw

    async def checkpoint(self) -> str:
        """The latest checkpoint: the signed note's text, with its cosignatures."""
        status, raw = await self._request("GET", "/checkpoint")
        if status != 200:
            raise self._refusal(status, raw, "GET /checkpoint")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self._bad(status, "a checkpoint that is not UTF-8") from None


def run(coro: Awaitable[T]) -> T:
    """Run one client call to completion from synchronous code (a CLI command)."""

    async def main() -> T:
        return await coro

    return asyncio.run(main())


__all__ = ["LedgerClient", "run", "REQUEST_TIMEOUT_S", "MAX_ANSWER_BYTES"]
