"""The signed result statement: a node's key behind its answer.

A statement binds the job CID, the result CID, the node ID, the execution profile, the
exit code, the trap (or null) and the fuel used. Its canonical bytes are the canonical
JSON of the object below (keys sorted, no white space, ``cod.jobspec.canonical_json``);
the signature is Ed25519 over those bytes, base64 (RFC 4648, padded) on the wire.

    {"exit_code": 0, "fuel_used": 818, "job": "baga...", "node": "12D3KooW...",
     "profile": "wasmtime-50.0.1+...", "result": "bafy...", "trap": null,
     "type": "cod/result-statement/v1"}
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import asdict, dataclass
from typing import Any

from .errors import BadSignature
from .identity import Identity, verify
from .jobspec import canonical_json

STATEMENT_TYPE = "cod/result-statement/v1"


@dataclass(frozen=True)
class Statement:
    job: str
    result: str
    node: str
    profile: str
    exit_code: int
    trap: str | None
    fuel_used: int
    type: str = STATEMENT_TYPE

    def canonical_bytes(self) -> bytes:
        return canonical_json(asdict(self))

    def sign(self, identity: Identity) -> "SignedStatement":
        if identity.node_id != self.node:
            raise ValueError("a node signs only statements naming itself")
        return SignedStatement(self, identity.sign(self.canonical_bytes()))


@dataclass(frozen=True)
class SignedStatement:
    statement: Statement
    signature: bytes

    def to_json(self) -> dict[str, Any]:
        return {"statement": asdict(self.statement), "signature": base64.b64encode(self.signature).decode()}

    @classmethod
    def from_json(cls, data: Any) -> "SignedStatement":
        """Parse a statement from the wire; anything malformed is a BadSignature."""
        try:
            body = dict(data["statement"])
            statement = Statement(**body)
            signature = base64.b64decode(data["signature"], validate=True)
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise BadSignature(f"malformed statement: {exc}") from exc
        if statement.type != STATEMENT_TYPE:
            raise BadSignature(f"statement type {statement.type!r} is not {STATEMENT_TYPE}")
        return cls(statement, signature)

    def verify(self, job: str, node: str) -> Statement:
        """Check the signature and that the statement answers ``job`` and comes from ``node``.

        Raises BadSignature naming what is wrong: another job (a replay), another node, or a
        signature that does not verify (forged or altered).
        """
        if self.statement.job != job:
            raise BadSignature(f"statement is for job {self.statement.job}, not {job} (replayed?)")
        if self.statement.node != node:
            raise BadSignature(f"statement names node {self.statement.node}, not {node}")
        verify(node, self.statement.canonical_bytes(), self.signature)
        return self.statement
