"""The ledger's HTTP service (SPEC.md 12.7): a thin aiohttp shell over :class:`cod.ledger.log.Ledger`.

Every answer is JSON except the C2SP tlog-tiles routes (``/checkpoint``, ``/tile/...``), which a
static mirror could serve byte for byte. Every refusal is a JSON body ``{"error", "message",
"hint"}`` with the status the state machine chose (nothing is stored on a 4xx). Writes run in a
thread (the Ledger serialises them with its lock) so the event loop keeps answering reads; each
is first charged to its rate-limit buckets (rates.py), and answered 429 with Retry-After when one
is spent.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..content.cid import CID
from ..errors import CIDError, CodError, LedgerRefused, NotFound, RateLimited, SpecError
from ..web import answers
from ..web.body import check_strings, parse_json
from . import openapi, tiles
from .entries import APPROVAL, BLESS, DECISION, PROPOSAL, REFUSAL, EntryRefused, Signed, parse_signed
from .log import Ledger
from .frauds import FraudDesk
from .rates import ANONYMOUS, FRAUD, GOVERNANCE, KEY, LIAR, Limiter, Ticket, address_of

log = logging.getLogger("cod.ledger")

MAX_JSON_BODY = 1 << 20
"""Largest JSON body of a request, except blessings."""
MAX_BLESS_BODY = 16 << 20
"""Largest body of POST /v1/blessings (many batches of 1000 inputs)."""
READ_CHUNK = 1 << 16
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,17}")
"""A query integer: ASCII decimal, no sign or leading zero, below 10^18."""
IMMUTABLE = "public, max-age=31536000, immutable"
"""A full tile or entry bundle never changes: C2SP tlog-tiles."""
MUTABLE = "no-cache"
STATUS_OF = {"NotFound": 404, "CIDError": 400, "SpecError": 400, "UsageError": 400}
DEFAULT_HINT = answers.DEFAULT_HINT
DEFAULT_QUEUE_PAGE = 100
"""Jobs in one page of GET /v1/moderation/queue unless limit= says otherwise."""
MAX_QUEUE_PAGE = 1000
"""Most jobs in one page: each carries its signers (up to 64), so a page stays well under a client's cap."""

WITNESSES: web.AppKey[list[str]] = web.AppKey("witnesses", list)
"""The cosignature vkeys of the witnesses the server pushes checkpoints to (GET /v1/info)."""

AppendHook = Callable[[], None]
"""Called (on the event loop) after every append that grew the log: the witness pusher listens."""


