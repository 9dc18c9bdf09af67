"""The fraud proof v1 (SPEC 11.5): a proven lie as one self-contained, canonical JSON document.

    {"type": "cod/fraud-proof/v1",
     "job": {...the job spec, in its canonical form (SPEC 2)...},
     "claim": {"statement": {...}, "signature": "base64"},      # the liar's signed statement
     "referee": {"method": "self" | "bisect" | "audit", "result_cid": R,
                 "exit_code": int, "trap": str | null, "fuel_used": int},
     "segment": null | {"start_fuel", "end_fuel", "agreed_hash", "claimed_hash", "referee_hash",
                        "checkpoints"},                          # method "bisect" only
     "sources": ["http://..."]}                                  # hints, never trusted

Parsing is strict and checks everything that needs no re-execution: every key present and no
other, every type, the job and the signature in their one canonical form (so one lie has one
proof ID), the claim's signature against the key in its node ID, the claim's job equal to the
CID of the proof's job, and a referee result that differs from the claim's. Whatever is wrong
is a FraudProofError naming the field. Whether the lie is real is :func:`cod.fraud.check`'s.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from ..content.cid import CID, RAW
from ..errors import BadSignature, CIDError, FraudProofError, SpecError
from ..jobspec import MAX_INT, MAX_JSON_DEPTH, JobSpec, canonical_json, load_json
from ..statement import STATEMENT_TYPE, SignedStatement, Statement
from ..urls import node_url_problem, not_utf8

FRAUD_PROOF_TYPE = "cod/fraud-proof/v1"
FRAUD_MAX_BYTES = 1 << 20
"""The largest fraud proof, in canonical bytes (and as read from a file or a request body): 1 MiB."""
METHODS = ("self", "bisect", "audit")
"""How the referee found the lie: re-executing the whole job (self; audit when it was a random
audit of agreeing claims), or one segment of it found by bisection."""
MAX_SOURCES = 16
"""Most source URLs a proof names."""

_KEYS = {"type", "job", "claim", "referee", "segment", "sources"}
_CLAIM_KEYS = {"statement", "signature"}
_STATEMENT_KEYS = {"job", "result", "node", "profile", "exit_code", "trap", "fuel_used", "type"}
_REFEREE_KEYS = {"method", "result_cid", "exit_code", "trap", "fuel_used"}
_SEGMENT_KEYS = {"start_fuel", "end_fuel", "agreed_hash", "claimed_hash", "referee_hash", "checkpoints"}
_HEX_HASH = re.compile(r"[0-9a-f]{64}")
_EXIT_MIN, _EXIT_MAX = -(2**31), 2**31 - 1


@dataclass(frozen=True)
class FraudProof:
    """A parsed, statically checked fraud proof; build one with :meth:`parse` or :func:`build`."""

    job: JobSpec
    claim: SignedStatement
    referee: dict[str, Any]
    segment: dict[str, Any] | None
    sources: tuple[str, ...]

    # -- reading -------------------------------------------------------------------------
    @classmethod
    def parse(cls, obj: Any) -> "FraudProof":
        """The proof in ``obj`` (a decoded JSON object); raises FraudProofError saying what is wrong."""
        _object(obj, "(proof)", _KEYS)
        if obj["type"] != FRAUD_PROOF_TYPE:
            raise FraudProofError(f"fraud proof field 'type': {_shown(obj['type'])} is not {FRAUD_PROOF_TYPE!r}")
        job = _job(obj["job"])
        claim = _claim(obj["claim"])
        referee = _referee(obj["referee"])
        segment = _segment(obj["segment"], referee["method"])
        sources = _sources(obj["sources"])
        proof = cls(job, claim, referee, segment, sources)
        proof._bind()
        size = len(proof.canonical_bytes())
        if size > FRAUD_MAX_BYTES:
            raise FraudProofError(f"the fraud proof is {size} bytes, more than the {FRAUD_MAX_BYTES} a proof may be",
                                  "a proof carries one job spec and one claim: leave out what is not evidence")
        return proof

    @classmethod
    def from_bytes(cls, data: bytes) -> "FraudProof":
        """The proof in a document (a file, a request body): at most FRAUD_MAX_BYTES, strict JSON
        (no duplicate keys, no floats, SPEC 2), then :meth:`parse`."""
        if len(data) > FRAUD_MAX_BYTES:
            raise FraudProofError(f"the fraud proof document is {len(data)} bytes, more than the {FRAUD_MAX_BYTES} "
                                  "a proof may be")
        try:
            obj = load_json(data)
        except SpecError as exc:
            raise FraudProofError(f"the fraud proof is not strict JSON: {exc.message}") from None
        return cls.parse(obj)

    def _bind(self) -> None:
        """The claim's signature verifies against its node ID, it answers the proof's job, and
        the referee's result is another than the claim's."""
        statement = self.claim.statement
        job_cid = str(self.job.cid)
        if statement.job != job_cid:
            raise FraudProofError(f"the claim is for job {statement.job}, but the proof's job is {job_cid}: the job "
                                  "spec is not the one the liar signed")
        try:
            self.claim.verify(job_cid, statement.node)
        except BadSignature as exc:
            raise FraudProofError(f"the claim's signature: {exc.message}") from None
        if self.referee["result_cid"] == statement.result:
            raise FraudProofError(f"the referee's result {statement.result} is the claim's own: the proof "
                                  "accuses nobody")

    # -- writing -------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"type": FRAUD_PROOF_TYPE, "job": self.job.to_dict(), "claim": self.claim.to_json(),
                "referee": dict(self.referee), "segment": None if self.segment is None else dict(self.segment),
                "sources": list(self.sources)}

    def canonical_bytes(self) -> bytes:
        return canonical_json(self.to_json())

    @property
    def proof_id(self) -> str:
        """CIDv1 (raw, sha2-256) of the canonical bytes."""
        return str(CID.of(RAW, self.canonical_bytes()))

    @property
    def liar(self) -> str:
        return self.claim.statement.node

    @property
    def job_cid(self) -> str:
        return self.claim.statement.job

    @property
    def profile(self) -> str:
        return self.claim.statement.profile

    @property
    def method(self) -> str:
        return str(self.referee["method"])


def build(job: Any, claim: Any, *, result_cid: str, exit_code: int, trap: str | None, fuel_used: int,
          method: str = "self", segment: dict[str, Any] | None = None, sources: list[str] | tuple[str, ...] = ()
          ) -> FraudProof:
    """The proof that ``claim`` (a SignedStatement or its JSON) lied about ``job`` (a JobSpec or its
    object): the referee's re-execution gave ``result_cid`` (with that exit code, trap and fuel).
    Checked exactly as :meth:`FraudProof.parse` checks a proof read from elsewhere."""
    job_obj = job.to_dict() if isinstance(job, JobSpec) else job
    claim_obj = claim.to_json() if isinstance(claim, SignedStatement) else claim
    return FraudProof.parse({"type": FRAUD_PROOF_TYPE, "job": job_obj, "claim": claim_obj,
                             "referee": {"method": method, "result_cid": result_cid, "exit_code": exit_code,
                                         "trap": trap, "fuel_used": fuel_used},
                             "segment": segment, "sources": list(dict.fromkeys(sources))})


# -- fields ------------------------------------------------------------------------------
def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _object(value: Any, name: str, keys: set[str]) -> None:
    if not isinstance(value, dict):
        raise FraudProofError(f"fraud proof field {name!r}: expected an object, got {type(value).__name__}")
    unknown = sorted(set(value) - keys)
    if unknown:
        raise FraudProofError(f"fraud proof field {name!r}: unknown key {_shown(unknown[0])}",
                              f"a {FRAUD_PROOF_TYPE} object has exactly: {', '.join(sorted(keys))}")
    missing = sorted(keys - set(value))
    if missing:
        raise FraudProofError(f"fraud proof field {name!r}: missing key {missing[0]!r}")


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise FraudProofError(f"fraud proof field {name!r}: expected a string, got {type(value).__name__}")
    if not_utf8(value):
        raise FraudProofError(f"fraud proof field {name!r}: not Unicode text encodable as UTF-8")
    return value


def _int(value: Any, name: str, low: int = 0, high: int = MAX_INT) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FraudProofError(f"fraud proof field {name!r}: expected an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise FraudProofError(f"fraud proof field {name!r}: {value} is outside {low}..{high}")
    return value


def _trap(value: Any, name: str) -> str | None:
    return None if value is None else _text(value, name)


def _cid(value: Any, name: str) -> str:
    text = _text(value, name)
    try:
        parsed = CID.parse(text)
    except CIDError as exc:
        raise FraudProofError(f"fraud proof field {name!r}: {exc.message}") from None
    if str(parsed) != text:
        raise FraudProofError(f"fraud proof field {name!r}: {_shown(text)} is not the canonical CIDv1 text "
                              f"{str(parsed)!r}")
    return text


def _job(value: Any) -> JobSpec:
    try:
        spec = JobSpec.from_dict(value)
    except SpecError as exc:
        raise FraudProofError(f"fraud proof field 'job': {exc.message}") from None
    if spec.to_dict() != value:
        raise FraudProofError("fraud proof field 'job': not in its canonical form (every field present, defaults "
                              "filled in, SPEC 2)", "build proofs with cod.fraud.build")
    return spec


def _claim(value: Any) -> SignedStatement:
    _object(value, "claim", _CLAIM_KEYS)
    body = value["statement"]
    _object(body, "claim.statement", _STATEMENT_KEYS)
    if body["type"] != STATEMENT_TYPE:
        raise FraudProofError(f"fraud proof field 'claim.statement.type': {_shown(body['type'])} is not "
                              f"{STATEMENT_TYPE!r}")
    statement = Statement(job=_cid(body["job"], "claim.statement.job"),
                          result=_cid(body["result"], "claim.statement.result"),
                          node=_text(body["node"], "claim.statement.node"),
                          profile=_text(body["profile"], "claim.statement.profile"),
                          exit_code=_int(body["exit_code"], "claim.statement.exit_code", _EXIT_MIN, _EXIT_MAX),
                          trap=_trap(body["trap"], "claim.statement.trap"),
                          fuel_used=_int(body["fuel_used"], "claim.statement.fuel_used"))
    text = _text(value["signature"], "claim.signature")
    try:
        signature = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise FraudProofError("fraud proof field 'claim.signature': not base64 (RFC 4648, padded)") from None
    if base64.b64encode(signature).decode() != text:
        raise FraudProofError("fraud proof field 'claim.signature': not the canonical base64 of its bytes")
    return SignedStatement(statement, signature)


def _referee(value: Any) -> dict[str, Any]:
    _object(value, "referee", _REFEREE_KEYS)
    method = _text(value["method"], "referee.method")
    if method not in METHODS:
        raise FraudProofError(f"fraud proof field 'referee.method': {_shown(method)} is not one of "
                              f"{', '.join(METHODS)}")
    return {"method": method, "result_cid": _cid(value["result_cid"], "referee.result_cid"),
            "exit_code": _int(value["exit_code"], "referee.exit_code", _EXIT_MIN, _EXIT_MAX),
            "trap": _trap(value["trap"], "referee.trap"), "fuel_used": _int(value["fuel_used"], "referee.fuel_used")}


def _segment(value: Any, method: str) -> dict[str, Any] | None:
    if method != "bisect":
        if value is not None:
            raise FraudProofError(f"fraud proof field 'segment': must be null for method {method!r} (only a "
                                  "bisection names a segment)")
        return None
    _object(value, "segment", _SEGMENT_KEYS)
    start = _int(value["start_fuel"], "segment.start_fuel")
    end = _int(value["end_fuel"], "segment.end_fuel")
    if end <= start:
        raise FraudProofError(f"fraud proof field 'segment.end_fuel': {end} is not after start_fuel {start}")
    hashes = {}
    for key in ("agreed_hash", "claimed_hash", "referee_hash"):
        text = _text(value[key], f"segment.{key}")
        if not _HEX_HASH.fullmatch(text):
            raise FraudProofError(f"fraud proof field 'segment.{key}': not 64 lower-case hex digits (SHA-256)")
        hashes[key] = text
    if hashes["claimed_hash"] == hashes["referee_hash"]:
        raise FraudProofError("fraud proof field 'segment.referee_hash': equals claimed_hash: the segment shows no lie")
    checkpoints = value["checkpoints"]
    if not isinstance(checkpoints, dict):
        raise FraudProofError("fraud proof field 'segment.checkpoints': expected an object, got "
                              f"{type(checkpoints).__name__}")
    _plain(checkpoints, "segment.checkpoints", 0)
    return {"start_fuel": start, "end_fuel": end, **hashes, "checkpoints": checkpoints}


def _plain(value: Any, name: str, depth: int) -> None:
    """``value`` is JSON cod reads (SPEC 2): objects with text keys, lists, text, integers, booleans,
    null; no floats; nested at most MAX_JSON_DEPTH levels inside the proof."""
    if depth > MAX_JSON_DEPTH - 3:  # the proof, segment and checkpoints are 3 levels already
        raise FraudProofError(f"fraud proof field {name!r}: nested too deeply")
    if isinstance(value, dict):
        for key, item in value.items():
            _plain(item, f"{name}.{_text(key, name)}", depth + 1)
    elif isinstance(value, list):
        for k, item in enumerate(value):
            _plain(item, f"{name}[{k}]", depth + 1)
    elif isinstance(value, str):
        _text(value, name)
    elif value is not None and not isinstance(value, (bool, int)):
        raise FraudProofError(f"fraud proof field {name!r}: {type(value).__name__} is not allowed (integers only)")


def _sources(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise FraudProofError(f"fraud proof field 'sources': expected a list, got {type(value).__name__}")
    if len(value) > MAX_SOURCES:
        raise FraudProofError(f"fraud proof field 'sources': {len(value)} URLs, more than {MAX_SOURCES}")
    out = []
    for k, url in enumerate(value):
        text = _text(url, f"sources[{k}]")
        problem = node_url_problem(text)
        if problem is not None:
            raise FraudProofError(f"fraud proof field 'sources[{k}]': {_shown(text)} {problem}")
        out.append(text)
    if len(set(out)) != len(out):
        raise FraudProofError("fraud proof field 'sources': a URL appears twice")
    return tuple(out)
