"""The ledger's entries (leaves): their types, canonical bytes, strict parsing and signatures.

Every leaf is the canonical JSON (``cod.jobspec.canonical_json``) of one object whose "type"
names its kind (SPEC.md 12.4). Signed kinds are ``{"type", "statement", "signature"}``: the
signature (base64, 64 bytes) is Ed25519 by the key whose peer ID the statement names, over the
canonical JSON of "statement". Parsing is strict: unknown or missing fields, wrong types (a bool
is not an int), oversize or non-canonical values are refused with ``EntryRefused`` (a
``LedgerRefused``) carrying the HTTP status and error name the service answers.

The statements of a ledger's moderators and root key holders (bless, decision, proposal,
approval) name the ledger: their v2 kinds carry its ``origin``, so a statement signed for one
ledger is refused by every other (SPEC.md 12.4, "Versions"). Their v1 kinds, which name no
ledger, stay valid in a log that holds them (``OLD_KINDS``), but are never appended again.

The ``sign_*`` helpers make signed statements the way the CLI, the node and the tests do.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Mapping, Union

from ..content.cid import CID
from ..errors import BadSignature, CIDError, LedgerRefused
from ..identity import Identity, node_id_of, public_key_of, signature_valid
from ..jobspec import canonical_json

GENESIS = "cod/ledger/genesis/v1"
ELIGIBILITY = "cod/ledger/eligibility/v1"
BLESS = "cod/ledger/bless/v2"
DECISION = "cod/ledger/decision/v2"
PROPOSAL = "cod/ledger/proposal/v2"
APPROVAL = "cod/ledger/approval/v2"
REFUSAL = "cod/ledger/refusal/v1"        # a node's statement about a job, not about a ledger: no origin
FRAUD = "cod/ledger/fraud/v1"            # a checked fraud proof (the ledger's own entry; it carries the liar's statement)
AUDIT = "cod/ledger/audit/v1"            # the ledger's draw for an eligible entry, and its re-execution if drawn
AUDIT_DRAW = "cod/ledger/audit-draw/v1"  # what the log key signs to draw an audit (never a leaf)
BLESS_V1 = "cod/ledger/bless/v1"
DECISION_V1 = "cod/ledger/decision/v1"
PROPOSAL_V1 = "cod/ledger/proposal/v1"
APPROVAL_V1 = "cod/ledger/approval/v1"
OLD_KINDS = {BLESS_V1: BLESS, DECISION_V1: DECISION, PROPOSAL_V1: PROPOSAL, APPROVAL_V1: APPROVAL}
"""Kinds that name no ledger -> the kind that replaced them: replayed from a log, never appended again."""
KINDS = (GENESIS, BLESS, ELIGIBILITY, DECISION, PROPOSAL, APPROVAL, REFUSAL, FRAUD, AUDIT, *OLD_KINDS)
SIGNED_KINDS = (BLESS, DECISION, PROPOSAL, APPROVAL, REFUSAL, *OLD_KINDS)
SIGNER_FIELD = {BLESS: "signer", DECISION: "moderator", PROPOSAL: "proposer", APPROVAL: "approver", REFUSAL: "node",
                BLESS_V1: "signer", DECISION_V1: "moderator", PROPOSAL_V1: "proposer", APPROVAL_V1: "approver"}

MAX_LEAF_BYTES = 0xFFFF          # an entry bundle's 2-byte length prefix (C2SP tlog-tiles)
MAX_REASON_CHARS = 1000
MAX_ORIGIN_CHARS = 255
MAX_ID_CHARS = 64                # a 12D3KooW... peer ID has 52
MAX_CID_CHARS = 128              # a sha2-256 CIDv1 in base32 has 59 to 62
MAX_BLESS_INPUTS = 1000          # inputs of one bless batch (one leaf)
MAX_DEALS = 64                   # deals named per blessed input
MAX_DEAL_ID = 2**63 - 1
MAX_ROOT_KEYS = 64
MAX_REFUSAL_INPUTS = 256
MAX_DATACAP = 2**60
MAX_INDEX = 2**63 - 1
NONCE_HEX = 32
SIGNATURE_BYTES = 64
SOURCES = ("list", "lotus-state-market-deals")
ACTIONS = ("approve", "reject")
CHANGES = ("add", "remove")
POLICIES = ("fil-plus-only", "prefer-fil-plus")
OUTCOMES = ("agrees", "disagrees", "undecided")
MAX_AUDIT_RATE = 1_000_000       # an audit rate is in millionths: 1,000,000 audits every eligible entry


class EntryRefused(LedgerRefused):
    """An entry the ledger does not take: .status (HTTP) and .error (JSON "error") say why."""

    def __init__(self, status: int, error: str, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint, status=status, error=error)


def bad(message: str, hint: str = "send the fields SPEC.md 12.4 names, with their types") -> EntryRefused:
    """A malformed entry: 400 "BadEntry"."""
    return EntryRefused(400, "BadEntry", message, hint)


# --- field checks ----------------------------------------------------------------------------

def _fields(obj: Any, required: tuple[str, ...], where: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise bad(f"{where} is not a JSON object")
    missing = [k for k in required if k not in obj]
    if missing:
        raise bad(f"{where} lacks field {missing[0]!r}")
    unknown = sorted(k for k in obj if k not in required)
    if unknown:
        raise bad(f"{where} has unknown field {str(unknown[0])[:40]!r}")
    return obj


def check_int(value: Any, name: str, lo: int, hi: int) -> int:
    """An integer (never a bool) in [lo, hi]."""
    if type(value) is not int:
        raise bad(f"{name} is not an integer")
    if not lo <= value <= hi:
        raise bad(f"{name} = {value} is out of range {lo}..{hi}")
    return value


def check_bool(value: Any, name: str) -> bool:
    if type(value) is not bool:
        raise bad(f"{name} is not true or false")
    return value


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CACHE = 1 << 16   # CIDs and key IDs seen recently: parsing base32/base58 dominates an append otherwise


def check_text(value: Any, name: str, limit: int = MAX_REASON_CHARS) -> str:
    """Non-empty text of at most ``limit`` characters, no control characters, valid UTF-8."""
    if not isinstance(value, str):
        raise bad(f"{name} is not a string")
    if not value or len(value) > limit:
        raise bad(f"{name} must be 1 to {limit} characters")
    if _CONTROL.search(value):
        raise bad(f"{name} holds a control character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad(f"{name} holds a lone surrogate") from None
    return value


_B32 = re.compile("b[a-z2-7]{50,120}")
_SHA2_256_32 = b"\x12\x20"
_NONCE = re.compile(f"[0-9a-f]{{{NONCE_HEX}}}")
# RFC 4648 base32 (a-z, 2-7) to the digits int(..., 32) reads (0-9, a-v): decoding in C, not in base64.py
_TO_INT32 = str.maketrans("abcdefghijklmnopqrstuvwxyz234567", "0123456789abcdefghijklmnopqrstuv")


def _fast_cid(value: str) -> bool:
    """True when ``value`` is surely a canonical CIDv1 with a sha2-256 multihash (no allocation-heavy parse).

    Same decision as cod.content.cid.CID.parse + str() for the CIDs cod writes; anything else goes the slow way.
    """
    if not _B32.fullmatch(value):
        return False
    body = value[1:]
    bits = 5 * len(body)
    spare = bits % 8          # bits past the last whole byte: canonical text has fewer than 5, all zero
    number = int(body.translate(_TO_INT32), 32)
    if spare >= 5 or number & ((1 << spare) - 1):
        return False
    raw = (number >> spare).to_bytes(bits // 8, "big")
    if len(raw) < 3 or raw[0] != 1:
        return False
    pos = 1
    while pos < len(raw) and raw[pos] & 0x80:   # the codec varint
        pos += 1
    if pos >= len(raw) or (pos > 1 and raw[pos] == 0):   # cut, or not minimal (cod writes minimal varints)
        return False
    pos += 1
    return raw[pos:pos + 2] == _SHA2_256_32 and len(raw) == pos + 34


@functools.lru_cache(maxsize=_CACHE)
def _cid_problem(value: str) -> str:
    """Why ``value`` is not a canonical CID ("" when it is one)."""
    if _fast_cid(value):
        return ""
    try:
        canonical = str(CID.parse(value))
    except CIDError as exc:
        return exc.message
    return "" if canonical == value else f"{value!r} is not in canonical form (it is {canonical})"


def check_cid(value: Any, name: str) -> str:
    """A CIDv1 (base32, sha2-256) in its canonical text form."""
    if not isinstance(value, str) or len(value) > MAX_CID_CHARS:
        raise bad(f"{name} is not a CID")
    problem = _cid_problem(value)
    if problem:
        raise bad(f"{name}: {problem}")
    return value


@functools.lru_cache(maxsize=_CACHE)
def verify_key(value: str) -> bytes | None:
    """The Ed25519 public key of a canonical peer ID, or None."""
    try:
        key = public_key_of(value)
    except BadSignature:
        return None
    return key if node_id_of(key) == value else None


def check_id(value: Any, name: str) -> str:
    """An Ed25519 libp2p peer ID (12D3KooW...), exactly as cod.identity.node_id_of writes it."""
    if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS or verify_key(value) is None:
        raise bad(f"{name} {str(value)[:80]!r} is not an Ed25519 key ID (in canonical form)",
                  "key IDs are 12D3KooW... (cod keygen prints one)")
    return value


def check_nonce(value: Any, name: str = "nonce") -> str:
    if not isinstance(value, str) or not _NONCE.fullmatch(value):
        raise bad(f"{name} is not {NONCE_HEX} lowercase hex digits")
    return value


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise bad(f"{name} is not one of {', '.join(choices)}")
    return value


def check_signature(value: Any) -> bytes:
    """Base64 (standard alphabet, padded, canonical) of exactly 64 bytes."""
    if not isinstance(value, str) or len(value) > 100:
        raise bad("signature is not base64 of 64 bytes")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise bad("signature is not valid base64") from None
    if len(raw) != SIGNATURE_BYTES or base64.b64encode(raw).decode() != value:
        raise bad("signature is not the canonical base64 of 64 bytes")
    return raw


def check_sorted_distinct(values: list[Any], name: str) -> None:
    if any(a >= b for a, b in zip(values, values[1:])):
        raise bad(f"{name} must be sorted ascending with no repeats")


def _list(value: Any, name: str, lo: int, hi: int) -> list[Any]:
    if not isinstance(value, list):
        raise bad(f"{name} is not a list")
    if not lo <= len(value) <= hi:
        raise bad(f"{name} must hold {lo} to {hi} items")
    return value


# --- the entry kinds -------------------------------------------------------------------------

@dataclass(frozen=True)
class Genesis:
    origin: str
    log_key: str
    root_keys: tuple[str, ...]
    threshold: int

    def to_json(self) -> dict[str, Any]:
        return {"type": GENESIS, "origin": self.origin, "log_key": self.log_key,
                "root_keys": list(self.root_keys), "threshold": self.threshold}


@dataclass(frozen=True)
class BlessInput:
    cid: str
    deals: tuple[int, ...]


@dataclass(frozen=True)
class Bless:
    signer: str
    nonce: str
    source: str
    inputs: tuple[BlessInput, ...]
    origin: str | None          # None: a v1 batch, which names no ledger


@dataclass(frozen=True)
class Decision:
    job: str
    result: str
    action: str
    datacap: int
    reason: str
    moderator: str
    eligibility: int
    supersedes: int | None
    origin: str | None


@dataclass(frozen=True)
class Proposal:
    action: str
    moderator: str
    proposer: str
    nonce: str
    proposal_id: str
    origin: str | None


@dataclass(frozen=True)
class Approval:
    proposal: str
    approver: str
    origin: str | None


@dataclass(frozen=True)
class Refusal:
    node: str
    job: str
    policy: str
    inputs: tuple[str, ...]
    reason: str
    nonce: str


Body = Union[Bless, Decision, Proposal, Approval, Refusal]


@dataclass(frozen=True)
class Signed:
    """A signed entry: its kind, its statement (as JSON), the parsed body, the signer, the signature."""

    kind: str
    statement: dict[str, Any]
    body: Body
    signer: str
    signature: bytes

    @property
    def origin(self) -> str | None:
        """The ledger the statement names (None: a kind that names none, a refusal or a v1 kind)."""
        return None if isinstance(self.body, Refusal) else self.body.origin

    def to_json(self) -> dict[str, Any]:
        return {"type": self.kind, "statement": self.statement,
                "signature": base64.b64encode(self.signature).decode()}

    def verify(self) -> None:
        """Check the signature against the signer's key; raises EntryRefused 422 "BadSignature"."""
        key = verify_key(self.signer)
        if key is None or not signature_valid(key, canonical_json(self.statement), self.signature):  # SPEC 1
            raise EntryRefused(422, "BadSignature",
                               f"the {self.kind} statement's signature does not verify against {self.signer}",
                               "sign the canonical JSON of the statement with the key it names")


