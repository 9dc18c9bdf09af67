"""A stand-in for the ledger's HTTP API (design.md "HTTP API of the ledger"), for engineer C's tests.

It answers the documented shapes and can be told to misbehave (lie, drip, be huge, fail), which
the real service (cod/ledger/service.py, engineer D) never does on purpose. It checks every
refusal it takes the way the ledger must: the node's Ed25519 signature over the canonical JSON
of the statement, against the key inside the node ID (PyNaCl, not cod's own verify). Where the
real service is what a test needs (the judgement of evidence), the tests use it instead.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import base58
import nacl.signing
from aiohttp import web

# the modes of GET /v1/inputs/{cid}
HONEST, BAD_JSON, YES_STRING, OTHER_CID, HUGE, SLOW, ERROR_500, LIST, NOT_FOUND, CUSTOM = (
    "honest", "bad-json", "yes-string", "other-cid", "huge", "slow", "500", "list", "404", "custom")


def canonical(value: Any) -> bytes:
    """Canonical JSON written independently of cod: sorted keys, no white space, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key_of(node_id: str) -> bytes:
    """The Ed25519 key inside a libp2p peer ID: base58btc of 00 24 08 01 12 20 || key."""
    raw = base58.b58decode(node_id)
    assert raw[:6] == bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20]), "not an Ed25519 peer ID"
    return raw[6:]


