"""What the fraud-proof tests share: the wordcount vector's job, real keys, a signed lie."""

from __future__ import annotations

import copy

import nacl.signing

from cod.identity import Identity
from cod.jobspec import JobSpec
from cod.statement import SignedStatement, Statement

from ..helpers import load_vector

WORDCOUNT = load_vector("wordcount")
SPEC = JobSpec.from_dict(WORDCOUNT["spec"])
HONEST = WORDCOUNT["expect"]["result_cid"]
LIE = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
"""A result CID that is not wordcount's (a well-formed dag-pb CID, as a result CID is)."""


def key(seed: int) -> Identity:
    return Identity(nacl.signing.SigningKey(bytes([seed]) * 32))


def signed(identity: Identity, result: str, *, profile: str = WORDCOUNT["profile"], job: str = WORDCOUNT["job_cid"],
           exit_code: int = 0, fuel_used: int = WORDCOUNT["expect"]["fuel_used"]) -> SignedStatement:
    """A statement signed with a real key: ``result`` for the wordcount job."""
    return Statement(job=job, result=result, node=identity.node_id, profile=profile, exit_code=exit_code, trap=None,
                     fuel_used=fuel_used).sign(identity)


def proof_obj(claim: SignedStatement, referee_result: str = HONEST, **referee: object) -> dict[str, object]:
    """A fraud proof's JSON object, written out by hand (not by cod.fraud.build)."""
    return {"type": "cod/fraud-proof/v1", "job": copy.deepcopy(WORDCOUNT["spec"]), "claim": claim.to_json(),
            "referee": {"method": "self", "result_cid": referee_result, "exit_code": 0, "trap": None,
                        "fuel_used": WORDCOUNT["expect"]["fuel_used"], **referee},
            "segment": None, "sources": []}