@dataclass(frozen=True)
class Eligibility:
    """The ledger's record of a judged job (not signed by the ledger; it carries the node statements)."""

    job: str
    spec: dict[str, Any]
    statements: tuple[dict[str, Any], ...]
    eligible: bool
    reason: str | None
    result: str | None
    nodes: tuple[str, ...]
    blessings: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"type": ELIGIBILITY, "job": self.job, "spec": self.spec, "statements": list(self.statements),
                "eligible": self.eligible, "reason": self.reason, "result": self.result,
                "nodes": list(self.nodes), "blessings": dict(sorted(self.blessings.items()))}


@dataclass(frozen=True)
class Fraud:
    """A fraud proof the ledger checked itself (SPEC.md 12.10): the proof and what it names.

    ``proof_id``, ``liar``, ``job`` and ``claimed`` are the proof's own (its ID, the claim's node,
    job and result); ``result`` is the result CID of the ledger's own re-execution (null when
    its check re-executed only a segment).
    """

    proof: dict[str, Any]
    proof_id: str
    liar: str
    job: str
    claimed: str
    result: str | None

    def to_json(self) -> dict[str, Any]:
        return {"type": FRAUD, "proof": self.proof, "proof_id": self.proof_id, "liar": self.liar, "job": self.job,
                "claimed": self.claimed, "result": self.result}