class StandIn:
    def __init__(self) -> None:
        self.blessed: set[str] = set()
        self.mode = HONEST
        self.slow_s = 3.0  # past every timeout the tests set, short enough not to hold the shutdown
        self.down_refusals = 0  # answer the next N refusals 503
        self.limited_refusals = 0  # answer the next N refusals 429 RateLimited (after the 503s)
        self.questions: list[str] = []
        self.refusals: list[dict[str, Any]] = []
        self.evidence: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, Any]] = []
        self.canned: dict[str, tuple[int, Any]] = {}  # path -> (status, body) for the client tests
        self.custom: tuple[int, bytes] = (200, b"{}")  # what mode CUSTOM answers to GET /v1/inputs/{cid}
        self.refusal_seen = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 << 20)
        app.router.add_get("/v1/inputs/{cid}", self.input)
        app.router.add_post("/v1/refusals", self.refusal)
        app.router.add_post("/v1/evidence", self.post_evidence)
        app.router.add_route("*", "/{tail:.*}", self.other)
        return app

    async def input(self, request: web.Request) -> web.StreamResponse:
        cid = request.match_info["cid"]
        self.questions.append(cid)
        mode = self.mode
        if mode == SLOW:
            await asyncio.sleep(self.slow_s)
        if mode == BAD_JSON:
            return web.Response(body=b'{"cid": "x", "blessed": tru', content_type="application/json")
        if mode == YES_STRING:
            return web.json_response({"cid": cid, "blessed": "yes", "blessings": []})
        if mode == OTHER_CID:
            return web.json_response({"cid": cid + "x", "blessed": True, "blessings": []})
        if mode == HUGE:
            return web.Response(body=b'{"cid": "' + b"a" * (3 << 20) + b'"}', content_type="application/json")
        if mode == ERROR_500:
            return web.json_response({"error": "InternalError", "message": "boom", "hint": "-"}, status=500)
        if mode == LIST:
            return web.json_response([True])
        if mode == CUSTOM:
            return web.Response(status=self.custom[0], body=self.custom[1], content_type="application/json")
        if mode == NOT_FOUND:
            return web.json_response({"error": "NotFound", "message": "no", "hint": "-"}, status=404)
        blessed = cid in self.blessed
        return web.json_response({"cid": cid, "blessed": blessed,
                                  "blessings": [{"entry": 1, "deals": [7], "source": "list"}] if blessed else []})

    async def refusal(self, request: web.Request) -> web.Response:
        if self.down_refusals > 0:
            self.down_refusals -= 1
            return web.json_response({"error": "Unavailable", "message": "down", "hint": "-"}, status=503)
        if self.limited_refusals > 0:
            self.limited_refusals -= 1
            return web.json_response({"error": "RateLimited", "message": "too many writes", "hint": "retry after 1 s",
                                      "limit": "address", "retry_after": 1}, status=429, headers={"Retry-After": "1"})
        body = await request.json()
        statement = body["statement"]
        nacl.signing.VerifyKey(key_of(statement["node"])).verify(
            canonical(statement), base64.b64decode(body["signature"], validate=True))  # raises if forged
        self.refusals.append(body)
        self.refusal_seen.set()
        return web.json_response({"entry": len(self.refusals)}, status=201)

    async def post_evidence(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.evidence.append(body)
        if "/v1/evidence" in self.canned:
            status, answer = self.canned["/v1/evidence"]
            return web.json_response(answer, status=status)
        results = [s["statement"]["result"] for s in body["statements"]]
        agreed = max(set(results), key=results.count)
        cids = [i["cid"] for i in body["spec"].get("inputs", []) if "cid" in i]
        eligible = len(results) >= 2 and 2 * results.count(agreed) > len(results) and bool(cids) and all(
            c in self.blessed for c in cids)
        return web.json_response({
            "job": body["statements"][0]["statement"]["job"], "entry": len(self.evidence), "eligible": eligible,
            "reason": None if eligible else "input CID is not blessed FIL+ data", "result": agreed if eligible else None,
            "nodes": sorted(s["statement"]["node"] for s in body["statements"]) if eligible else []}, status=201)

    async def other(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append((request.method, request.path_qs, json.loads(body) if body else None))
        status, answer = self.canned.get(request.path, (200, {"ok": True}))
        if 300 <= status < 400:  # a redirect to a route that answers 200
            return web.Response(status=status, headers={"Location": "/v1/moderators"})
        if isinstance(answer, bytes):
            return web.Response(body=answer, status=status)
        return web.json_response(answer, status=status)


async def start(standin: StandIn) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(standin.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@contextmanager
def in_thread(standin: StandIn) -> Iterator[str]:
    """The stand-in served from a thread of its own (for tests that run cod as a subprocess)."""
    loop = asyncio.new_event_loop()
    ready: list[Any] = []
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        ready.append(loop.run_until_complete(start(standin)))
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(30)
    runner, url = ready[0]
    try:
        yield url
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


class LedgerBacked:
    """The three routes a node and a requester use, answered by engineer B's real ``Ledger``
    (cod/ledger/log.py): its judgement of evidence, its blessings, its checks of refusals. A
    test adapter until engineer D's service is there, not the service: no other route, no caps."""

    def __init__(self, ledger: Any) -> None:
        self.ledger = ledger

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/inputs/{cid}", self.input)
        app.router.add_post("/v1/evidence", self.evidence)
        app.router.add_post("/v1/refusals", self.refusal)
        return app

    @staticmethod
    def _refused(exc: Any) -> web.Response:
        return web.json_response({"error": exc.error, "message": exc.message, "hint": exc.hint or "-"},
                                 status=exc.status)

    async def input(self, request: web.Request) -> web.Response:
        return web.json_response(self.ledger.input(request.match_info["cid"]))

    async def evidence(self, request: web.Request) -> web.Response:
        from cod.errors import LedgerRefused

        body = await request.json()
        try:
            entry, judgement, new = self.ledger.report_evidence(body["spec"], body["statements"])
        except LedgerRefused as exc:
            return self._refused(exc)
        return web.json_response({"job": judgement.job, "entry": entry, "eligible": judgement.eligible,
                                  "reason": judgement.reason, "result": judgement.result,
                                  "nodes": list(judgement.nodes)}, status=201 if new else 200)

    async def refusal(self, request: web.Request) -> web.Response:
        from cod.errors import LedgerRefused

        try:
            entry = self.ledger.refusal(await request.json())
        except LedgerRefused as exc:
            return self._refused(exc)
        return web.json_response({"entry": entry}, status=201)


@contextmanager
def backed_in_thread(ledger: Any) -> Iterator[str]:
    """A LedgerBacked server from a thread of its own."""
    loop = asyncio.new_event_loop()
    ready: list[Any] = []
    started = threading.Event()

    async def start_backed() -> tuple[web.AppRunner, str]:
        runner = web.AppRunner(LedgerBacked(ledger).app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    def serve() -> None:
        asyncio.set_event_loop(loop)
        ready.append(loop.run_until_complete(start_backed()))
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(30)
    runner, url = ready[0]
    try:
        yield url
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
