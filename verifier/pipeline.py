"""One stage of a pipeline: run a prepared job on the network, decide whether the stage passes,
keep its results for the next stage, and describe it for the next stage (Airflow's XCom).

Used by the Airflow provider (cod.airflow.operators); nothing here imports Airflow.

A stage passes when its result was verified (all N, or a quorum, signed the same CID), or
when it could not be verified by construction and that was asked for: a docker job (never
verifiable) or ``--verify 1`` (one node proves nothing), as `cod run` exits 0 for those. Its
agreed results go into the requester's content store under the result CID, so a later stage
can mount them with ``-i RESULT_CID:/path`` and the requester can upload them to nodes
that lack them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cod.content.store import ContentStore
from cod.errors import CodError, NotFound
from cod.jobspec import ENGINE_DOCKER
from cod.local import PreparedJob

from .network import run_verified
from .outcomes import QUORUM, UNVERIFIABLE, VERIFIED
from .reputation import Records
from .verify import Verification, statuses

XCOM_SCHEMA = "cod.stage/1"


@dataclass
class Stage:
    """What one stage did: the verification and whether the stage passes."""

    verification: Verification
    engine: str
    passed: bool
    stored: str | None = None  # the result CID under which the results are in the content store
    problems: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return self.verification.outcome in (VERIFIED, QUORUM)

    def to_xcom(self) -> dict[str, Any]:
        """Plain JSON for XCom: the next stage reads ``result_cid``."""
        v = self.verification
        return {
            "schema": XCOM_SCHEMA, "job_cid": v.job_cid, "outcome": v.outcome, "result_cid": v.result_cid,
            "verified": self.verified, "verifiable": self.engine != ENGINE_DOCKER, "engine": self.engine,
            "n": v.n, "quorum": v.quorum, "groups": {cid: sorted(nodes) for cid, nodes in sorted(v.groups.items())},
            "agreeing": sorted(v.groups.get(v.result_cid, [])) if v.result_cid else [],
            "note": v.note, "results_dir": str(v.results_dir) if v.results_dir else None,
            "stored": self.stored,
        }

    def report(self) -> list[str]:
        """Lines for a task log: the outcome, each node's answer, the groups."""
        v = self.verification
        lines = [f"job {v.job_cid}: {v.outcome.upper()}" + (f" ({v.note})" if v.note else "")
                 + (f", result {v.result_cid}" if v.result_cid else "")]
        for answer, (status, detail) in zip(v.answers, statuses(v)):
            lines.append(f"  {answer.node_id} {answer.url} {status} {detail}")
        for cid, nodes in sorted(v.groups.items()):
            lines.append(f"  group {cid}: signed by {len(nodes)} node(s): {', '.join(sorted(nodes))}")
        for url, reason in v.unreachable:
            lines.append(f"  left out {url}: {reason}")
        lines.extend(f"  {problem}" for problem in self.problems)
        return lines


def run_stage(job: PreparedJob, nodes: list[str], n: int, *, quorum: int | None = None,
              output_dir: Path | None = None, ledger: str | None = None, require_local: bool = False,
              records: Records | None = None, store: ContentStore | None = None) -> Stage:
    """Run ``job`` on ``n`` of ``nodes`` (an embedded devstack when there are none), report the
    evidence to ``ledger`` if given, and keep the agreed results in ``store`` (the requester's
    content store by default). Raises what verify raises before anything runs (UsageError,
    NotEnoughNodes, EngineUnavailable, ...)."""
    destination = output_dir or Path("cod-results") / str(job.spec.cid)
    verification = asyncio.run(run_verified(job, n, nodes, quorum=quorum, records=records or Records(),
                                            output_dir=destination, require_local=require_local))
    if ledger is not None:
        from .ledger import report

        verification.ledger = asyncio.run(report(ledger, job.spec.to_dict(), verification.statements()))
    stage = Stage(verification, job.spec.engine, passed=passes(verification, job.spec.engine, n))
    if verification.result_cid and verification.results_dir is not None:
        try:
            stored = (store or ContentStore()).add(verification.results_dir)
        except CodError as exc:
            stage.problems.append(f"the results were not kept in the content store: {exc.message}")
        else:
            if stored == verification.result_cid:
                stage.stored = stored
            else:  # never mount other bytes under the result's name
                stage.problems.append(f"the downloaded results hash to {stored}, not to {verification.result_cid}")
                stage.passed = False
    return stage


def passes(verification: Verification, engine: str, n: int) -> bool:
    """Verified, or unverifiable by construction (docker, or one node) with a result."""
    if verification.outcome in (VERIFIED, QUORUM):
        return True
    return (verification.outcome == UNVERIFIABLE and verification.result_cid is not None
            and (engine == ENGINE_DOCKER or n == 1))


async def fetch_stage(job_cid: str, output_dir: Path, nodes: list[str], records: Records | None = None) -> \
        dict[str, Any]:
    """The agreed results of a recorded job (its CID or a unique prefix) into ``output_dir``,
    from a node that signed them (checked against the result CID). Raises NotFound,
    DownloadFailed."""
    from .fetch import fetch_results, recorded_base

    book = records or Records()
    row = book.job(job_cid)
    if row is None:
        raise NotFound(f"no job {job_cid!r} in this requester's records", "run it first (CodWasmRunOperator)")
    if not row["result_cid"]:
        raise NotFound(f"job {row['job_cid']} has no agreed result (outcome {row['outcome']})")
    known = {node["node_id"]: node["url"] for node in book.nodes()}
    where = await fetch_results(row, output_dir, None, known=known, configured=nodes,
                                base=recorded_base(book.runs(row["job_cid"])))
    return {"schema": XCOM_SCHEMA, "job_cid": row["job_cid"], "result_cid": row["result_cid"],
            "outcome": row["outcome"], "path": str(where)}