@dataclass(frozen=True)
class Audit:
    """The ledger's audit draw for an eligibility entry, and what its re-execution found (SPEC.md 12.10)."""

    job: str
    eligibility: int
    rate: int
    draw: bytes
    selected: bool
    outcome: str | None
    result: str | None
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        return {"type": AUDIT, "job": self.job, "eligibility": self.eligibility, "rate": self.rate,
                "draw": base64.b64encode(self.draw).decode(), "selected": self.selected, "outcome": self.outcome,
                "result": self.result, "reason": self.reason}


def draw_message(origin: str, eligibility: int, leaf_hash: str) -> bytes:
    """What the log key signs to draw an audit of eligibility entry ``eligibility``, whose leaf's
    SHA-256 is ``leaf_hash`` (lowercase hex)."""
    return canonical({"type": AUDIT_DRAW, "origin": origin, "eligibility": eligibility, "leaf_hash": leaf_hash})


def drawn(draw: bytes, rate: int) -> bool:
    """Whether a draw selects its entry at ``rate`` millionths: the first 8 bytes of SHA-256(draw),
    big-endian, times 10^6, are below rate * 2^64."""
    return int.from_bytes(hashlib.sha256(draw).digest()[:8], "big") * MAX_AUDIT_RATE < rate * 2**64


