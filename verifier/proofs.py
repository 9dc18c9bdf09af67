"""The fraud proofs the referee builds (SPEC 11.5): one per proven liar of a run, kept beside the
requester's records as ``COD_HOME/fraud/PROOF_ID.json`` (canonical bytes) and listed in the run."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from cod.errors import CodError
from cod.fraud import FraudProof, build
from cod.fraud.proof import MAX_SOURCES
from cod.jobspec import JobSpec
from cod.reexec import Ruling


def build_all(spec: JobSpec, answers: list[Any], liars: list[str], ruling: Ruling) -> list[FraudProof]:
    """A proof for every liar's signed statement; the sources are the URLs of the nodes that answered."""
    if ruling.result_cid is None or ruling.exit_code is None:
        return []
    sources = list(dict.fromkeys(a.url for a in answers if a.valid))[:MAX_SOURCES]
    out = []
    for answer in answers:
        if answer.node_id in liars and answer.statement is not None:
            try:
                out.append(build(spec, answer.statement, result_cid=ruling.result_cid, exit_code=ruling.exit_code,
                                 trap=ruling.trap, fuel_used=ruling.segment_fuel, method=ruling.method,
                                 sources=sources))
            except CodError:
                continue  # a statement that is not evidence (it cannot be: it was checked) proves nothing
    return out


def keep(directory: Path, proofs: list[FraudProof]) -> list[str]:
    """Write each proof to ``directory/PROOF_ID.json``; returns their IDs."""
    directory.mkdir(parents=True, exist_ok=True)
    for proof in proofs:
        # written aside and renamed: a reader (cod fraud list, a run keeping the same proof at the
        # same moment) sees the whole proof or none, never a torn one
        target = directory / f"{proof.proof_id}.json"
        partial = directory / f".{proof.proof_id}.{os.getpid()}.{threading.get_ident()}.partial"
        partial.write_bytes(proof.canonical_bytes())
        os.replace(partial, target)
    return [p.proof_id for p in proofs]
