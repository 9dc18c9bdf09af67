"""What a node may answer: every JSON body a requester reads is checked here before use.

A node is untrusted. Its answers are parsed with a size cap and checked field by field
(types, sizes, formats of CIDs and node IDs); anything else is a NodeError naming the node,
the field and what was wrong, so a hostile node is dropped with a reason and never reaches
the records, the terminal or a comparison with a value of the wrong type. Text a node sends
that may be shown to the user is cleaned of control characters (no terminal escapes).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, NoReturn

from cod.content.cid import CID
from cod.errors import CodError, NodeError
from cod.identity import public_key_of
from cod.limits import MAX_JOB_CIDS
from cod.text import printable

MAX_JSON_BYTES = 2 << 20
"""Largest JSON body read from a node. The biggest honest answer is a job record: its spec
(a node refuses request bodies over 1 MiB, so a spec is smaller) plus a statement of a few
hundred bytes."""

MAX_TEXT_CHARS = 500  # node-supplied text shown to the user (error messages, reasons)
MAX_ID_CHARS = 128  # profiles, trap names, capability names, error names
MAX_CID_CHARS = 128  # a CIDv1 sha2-256 in base32 has 59 (raw/dag-pb) to 61 characters
MAX_INT = (1 << 63) - 1
MAX_EXIT_CODE = (1 << 32) - 1
MAX_RETRY_AFTER = 3600.0
JOB_STATES = ("preparing", "queued", "running", "done", "failed")  # preparing: fetching its inputs (SPEC 9.6)
_IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+:/-]*\Z")


def clean(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """Node-supplied text made safe to print: control characters replaced, length capped."""
    return printable(text, limit)


def parse_json(node: str, what: str, data: bytes) -> Any:
    """Decode a node's JSON body (already read under MAX_JSON_BYTES); NodeError if it is not JSON."""
    try:
        return json.loads(data) if data else None
    except (ValueError, RecursionError) as exc:  # RecursionError: a body of deeply nested arrays
        raise NodeError(f"node {node} answered {what} with a body that is not JSON: {clean(str(exc), 100)}") from None


class _Fields:
    """Field checks for one JSON object of one node's answer; each failure is a NodeError."""

    def __init__(self, node: str, what: str, body: Any) -> None:
        self.node, self.what = node, what
        if not isinstance(body, dict):
            self.fail("", f"is {type(body).__name__}, not an object")
        self.body: dict[str, Any] = body

    def fail(self, name: str, problem: str) -> NoReturn:
        where = f" field {name!r}" if name else ""
        raise NodeError(f"node {self.node} sent a malformed {self.what}:{where} {problem}",
                        "the node is dropped; report it to its operator")

    def text(self, name: str, limit: int, *, optional: bool = False, pattern: re.Pattern[str] | None = None
             ) -> str | None:
        value = self.body.get(name)
        if value is None and optional:
            return None
        if not isinstance(value, str):
            self.fail(name, f"is {type(value).__name__}, not a string")
        if len(value) > limit:
            self.fail(name, f"is longer than {limit} characters")
        if pattern is not None and not pattern.match(value):
            self.fail(name, f"{clean(value, 80)!r} is not a valid identifier")
        return str(value)

    def integer(self, name: str, low: int, high: int, *, optional: bool = False) -> int | None:
        value = self.body.get(name)
        if value is None and optional:
            return None
        if type(value) is not int:  # bool is an int subclass: refused too
            self.fail(name, f"is {type(value).__name__}, not an integer")
        if not low <= value <= high:
            self.fail(name, f"{value} is outside [{low}, {high}]")
        return int(value)

    def cid(self, name: str, *, optional: bool = False) -> str | None:
        value = self.text(name, MAX_CID_CHARS, optional=optional)
        if value is None:
            return None
        canonical: str | None
        try:
            canonical = str(CID.parse(value))
        except CodError:
            canonical = None  # never equal to the text, not even to an empty one
        if canonical != value:  # only the canonical text form: no upper case, no other base
            self.fail(name, f"{clean(value, 80)!r} is not a CIDv1 in base32")
        return value

    def node_id(self, name: str) -> str:
        value = self.text(name, MAX_ID_CHARS)
        assert value is not None
        try:
            public_key_of(value)
        except CodError:
            self.fail(name, f"{clean(value, 80)!r} is not an Ed25519 node ID")
        return value

    def obj(self, name: str, *, optional: bool = False) -> dict[str, Any] | None:
        value = self.body.get(name)
        if value is None and optional:
            return None
        if not isinstance(value, dict):
            self.fail(name, f"is {type(value).__name__}, not an object")
        return dict(value)


@dataclass(frozen=True)
class NodeInfo:
    """The parts of ``GET /v1/info`` a requester uses."""

    node_id: str
    profile: str
    capabilities: tuple[str, ...]