Entry = Union[Genesis, Signed, Eligibility, Fraud, Audit]


def check_origin(value: Any) -> str:
    """A log's origin: 1 to 255 characters, no control character, white space or '+' (a signed-note key name)."""
    origin = check_text(value, "origin", MAX_ORIGIN_CHARS)
    if any(c.isspace() or c == "+" for c in origin):
        raise bad("origin holds white space or '+'", "a log's origin is a key name (C2SP signed-note)")
    return origin


def _parse_genesis(obj: Any) -> Genesis:
    o = _fields(obj, ("type", "origin", "log_key", "root_keys", "threshold"), "the genesis entry")
    origin = check_origin(o["origin"])
    log_key = check_text(o["log_key"], "log_key", 400)
    keys = _list(o["root_keys"], "root_keys", 1, MAX_ROOT_KEYS)
    for n, key in enumerate(keys):
        check_id(key, f"root_keys[{n}]")
    check_sorted_distinct(keys, "root_keys")
    threshold = check_int(o["threshold"], "threshold", 1, len(keys))
    return Genesis(origin, log_key, tuple(keys), threshold)


def _origin_of(s: Mapping[str, Any]) -> str | None:
    """The statement's origin (a v2 kind), or None for a v1 kind (whose fields list no origin)."""
    return check_origin(s["origin"]) if s["type"] not in OLD_KINDS else None


def _with_origin(s: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str, ...]:
    """The fields of a statement: the v1 fields, and "origin" (last) for the v2 kind."""
    return names if s.get("type") in OLD_KINDS else names + ("origin",)


