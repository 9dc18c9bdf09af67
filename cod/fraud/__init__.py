"""Fraud proofs (SPEC 11.5): a proven lie as a canonical document anyone can check by re-execution.

    FraudProof.parse(obj) / FraudProof.from_bytes(data)   strict; FraudProofError says what is wrong
    build(job, claim, result_cid=..., exit_code=..., trap=..., fuel_used=..., method=..., ...)
    await check(proof, store, urls=[...])                  a Verdict: proven, refuted or undecided
"""

from __future__ import annotations

from .check import PROVEN, REFUTED, UNDECIDED, VERDICTS, Verdict, check
from .proof import FRAUD_MAX_BYTES, FRAUD_PROOF_TYPE, METHODS, FraudProof, build

__all__ = ["FRAUD_MAX_BYTES", "FRAUD_PROOF_TYPE", "METHODS", "PROVEN", "REFUTED", "UNDECIDED", "VERDICTS",
           "FraudProof", "Verdict", "build", "check"]