def error_body(exc: CodError) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of a CodError."""
    if isinstance(exc, RateLimited):
        return 429, {"error": exc.error, "message": exc.message, "hint": exc.hint or DEFAULT_HINT,
                     "limit": exc.limit, "retry_after": exc.retry_after}
    if isinstance(exc, LedgerRefused):
        return exc.status or 400, {"error": exc.error, "message": exc.message, "hint": exc.hint or DEFAULT_HINT}
    name = type(exc).__name__
    return STATUS_OF.get(name, 400), {"error": name, "message": exc.message, "hint": exc.hint or DEFAULT_HINT}


def _answer(exc: CodError) -> web.Response:
    status, body = error_body(exc)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
    return web.json_response(body, status=status, headers=headers)


errors = answers.json_errors(_answer, log=log, service="ledger",
                             after_bug="the ledger is still up and stored nothing; report this with its log")
"""Every error is a JSON body; a bug is a logged JSON 500 and the service stays up."""


async def _body(request: web.Request, limit: int = MAX_JSON_BODY) -> Any:
    if request.content_length is not None and request.content_length > limit:
        raise LedgerRefused(f"the body of {request.content_length} bytes is over the cap of {limit}",
                            "send fewer entries per request", status=413, error="TooLarge")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.content.iter_chunked(READ_CHUNK):  # a chunked body has no Content-Length
        total += len(chunk)
        if total > limit:
            raise LedgerRefused(f"the body is over the cap of {limit} bytes", "send fewer entries per request",
                                status=413, error="TooLarge")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        value = parse_json(raw)
        check_strings(value)
    except SpecError as exc:
        raise LedgerRefused(f"the body is not strict JSON: {exc.message}", "send one JSON object (SPEC.md 12.7)",
                            status=400, error="BadRequest") from None
    return value


def _object(value: Any, *keys: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise LedgerRefused("the body must be a JSON object", "see /v1/openapi.json", status=400, error="BadRequest")
    unknown = sorted(set(value) - set(keys)) if keys else []
    if unknown:
        raise LedgerRefused(f"unknown member {unknown[0]!r} in the body", f"the body has {', '.join(keys)}",
                            status=400, error="BadRequest")
    return value


def _cid(text: str) -> str:
    try:
        return str(CID.parse(text))
    except CIDError as exc:
        raise LedgerRefused(f"{text[:100]!r} is not a CID: {exc.message}", "give a CIDv0 or CIDv1",
                            status=400, error="BadRequest") from None


def _int(request: web.Request, name: str, default: int | None = None) -> int | None:
    value = request.query.get(name)
    if value is None:
        return default
    if not _DECIMAL.fullmatch(value):
        raise LedgerRefused(f"query parameter {name}={value[:40]!r} is not a decimal integer",
                            f"give {name} as a non-negative integer", status=400, error="BadRequest")
    return int(value)


GOVERNORS = {BLESS: "moderator", DECISION: "moderator", PROPOSAL: "root", APPROVAL: "root"}
"""Who may sign each governance kind (12.6): its posts are not charged to the anonymous budgets."""


def _governor(ledger: Ledger, kind: str, body: Any) -> list[Signed] | None:
    """The signed entries of a governance post when every one is of ``kind`` and names a current
    governor of it as signer (signatures not yet checked); None for anything else."""
    try:
        items = body.get("batches") if kind == BLESS and isinstance(body, dict) else [body]
        parsed = [parse_signed(item, kind) for item in items] if isinstance(items, list) and items else []
    except LedgerRefused:
        return None
    state = ledger.state  # read beside the writer thread: membership tests only, never a change
    known = state.moderators if GOVERNORS[kind] == "moderator" else state.root_keys
    return parsed if parsed and all(p.signer in known for p in parsed) else None


def _verifies(parsed: list[Signed]) -> bool:
    try:
        for entry in parsed:
            entry.verify()
    except EntryRefused:
        return False
    return True


def _proof(raw: Any) -> Any:
    """The fraud proof of a request body (400 BadProof), whose entry fits a leaf (413)."""
    from ..errors import FraudProofError
    from ..fraud import FraudProof

    try:
        proof = FraudProof.parse(raw)
    except FraudProofError as exc:
        raise LedgerRefused(f"the body is not a fraud proof: {exc.message}", exc.hint or
                            "send one fraud proof as cod fraud writes it (SPEC.md 11, 12.10)",
                            status=400, error="BadProof") from None
    FraudDesk.fits(proof)
    return proof


def app(ledger: Ledger, on_append: AppendHook | None = None, limiter: Limiter | None = None,
        desk: FraudDesk | None = None) -> web.Application:
    """The service of ``ledger``; ``on_append`` runs after each append that grew the log;
    ``limiter`` holds the write rate limits (default: :class:`~cod.ledger.rates.WriteLimits`);
    ``desk`` checks posted fraud proofs (default: a FraudDesk with its default bounds)."""
    application = web.Application(middlewares=[errors], client_max_size=MAX_BLESS_BODY)
    routes = web.RouteTableDef()
    limits = limiter if limiter is not None else Limiter()
    frauds = desk if desk is not None else FraudDesk(ledger)

    def anonymous(request: web.Request) -> Ticket:
        """Charge a write to the poster's address and to all anonymous writes (429 if either is spent)."""
        return limits.take([address_of(request.remote), (ANONYMOUS, "")])

    async def governed(request: web.Request, kind: str, body: Any, fn: Callable[[], Any]) -> Any:
        """Write a governance post: one naming current governors is charged to its address's
        governance bucket, handed back once appended with good signatures; any other is anonymous."""
        parsed = await asyncio.to_thread(_governor, ledger, kind, body)  # 16 MiB of bless batches: not on the loop
        if parsed is not None:
            ticket = limits.take([(GOVERNANCE, address_of(request.remote)[1])])  # before any signature check
            if await asyncio.to_thread(_verifies, parsed):
                result = await write(fn)  # refused (a replay, a stale decision): the token stays spent
                limits.refund(ticket, [GOVERNANCE])
                return result
        anonymous(request)  # a forged governor's signature costs both
        return await write(fn)

    async def write(fn: Callable[[], Any]) -> Any:
        before = ledger.size
        result = await asyncio.to_thread(fn)
        if ledger.size != before and on_append is not None:
            on_append()
        return result

    async def read(fn: Callable[[], Any]) -> Any:
        return await asyncio.to_thread(fn)

    @routes.get("/v1/info")
    async def info(request: web.Request) -> web.Response:
        return web.json_response({**await read(ledger.info), "witnesses": application.get(WITNESSES, []),
                                  "write_limits": limits.limits.published()})

    @routes.get("/v1/openapi.json")
    async def spec(request: web.Request) -> web.Response:
        return web.json_response(openapi.DOCUMENT)

    @routes.get("/v1/inputs/{cid}")
    async def input_(request: web.Request) -> web.Response:
        cid = _cid(request.match_info["cid"])
        return web.json_response(await read(lambda: ledger.input(cid)))

    @routes.post("/v1/blessings")
    async def bless(request: web.Request) -> web.Response:
        raw = await _body(request, MAX_BLESS_BODY)

        def bless_all() -> list[int]:
            body = _object(raw, "batches")
            batches = body.get("batches")
            if not isinstance(batches, list) or not batches:
                raise LedgerRefused("'batches' must be a non-empty list of signed bless batches",
                                    "cod ledger bless import signs and sends them", status=400, error="BadRequest")
            return ledger.bless(batches)

        indexes = await governed(request, BLESS, raw, bless_all)
        return web.json_response({"entries": indexes, "size": ledger.size}, status=201)

    @routes.post("/v1/evidence")
    async def evidence(request: web.Request) -> web.Response:
        anonymous(request)
        body = _object(await _body(request), "spec", "statements")
        if "spec" not in body or "statements" not in body:
            raise LedgerRefused("the body needs 'spec' and 'statements'", "send {\"spec\": ..., \"statements\": [...]}",
                                status=400, error="BadRequest")
        poster = f"address {request.remote}"
        index, judgement, new = await write(lambda: ledger.report_evidence(body["spec"], body["statements"], poster))
        return web.json_response({"job": judgement.job, "entry": index, "eligible": judgement.eligible,
                                  "reason": judgement.reason, "result": judgement.result,
                                  "nodes": list(judgement.nodes), "new": new}, status=201 if new else 200)

    @routes.post("/v1/refusals")
    async def refusal(request: web.Request) -> web.Response:
        ticket = anonymous(request)
        signed = await _body(request)
        limits.take([(KEY, parse_signed(signed, REFUSAL).signer)], ticket)  # a malformed refusal: 400 here
        try:
            index = await write(lambda: ledger.refusal(signed))
        except BaseException:
            limits.refund(ticket, [KEY])  # not appended: the key named (perhaps forged) is not charged
            raise
        return web.json_response({"entry": index}, status=201)

    @routes.post("/v1/fraud-proofs")
    async def fraud_proof(request: web.Request) -> web.Response:
        ticket = anonymous(request)
        limits.take([(FRAUD, address_of(request.remote)[1])], ticket)  # each proof may cost a re-execution
        proof = await asyncio.to_thread(_proof, await _body(request))
        known = await read(lambda: ledger.fraud_of(proof.claim.to_json()))
        if known is None:
            limits.take([(LIAR, proof.liar)], ticket)
            record, new = await frauds.submit(proof)
        else:
            record, new = known, False
        if new and on_append is not None:
            on_append()
        return web.json_response({"proof_id": record.proof_id, "index": record.entry,
                                  "status": "recorded" if new else "known"})

    @routes.get("/v1/jobs/{cid}")
    async def job(request: web.Request) -> web.Response:
        cid = _cid(request.match_info["cid"])
        answer = await read(lambda: ledger.job(cid))
        if answer["eligibility"] is None:
            raise NotFound(f"the ledger has no evidence for job {cid}",
                           "report it: cod run --verify N --ledger URL, or a scanned node")
        return web.json_response(answer)

    @routes.get("/v1/moderation/queue")
    async def queue(request: web.Request) -> web.Response:
        cursor = _int(request, "cursor", -1)
        limit = _int(request, "limit", DEFAULT_QUEUE_PAGE)
        assert cursor is not None and limit is not None
        if not 1 <= limit <= MAX_QUEUE_PAGE:
            raise LedgerRefused(f"limit={limit} is not from 1 to {MAX_QUEUE_PAGE}", "page with cursor= and limit=",
                                status=400, error="BadRequest")
        jobs = await read(lambda: ledger.queue(cursor, limit))
        more = len(jobs) == limit
        return web.json_response({"jobs": jobs, "next": jobs[-1]["entry"] if more else None})

    @routes.post("/v1/decisions")
    async def decide(request: web.Request) -> web.Response:
        signed = await _body(request)
        return web.json_response({"entry": await governed(request, DECISION, signed, lambda: ledger.decide(signed))},
                                 status=201)

    @routes.get("/v1/moderators")
    async def moderators(request: web.Request) -> web.Response:
        return web.json_response({"moderators": await read(ledger.moderators),
                                  "proposals": await read(ledger.proposals)})

    @routes.post("/v1/moderators/proposals")
    async def propose(request: web.Request) -> web.Response:
        signed = await _body(request)
        index, pid = await governed(request, PROPOSAL, signed, lambda: ledger.propose(signed))
        in_effect = (await read(lambda: ledger.proposal(pid)))["in_effect"]
        return web.json_response({"entry": index, "proposal_id": pid, "in_effect": in_effect}, status=201)

    @routes.post("/v1/moderators/proposals/{pid}/approvals")
    async def approve(request: web.Request) -> web.Response:
        pid = request.match_info["pid"]
        raw = await _body(request)

        def approve_it() -> tuple[int, bool]:
            signed = _object(raw)
            statement = signed.get("statement")
            if not isinstance(statement, dict) or statement.get("proposal") != pid:
                raise LedgerRefused(f"the approval does not name proposal {pid[:80]}",
                                    "sign an approval of the proposal in the URL", status=400, error="BadRequest")
            return ledger.approve(signed)

        index, in_effect = await governed(request, APPROVAL, raw, approve_it)
        return web.json_response({"entry": index, "proposal_id": pid, "in_effect": in_effect}, status=201)

    @routes.get("/v1/results/{cid}")
    async def result(request: web.Request) -> web.Response:
        cid = _cid(request.match_info["cid"])
        return web.json_response(await read(lambda: ledger.result(cid)))

    @routes.get("/v1/proof/inclusion")
    async def inclusion(request: web.Request) -> web.Response:
        index = _int(request, "index")
        if index is None:
            raise LedgerRefused("give index=LEAF", "GET /v1/proof/inclusion?index=I[&size=S]", status=400,
                                error="BadRequest")
        size = _int(request, "size")
        return web.json_response(await read(lambda: ledger.inclusion(index, size)))

    @routes.get("/v1/proof/consistency")
    async def consistency(request: web.Request) -> web.Response:
        old = _int(request, "old")
        if old is None:
            raise LedgerRefused("give old=SIZE", "GET /v1/proof/consistency?old=A[&new=B]", status=400,
                                error="BadRequest")
        new = _int(request, "new")
        return web.json_response(await read(lambda: ledger.consistency(old, new)))

    # -- C2SP tlog-tiles: what a static mirror serves -------------------------------------------
    @routes.get("/checkpoint")
    async def checkpoint(request: web.Request) -> web.Response:
        note = await read(ledger.checkpoint)
        return web.Response(text=note, content_type="text/plain", charset="utf-8",
                            headers={"Cache-Control": MUTABLE})

    @routes.get("/tile/{path:.+}")
    async def tile(request: web.Request) -> web.Response:
        path = "tile/" + request.match_info["path"]
        size = ledger.size
        try:
            if path.startswith("tile/entries/"):
                index, width = tiles.parse_entries_path(path)
                if not tiles.covered(0, index, width, size):
                    raise tiles.TileError("not covered")
                start = index * tiles.TILE_WIDTH
                data = tiles.bundle(await read(lambda: ledger.entries(start, start + width)))
            else:
                level, index, width = tiles.parse_tile_path(path)
                if not tiles.covered(level, index, width, size):
                    raise tiles.TileError("not covered")
                data = await read(lambda: tiles.tile_bytes(level, index, width, ledger.read_hashes))
        except tiles.TileError:
            raise NotFound(f"no tile {path[:200]} in the tree of size {size}",
                           "C2SP tlog-tiles: read /checkpoint first; a partial tile is named .p/WIDTH") from None
        cache = IMMUTABLE if width == tiles.TILE_WIDTH else MUTABLE
        return web.Response(body=data, content_type="application/octet-stream", headers={"Cache-Control": cache})

    application.add_routes(routes)
    return application


__all__ = ["app", "error_body", "errors"]