def _parse_bless(s: Mapping[str, Any]) -> Bless:
    _fields(s, _with_origin(s, ("type", "signer", "nonce", "source", "inputs")), "the bless statement")
    items = _list(s["inputs"], "inputs", 1, MAX_BLESS_INPUTS)
    inputs = []
    for n, item in enumerate(items):
        _fields(item, ("cid", "deals"), f"inputs[{n}]")
        cid = check_cid(item["cid"], f"inputs[{n}].cid")
        deals = _list(item["deals"], f"inputs[{n}].deals", 0, MAX_DEALS)
        for k, deal in enumerate(deals):
            check_int(deal, f"inputs[{n}].deals[{k}]", 0, MAX_DEAL_ID)
        check_sorted_distinct(deals, f"inputs[{n}].deals")
        inputs.append(BlessInput(cid, tuple(deals)))
    check_sorted_distinct([i.cid for i in inputs], "inputs (by cid)")
    return Bless(check_id(s["signer"], "signer"), check_nonce(s["nonce"]),
                 check_choice(s["source"], "source", SOURCES), tuple(inputs), _origin_of(s))


def _parse_decision(s: Mapping[str, Any]) -> Decision:
    _fields(s, _with_origin(s, ("type", "job", "result", "action", "datacap", "reason", "moderator", "eligibility",
                                "supersedes")), "the decision statement")
    action = check_choice(s["action"], "action", ACTIONS)
    datacap = s["datacap"]
    if type(datacap) is not int or (action == "approve" and not 1 <= datacap <= MAX_DATACAP) or (
            action == "reject" and datacap != 0):
        raise EntryRefused(422, "BadDatacap",
                           f"datacap {str(datacap)[:40]} is not valid for {action}",
                           f"an approval awards 1 to 2^60 bytes ({MAX_DATACAP}); a rejection 0")
    supersedes = s["supersedes"]
    if supersedes is not None:
        check_int(supersedes, "supersedes", 1, MAX_INDEX)
    return Decision(check_cid(s["job"], "job"), check_cid(s["result"], "result"), action, datacap,
                    check_text(s["reason"], "reason"), check_id(s["moderator"], "moderator"),
                    check_int(s["eligibility"], "eligibility", 1, MAX_INDEX), supersedes, _origin_of(s))


def _parse_proposal(s: Mapping[str, Any]) -> Proposal:
    _fields(s, _with_origin(s, ("type", "action", "moderator", "proposer", "nonce")), "the proposal statement")
    return Proposal(check_choice(s["action"], "action", CHANGES), check_id(s["moderator"], "moderator"),
                    check_id(s["proposer"], "proposer"), check_nonce(s["nonce"]), proposal_id_of(dict(s)),
                    _origin_of(s))


def _parse_approval(s: Mapping[str, Any]) -> Approval:
    _fields(s, _with_origin(s, ("type", "proposal", "approver")), "the approval statement")
    proposal = s["proposal"]
    if not isinstance(proposal, str) or len(proposal) != 64 or any(c not in "0123456789abcdef" for c in proposal):
        raise bad("proposal is not a proposal ID (64 lowercase hex digits)")
    return Approval(proposal, check_id(s["approver"], "approver"), _origin_of(s))


def _parse_refusal(s: Mapping[str, Any]) -> Refusal:
    _fields(s, ("type", "node", "job", "policy", "inputs", "reason", "nonce"), "the refusal statement")
    inputs = _list(s["inputs"], "inputs", 0, MAX_REFUSAL_INPUTS)
    for n, cid in enumerate(inputs):
        check_cid(cid, f"inputs[{n}]")
    check_sorted_distinct(inputs, "inputs")
    return Refusal(check_id(s["node"], "node"), check_cid(s["job"], "job"),
                   check_choice(s["policy"], "policy", POLICIES), tuple(inputs), check_text(s["reason"], "reason"),
                   check_nonce(s["nonce"]))


_PARSERS: dict[str, Callable[[Mapping[str, Any]], Body]] = {
    BLESS: _parse_bless, DECISION: _parse_decision, PROPOSAL: _parse_proposal, APPROVAL: _parse_approval,
    REFUSAL: _parse_refusal, BLESS_V1: _parse_bless, DECISION_V1: _parse_decision, PROPOSAL_V1: _parse_proposal,
    APPROVAL_V1: _parse_approval}


def current_kind(kind: str) -> str:
    """The kind that ``kind`` is a version of, as appended today (``kind`` itself unless it is old)."""
    return OLD_KINDS.get(kind, kind)


