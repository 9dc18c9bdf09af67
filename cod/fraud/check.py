"""Checking a fraud proof by re-executing its job (SPEC 11.5).

What parsing checked (the claim's signature, its job CID, the shape) is not a verdict: a proof
that fails it is a FraudProofError. What is left needs the job run: gather the module, imported
modules and inputs by CID (the local store first, then ``urls``, then the proof's sources; every
block checked against its CID, at most ``max_bytes`` in all), re-execute on the claim's profile
(at most ``fuel``), and compare:

    proven     the re-execution's result CID is not the claim's: the signed claim is false
    refuted    it is exactly the claim's: the claim was true, the proof a false accusation
    undecided  no judgement here: another profile, content no source gives, the fuel bound

A bisection proof is checked the same way, by re-executing the whole job (bounded by ``fuel``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..content.store import ContentStore
from ..reexec import DEFAULT_GATHER_BYTES, gather, reexecute
from .proof import FraudProof

PROVEN, REFUTED, UNDECIDED = "proven", "refuted", "undecided"
VERDICTS = (PROVEN, REFUTED, UNDECIDED)


@dataclass(frozen=True)
class Verdict:
    """What checking a proof found: ``status`` (one of VERDICTS), the checker's own result CID
    (None when undecided), why (``reason``) and the fuel the re-execution used."""

    status: str
    result_cid: str | None
    reason: str
    fuel_used: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "result_cid": self.result_cid, "reason": self.reason,
                "fuel_used": self.fuel_used}


async def check(proof: FraudProof, store: ContentStore, *, urls: list[str] | None = None, fuel: int | None = None,
                max_bytes: int = DEFAULT_GATHER_BYTES, cache_dir: Path | None = None, wasm: bytes = b"",
                modules: dict[str, bytes] | None = None, use_sources: bool = True) -> Verdict:
    """Judge ``proof`` by re-executing its job here (see the module's text). Never raises a
    CodError for what the job or its sources do: that is a verdict (undecided, saying why).
    ``use_sources`` False ignores the proof's own source URLs (a server that fetches only from
    addresses it chose)."""
    peers = list(dict.fromkeys([*(urls or []), *(proof.sources if use_sources else ())]))
    job = await gather(proof.job, peers, store, max_bytes=max_bytes, wasm=wasm, modules=modules)
    ruling = await asyncio.to_thread(reexecute, job, proof.profile, fuel, cache_dir)
    claimed = proof.claim.statement.result
    if ruling.result_cid is None:
        reason = ruling.refused or "the job was not re-executed"
        if peers and "does not hold" in reason:
            reason += f" (nor did any of {len(peers)} source(s) give it)"
        return Verdict(UNDECIDED, None, reason, ruling.segment_fuel)
    if ruling.result_cid == claimed:
        return Verdict(REFUTED, ruling.result_cid,
                       f"the re-execution gave {ruling.result_cid}, exactly what node {proof.liar} signed: "
                       "the claim is true and the proof a false accusation", ruling.segment_fuel)
    agrees = ("as the proof's referee found" if ruling.result_cid == proof.referee["result_cid"]
              else f"(the proof's referee found {proof.referee['result_cid']})")
    return Verdict(PROVEN, ruling.result_cid,
                   f"the re-execution gave {ruling.result_cid}, not the {claimed} node {proof.liar} signed, "
                   f"{agrees}: the claim is false", ruling.segment_fuel)