def node_info(node: str, body: Any) -> NodeInfo:
    """Check an info answer: node ID, its public key if given, capabilities and profile."""
    fields = _Fields(node, "info", body)
    node_id = fields.node_id("node_id")
    key = fields.text("public_key", 64, optional=True)
    if key is not None and key != public_key_of(node_id).hex():
        fields.fail("public_key", "is not the key inside node_id")
    capabilities = body.get("capabilities")
    if (not isinstance(capabilities, list) or len(capabilities) > 16
            or not all(isinstance(c, str) and len(c) <= MAX_ID_CHARS for c in capabilities)):
        fields.fail("capabilities", "is not a list of at most 16 short strings")
    profile = fields.text("profile", MAX_ID_CHARS, pattern=_IDENT)
    assert profile is not None
    return NodeInfo(node_id, profile, tuple(capabilities))


def job_record(node: str, body: Any, job_cid: str) -> dict[str, Any]:
    """Check a job record (``POST /v1/jobs``, ``GET /v1/jobs/{cid}``) for ``job_cid``.

    Returns the record with every field the requester reads in its checked type; the
    statement is checked by ``statement`` (its signature by the caller).
    """
    fields = _Fields(node, "job record", body)
    if fields.text("job_cid", MAX_CID_CHARS) != job_cid:
        fields.fail("job_cid", f"answers another job than {job_cid}")
    state = fields.text("state", 16)
    if state not in JOB_STATES:
        fields.fail("state", f"{clean(str(state), 40)!r} is not one of {', '.join(JOB_STATES)}")
    record: dict[str, Any] = {"job_cid": job_cid, "state": state}
    if state == "done":
        record["result_cid"] = fields.cid("result_cid")
        record["statement"] = statement(node, fields.obj("statement"))
    elif state == "failed":
        error = fields.obj("error", optional=True) or {}
        record["error"] = error_body(node, error)
    return record


def statement(node: str, body: Any) -> dict[str, Any]:
    """Check the shape of a signed statement (section 10): member types and formats.

    The signature and its binding to job and node are checked by ``SignedStatement``.
    """
    outer = _Fields(node, "signed statement", body)
    if set(outer.body) != {"statement", "signature"}:
        outer.fail("", "must have exactly the members 'statement' and 'signature'")
    outer.text("signature", 128)
    inner = _Fields(node, "statement", outer.obj("statement"))
    members = {"type", "job", "result", "node", "profile", "exit_code", "trap", "fuel_used"}
    if set(inner.body) != members:
        inner.fail("", f"must have exactly the members {', '.join(sorted(members))}")
    inner.text("type", MAX_ID_CHARS)
    inner.cid("job")
    inner.cid("result")
    inner.node_id("node")
    inner.text("profile", MAX_ID_CHARS, pattern=_IDENT)
    inner.integer("exit_code", 0, MAX_EXIT_CODE)
    inner.text("trap", MAX_ID_CHARS, optional=True, pattern=_IDENT)
    inner.integer("fuel_used", 0, MAX_INT)
    return {"statement": inner.body, "signature": outer.body["signature"]}


def error_body(node: str, body: Any) -> dict[str, str]:
    """An error body ``{"error", "message", "hint"}`` reduced to clean, short text (never raises)."""
    if not isinstance(body, dict):
        return {"error": "", "message": ""}
    out = {}
    for name in ("error", "message", "hint"):
        value = body.get(name)
        if isinstance(value, str):
            out[name] = clean(value, MAX_ID_CHARS if name == "error" else MAX_TEXT_CHARS)
    return {"error": out.get("error", ""), "message": out.get("message", ""), **(
        {"hint": out["hint"]} if "hint" in out else {})}


def missing_blobs(node: str, body: Any) -> list[str]:
    """The CIDs of a 409 MissingBlobs answer: a non-empty list of at most MAX_JOB_CIDS CIDs
    (every CID one job can name, SPEC 9.5)."""
    fields = _Fields(node, "MissingBlobs answer", body)
    missing = body.get("missing")
    if not isinstance(missing, list) or not 0 < len(missing) <= MAX_JOB_CIDS:
        fields.fail("missing", f"is not a list of 1 to {MAX_JOB_CIDS} CIDs")
    probe = _Fields(node, "MissingBlobs answer", {str(i): c for i, c in enumerate(missing)})
    return [str(probe.cid(str(i))) for i in range(len(missing))]


def retry_after(node: str, header: str | None) -> float:
    """Seconds to wait from a 429's Retry-After (delta-seconds); 1 when absent."""
    if header is None:
        return 1.0
    try:
        value = float(header)
    except ValueError:
        raise NodeError(f"node {node} sent Retry-After {clean(header, 40)!r}, not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise NodeError(f"node {node} sent Retry-After {clean(header, 40)!r}, not a number of seconds")
    return min(value, MAX_RETRY_AFTER)