def parse_signed(obj: Any, kind: str | None = None) -> Signed:
    """A signed entry as received (``{"type","statement","signature"}``), checked field by field.

    ``kind``, when given, is the only kind accepted, with its old versions (the state machine
    refuses those in a new append: ``check_new``). The signature is decoded, not verified
    (``Signed.verify``). Raises EntryRefused 400 "BadEntry" naming the first problem.
    """
    o = _fields(obj, ("type", "statement", "signature"), "the signed entry")
    entry_kind = o["type"]
    if entry_kind not in SIGNED_KINDS or (kind is not None and current_kind(entry_kind) != kind):
        want = kind or ", ".join(SIGNED_KINDS)
        raise bad(f"type {str(entry_kind)[:60]!r} is not {want}")
    statement = o["statement"]
    if not isinstance(statement, dict) or statement.get("type") != entry_kind:
        raise bad(f"the statement's type is not {entry_kind}")
    body = _PARSERS[entry_kind](statement)
    signer = str(statement[SIGNER_FIELD[entry_kind]])
    return Signed(entry_kind, statement, body, signer, check_signature(o["signature"]))


def check_new(entry: Signed, origin: str) -> None:
    """Refuse a signed entry that a ledger of ``origin`` must not append today (SPEC.md 12.4, "Versions").

    422 "OldKind" for a kind that names no ledger (v1; only replayed from a log that holds it),
    422 "WrongLedger" for a statement that names another ledger's origin.
    """
    if entry.kind in OLD_KINDS:
        raise EntryRefused(422, "OldKind", f"{entry.kind} statements name no ledger and are no longer appended",
                           f"sign a {OLD_KINDS[entry.kind]} statement, whose \"origin\" is this ledger's "
                           f"({origin}): an up-to-date cod signs those")
    check_origin_is(entry, origin)


def check_origin_is(entry: Signed, origin: str) -> None:
    """Refuse (422 "WrongLedger") a statement naming a ledger other than ``origin``; v1 kinds name none."""
    named = entry.origin
    if named is not None and named != origin:
        raise EntryRefused(422, "WrongLedger", f"the {entry.kind} statement was signed for the ledger "
                           f"{named[:MAX_ORIGIN_CHARS]!r}, not for this one ({origin!r})",
                           "a statement counts only on the ledger it names: sign one for this ledger's origin "
                           "(GET /v1/info)")


def _parse_eligibility(obj: Any) -> Eligibility:
    o = _fields(obj, ("type", "job", "spec", "statements", "eligible", "reason", "result", "nodes", "blessings"),
                "the eligibility entry")
    if not isinstance(o["spec"], dict):
        raise bad("spec is not a JSON object")
    statements = _list(o["statements"], "statements", 0, 10_000)
    if not all(isinstance(s, dict) for s in statements):
        raise bad("statements holds something that is not an object")
    reason = o["reason"]
    if reason is not None:
        check_text(reason, "reason")
    result = o["result"]
    if result is not None:
        check_cid(result, "result")
    nodes = _list(o["nodes"], "nodes", 0, 10_000)
    for n, node in enumerate(nodes):
        check_id(node, f"nodes[{n}]")
    blessings = o["blessings"]
    if not isinstance(blessings, dict):
        raise bad("blessings is not an object")
    for cid, index in blessings.items():
        check_cid(cid, "blessings key")
        check_int(index, f"blessings[{cid}]", 1, MAX_INDEX)
    return Eligibility(check_cid(o["job"], "job"), o["spec"], tuple(statements), check_bool(o["eligible"], "eligible"),
                       reason, result, tuple(nodes), dict(blessings))


def _parse_fraud(obj: Any) -> Fraud:
    from ..errors import CodError
    from ..fraud import FraudProof  # its parse checks the claim's signature too (a proof is self-contained)

    o = _fields(obj, ("type", "proof", "proof_id", "liar", "job", "claimed", "result"), "the fraud entry")
    try:
        proof = FraudProof.parse(o["proof"])
    except CodError as exc:
        raise bad(f"proof is not a fraud proof: {exc.message[:300]}", "SPEC.md 12.10: the proof as cod fraud writes it"
                  ) from None
    for name, value in (("proof_id", proof.proof_id), ("liar", proof.liar), ("job", proof.job_cid),
                        ("claimed", proof.claim.statement.result)):
        if o[name] != value:
            raise bad(f"{name} is not the proof's ({str(o[name])[:80]!r}, not {value!r})")
    if proof.to_json() != o["proof"]:
        raise bad("proof is not written as cod fraud writes it")
    result = o["result"]
    if result is not None:
        check_cid(result, "result")
        if result == o["claimed"]:
            raise bad("result is the claimed result: the re-execution found no lie")
    return Fraud(o["proof"], o["proof_id"], o["liar"], o["job"], o["claimed"], result)


