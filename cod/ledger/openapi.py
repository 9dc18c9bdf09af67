"""The OpenAPI 3.1 document of the ledger's HTTP API, served at /v1/openapi.json (SPEC.md 12.7)."""

from __future__ import annotations

from typing import Any

ERROR = {"$ref": "#/components/schemas/Error"}
RATE_LIMITED = {"$ref": "#/components/schemas/RateLimited"}


def _op(summary: str, ok: str, *errors: int, body: str | None = None, params: list[dict[str, Any]] | None = None,
        created: bool = False, content: str = "application/json") -> dict[str, Any]:
    responses: dict[str, Any] = {("201" if created else "200"): {"description": ok, "content": {content: {}}}}
    for status in errors:
        responses[str(status)] = {"description": "refused; nothing stored",
                                  "content": {"application/json": {"schema": ERROR}}}
        if status == 429:
            responses["429"] = {"description": "a write rate limit is spent (SPEC.md 12.7); nothing stored",
                                "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
                                "content": {"application/json": {"schema": RATE_LIMITED}}}
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if body:
        op["requestBody"] = {"required": True, "description": body, "content": {"application/json": {}}}
    if params:
        op["parameters"] = params
    return op


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, required: bool) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": {"type": "integer", "minimum": 0}}


SIGNED = "a signed statement {\"statement\": {...}, \"signature\": base64} (SPEC.md 12.4)"

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "cod FIL+ moderation ledger", "version": "1",
             "description": "An append-only transparency log (RFC 9162, C2SP tlog-checkpoint and tlog-tiles) "
                            "of blessed inputs, eligibility, moderator decisions and governance. SPEC.md 12."},
    "paths": {
        "/v1/info": {"get": _op("origin, log vkey, size, root keys, threshold, moderators, witnesses, "
                                     "write_limits", "the facts")},
        "/v1/openapi.json": {"get": _op("this document", "OpenAPI 3.1")},
        "/v1/inputs/{cid}": {"get": _op("whether a CID is blessed FIL+ data, and by which deals", "the answer", 400,
                                        params=[_path("cid")])},
        "/v1/blessings": {"post": _op("append signed bless batches (a moderator's)", "entries appended",
                                      400, 403, 409, 413, 422, 429, body="{\"batches\": [signed bless batch, ...]}",
                                      created=True)},
        "/v1/evidence": {"post": _op("report a job's spec and its nodes' signed statements", "the judgement "
                                     "(201 new entry, 200 the existing one)", 400, 413, 422, 429,
                                     body="{\"spec\": {...}, \"statements\": [signed result statement, ...]}",
                                     created=True)},
        "/v1/refusals": {"post": _op("append a node's signed refusal", "entry appended", 400, 409, 422, 429,
                                     body=SIGNED, created=True)},
        "/v1/fraud-proofs": {"post": _op("post a fraud proof; the ledger re-executes the job and records a proven "
                                         "lie (SPEC.md 12.10)", "recorded or known: {\"proof_id\", \"index\", "
                                         "\"status\"}", 400, 413, 422, 429, body="a fraud proof (cod/fraud-proof/v1)")},
        "/v1/jobs/{cid}": {"get": _op("a job's eligibility, evidence, decisions and state", "the job", 400, 404,
                                      params=[_path("cid")])},
        "/v1/moderation/queue": {"get": _op("eligible jobs waiting for a decision, one page", "the page", 400,
                                            params=[_query("cursor", False), _query("limit", False)])},
        "/v1/decisions": {"post": _op("append a moderator's signed decision", "entry appended",
                                      400, 403, 404, 409, 422, 429, body=SIGNED, created=True)},
        "/v1/moderators": {"get": _op("the moderator set and the proposals, each with its signed statement",
                                      "moderators and proposals")},
        "/v1/moderators/proposals": {"post": _op("a root key holder's signed proposal", "proposal appended",
                                                 400, 403, 409, 422, 429, body=SIGNED, created=True)},
        "/v1/moderators/proposals/{proposal_id}/approvals": {
            "post": _op("a root key holder's signed approval", "approval appended", 400, 403, 404, 409, 422, 429,
                        body=SIGNED, created=True, params=[_path("proposal_id")])},
        "/v1/results/{cid}": {"get": _op("the notary's query: approved or not, the job, the nodes, the DataCap, "
                                         "the decision and its inclusion proof", "the answer", 400, 404,
                                         params=[_path("cid")])},
        "/v1/proof/inclusion": {"get": _op("inclusion proof of a leaf", "the proof", 400,
                                           params=[_query("index", True), _query("size", False)])},
        "/v1/proof/consistency": {"get": _op("consistency proof between two sizes", "the proof", 400,
                                             params=[_query("old", True), _query("new", False)])},
        "/checkpoint": {"get": _op("the latest checkpoint (C2SP signed note) with cosignatures", "the note",
                                   content="text/plain")},
        "/tile/{level}/{index}": {"get": _op("a hash tile (C2SP tlog-tiles; index in x001/x234/067 form, "
                                             "partial tiles as .p/WIDTH)", "the tile", 404,
                                             params=[_path("level"), _path("index")],
                                             content="application/octet-stream")},
        "/tile/entries/{index}": {"get": _op("an entry bundle (C2SP tlog-tiles)", "the bundle", 404,
                                             params=[_path("index")], content="application/octet-stream")},
    },
    "components": {"schemas": {"Error": {
        "type": "object", "required": ["error", "message", "hint"],
        "properties": {"error": {"type": "string"}, "message": {"type": "string"}, "hint": {"type": "string"}}},
        "RateLimited": {
            "type": "object", "required": ["error", "message", "hint", "limit", "retry_after"],
            "properties": {"error": {"const": "RateLimited"}, "message": {"type": "string"},
                           "hint": {"type": "string"},
                           "limit": {"enum": ["address", "governance", "key", "anonymous"]},
                           "retry_after": {"type": "integer", "minimum": 1}}}}},
}