def fraud_entry(proof: Any, result: str | None) -> Fraud:
    """The fraud leaf the ledger writes for a proof (a cod.fraud.FraudProof) it found ``result`` for."""
    return Fraud(proof.to_json(), proof.proof_id, proof.liar, proof.job_cid, proof.claim.statement.result, result)


def _parse_audit(obj: Any) -> Audit:
    o = _fields(obj, ("type", "job", "eligibility", "rate", "draw", "selected", "outcome", "result", "reason"),
                "the audit entry")
    job = check_cid(o["job"], "job")
    eligibility = check_int(o["eligibility"], "eligibility", 1, MAX_INDEX)
    rate = check_int(o["rate"], "rate", 1, MAX_AUDIT_RATE)
    draw = check_signature(o["draw"])
    selected = check_bool(o["selected"], "selected")
    if selected != drawn(draw, rate):
        raise bad(f"selected is {str(selected).lower()}, but the draw {'does not select' if selected else 'selects'} "
                  f"the entry at rate {rate}")
    outcome, result, reason = o["outcome"], o["result"], o["reason"]
    if not selected:
        if (outcome, result, reason) != (None, None, None):
            raise bad("an audit not drawn has outcome, result and reason null")
    else:
        check_choice(outcome, "outcome", OUTCOMES)
        if outcome == "undecided":
            check_text(reason, "reason")
            if result is not None:
                raise bad("an undecided audit has result null")
        else:
            check_cid(result, "result")
            if reason is not None:
                raise bad("a decided audit has reason null")
    return Audit(job, eligibility, rate, draw, selected, outcome, result, reason)


def check_size(leaf: bytes) -> None:
    """Refuse a leaf over MAX_LEAF_BYTES: 413 "TooLarge"."""
    if len(leaf) > MAX_LEAF_BYTES:
        raise EntryRefused(413, "TooLarge", f"an entry is at most {MAX_LEAF_BYTES} bytes; this one has {len(leaf)}",
                           "split a bless import into smaller batches (entries.bless_batches); send fewer statements")


def _no_number(text: str) -> Any:
    raise ValueError(f"number {text} is not an integer")


_DECODER = json.JSONDecoder(parse_float=_no_number, parse_constant=_no_number)
# the very encoder cod.jobspec.canonical_json builds on each call, built once (appends and replays use it a lot)
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(value: Any) -> bytes:
    """cod.jobspec.canonical_json(value), with one encoder for all calls."""
    return _ENCODER.encode(value).encode()


def _load(leaf: bytes) -> Any:
    """JSON with integers only. Duplicate keys need no hook: the canonical comparison after refuses them."""
    try:
        return _DECODER.decode(leaf.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise bad(f"the entry is not strict JSON: {str(exc)[:200]}") from None


def parse_leaf(leaf: bytes) -> Entry:
    """The entry a leaf holds, refusing leaves that are too big, not JSON, or not canonical.

    Raises EntryRefused: 413 "TooLarge" over MAX_LEAF_BYTES, 400 "BadEntry" otherwise.
    """
    check_size(leaf)
    obj = _load(leaf)
    if canonical(obj) != leaf:
        raise bad("the entry is not canonical JSON (sorted keys, no white space, UTF-8)")
    return parse_entry(obj)


def parse_entry(obj: Any) -> Entry:
    """The entry of a JSON object of any kind; raises EntryRefused 400 "BadEntry"."""
    kind = obj.get("type") if isinstance(obj, dict) else None
    if kind == GENESIS:
        return _parse_genesis(obj)
    if kind == ELIGIBILITY:
        return _parse_eligibility(obj)
    if kind == FRAUD:
        return _parse_fraud(obj)
    if kind == AUDIT:
        return _parse_audit(obj)
    return parse_signed(obj)


def leaf_bytes(entry: Entry) -> bytes:
    """The canonical leaf bytes of an entry."""
    return canonical(entry.to_json())


def kind_of(entry: Entry) -> str:
    if isinstance(entry, Genesis):
        return GENESIS
    if isinstance(entry, Eligibility):
        return ELIGIBILITY
    if isinstance(entry, Fraud):
        return FRAUD
    if isinstance(entry, Audit):
        return AUDIT
    return entry.kind


def proposal_id_of(statement: dict[str, Any]) -> str:
    """Lowercase hex SHA-256 of the proposal statement's canonical JSON."""
    return hashlib.sha256(canonical_json(statement)).hexdigest()


# --- signing helpers (CLI, node, tests) --------------------------------------------------------

def _signed(identity: Identity, kind: str, statement: dict[str, Any], origin: str | None = None) -> dict[str, Any]:
    """``statement`` of ``kind`` signed by ``identity``; ``origin`` (the ledger's) is required by the v2 kinds."""
    statement = {"type": kind, **statement}
    if kind in OLD_KINDS.values():
        statement["origin"] = check_origin(origin)
    signature = identity.sign(canonical_json(statement))
    return {"type": kind, "statement": statement, "signature": base64.b64encode(signature).decode()}


def new_nonce() -> str:
    return secrets.token_hex(NONCE_HEX // 2)


def sign_bless_batch(identity: Identity, inputs: Mapping[str, list[int]], source: str = "list",
                     nonce: str | None = None, *, origin: str) -> dict[str, Any]:
    """A bless batch signed by a moderator for the ledger ``origin``: ``inputs`` maps CID -> deal IDs (sorted here)."""
    items = [{"cid": cid, "deals": sorted(set(deals))} for cid, deals in sorted(inputs.items())]
    return _signed(identity, BLESS, {"signer": identity.node_id, "nonce": nonce or new_nonce(), "source": source,
                                     "inputs": items}, origin)


def bless_batches(identity: Identity, inputs: Mapping[str, list[int]], source: str = "list", *,
                  origin: str) -> list[dict[str, Any]]:
    """Signed bless batches for the ledger ``origin`` covering ``inputs`` (CID -> deals), in CID order, each
    a leaf that fits.

    A batch takes inputs while it holds at most MAX_BLESS_INPUTS and its leaf stays within
    MAX_LEAF_BYTES (about 700 inputs with one deal each). Raises EntryRefused 413 for one input
    too big for any leaf (more deals than MAX_DEALS would be refused anyway).
    """
    batches: list[dict[str, Any]] = []
    items = sorted(inputs.items())
    start = 0
    while start < len(items):
        end = min(len(items), start + MAX_BLESS_INPUTS)
        while True:
            batch = sign_bless_batch(identity, dict(items[start:end]), source, origin=origin)
            if len(canonical_json(batch)) <= MAX_LEAF_BYTES:
                break
            if end - start == 1:
                check_size(canonical_json(batch))
            end = start + (end - start) // 2 if end - start > 1 else end
        batches.append(batch)
        start = end
    return batches


def sign_decision(identity: Identity, *, origin: str, job: str, result: str, action: str, datacap: int, reason: str,
                  eligibility: int, supersedes: int | None) -> dict[str, Any]:
    """A moderator's decision, for the ledger ``origin``, on a job's latest eligibility entry (GET /v1/jobs/{cid})."""
    return _signed(identity, DECISION, {"job": job, "result": result, "action": action, "datacap": datacap,
                                        "reason": reason, "moderator": identity.node_id,
                                        "eligibility": eligibility, "supersedes": supersedes}, origin)


def sign_proposal(identity: Identity, *, origin: str, action: str, moderator: str,
                  nonce: str | None = None) -> dict[str, Any]:
    """A root key holder's proposal to add or remove a moderator of the ledger ``origin`` (its ID:
    proposal_id_of(statement))."""
    return _signed(identity, PROPOSAL, {"action": action, "moderator": moderator, "proposer": identity.node_id,
                                        "nonce": nonce or new_nonce()}, origin)


def sign_approval(identity: Identity, proposal: str, *, origin: str) -> dict[str, Any]:
    """A root key holder's approval of a proposal of the ledger ``origin``."""
    return _signed(identity, APPROVAL, {"proposal": proposal, "approver": identity.node_id}, origin)


def sign_refusal(identity: Identity, *, job: str, policy: str, inputs: list[str], reason: str,
                 nonce: str | None = None) -> dict[str, Any]:
    """A node's statement that its policy refused a job."""
    return _signed(identity, REFUSAL, {"node": identity.node_id, "job": job, "policy": policy,
                                       "inputs": sorted(set(inputs)), "reason": reason, "nonce": nonce or new_nonce()})
