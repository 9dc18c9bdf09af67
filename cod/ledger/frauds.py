"""Fraud proofs and audits at the ledger (SPEC.md 12.10).

A fraud proof anyone posts (``POST /v1/fraud-proofs``) is recorded only after the ledger checked
it itself: :class:`FraudDesk` re-executes the proof's job (``cod.fraud.check``), fetching what its
store lacks by CID from the nodes the ledger knows and the proof's own sources, bounded in fuel
and bytes, one check at a time per slot. The same lie posted twice, even at once, is checked once
and recorded once: the second poster is told it is known.

With ``cod ledger serve --audit P`` the :class:`Auditor` draws every newly eligible entry with
the log key (a signature over the entry's hash: unpredictable without the key, checkable by
anyone with the log's vkey) and re-executes the drawn ones before they enter the moderation
queue; an audit that disagrees with the agreeing nodes turns each of them into a fraud entry
(a proof of method "audit"), recorded in the same append as the audit entry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..content.store import ContentStore
from ..errors import CodError, LedgerRefused
from ..jobspec import JobSpec
from .entries import MAX_AUDIT_RATE, MAX_LEAF_BYTES, MAX_REASON_CHARS, fraud_entry, leaf_bytes
from .log import Ledger
from .state import FraudRecord, claim_key

log = logging.getLogger("cod.ledger.fraud")

DEFAULT_FUEL = 10_000_000_000
"""Fuel one check or audit re-executes at most (a job asking for more is undecided): about a minute."""
DEFAULT_BYTES = 256 << 20
"""Bytes one check or audit fetches at most, every CID together."""
CONTENT_DIR = "content"
"""The ledger's content store (in its data directory): modules and inputs fetched for checks."""
MAX_SOURCES = 16
"""Fetch URLs a proof built by an audit names."""
IDLE_S = 30.0
"""The auditor looks for newly eligible entries at least this often (and after every append)."""


@dataclass(frozen=True)
class FraudOptions:
    """How a ledger checks posted proofs and audits: the nodes it fetches from, its bounds, the audit rate."""

    nodes: tuple[str, ...] = ()
    fuel: int = DEFAULT_FUEL
    max_bytes: int = DEFAULT_BYTES
    audit_rate: int = 0          # millionths of newly eligible entries re-executed (0: no audits)
    use_sources: bool = True     # fetch from the URLs a posted proof names too
    slots: int = 1               # checks and audits at once


def audit_rate(p: float) -> int:
    """``--audit P`` (0 <= P <= 1) as millionths."""
    return round(p * MAX_AUDIT_RATE)


def refused(status: int, error: str, message: str, hint: str) -> LedgerRefused:
    return LedgerRefused(message[:2000], hint, status=status, error=error)


@dataclass
class FraudDesk:
    """Checks posted proofs and records the proven ones (one check per lie at a time)."""

    ledger: Ledger
    options: FraudOptions = field(default_factory=FraudOptions)
    _inflight: dict[str, asyncio.Task[tuple[FraudRecord, bool]]] = field(default_factory=dict)
    _slots: asyncio.Semaphore | None = None
    _store: ContentStore | None = None

    @property
    def store(self) -> ContentStore:
        if self._store is None:
            self._store = ContentStore(Path(self.ledger.data_dir) / CONTENT_DIR)
        return self._store

    def slots(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(max(1, self.options.slots))
        return self._slots

    @staticmethod
    def fits(proof: Any) -> None:
        """Refuse (413 TooLarge) a proof whose fraud entry could not be a leaf, before any work."""
        size = len(leaf_bytes(fraud_entry(proof, proof.claim.statement.result)))  # a result CID as long as any
        if size > MAX_LEAF_BYTES:
            raise refused(413, "TooLarge", f"the fraud entry of this proof would be {size} bytes; a leaf is at most "
                          f"{MAX_LEAF_BYTES}", "a proof the ledger records carries one job spec and one claim")

    async def submit(self, proof: Any) -> tuple[FraudRecord, bool]:
        """Check ``proof`` and record it if proven: (its record, True when this call appended it).

        Raises LedgerRefused 422 Refuted (the claim is true) or Undecided (cannot judge here)."""
        key = claim_key(proof.claim.to_json())
        known = await asyncio.to_thread(self.ledger.fraud_of, proof.claim.to_json())
        if known is not None:
            return known, False
        task = self._inflight.get(key)
        if task is not None:  # the same lie is being checked for another poster: wait for that check
            record, _ = await asyncio.shield(task)
            return record, False
        task = asyncio.ensure_future(self._check(proof))
        self._inflight[key] = task
        task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        return await asyncio.shield(task)

    async def _check(self, proof: Any) -> tuple[FraudRecord, bool]:
        from ..fraud import PROVEN, REFUTED, check

        o = self.options
        async with self.slots():
            verdict = await check(proof, self.store, urls=list(o.nodes), fuel=o.fuel, max_bytes=o.max_bytes,
                                  use_sources=o.use_sources)
        if verdict.status == REFUTED:
            raise refused(422, "Refuted", f"the ledger re-executed the job: {verdict.reason}",
                          "nothing was recorded: the statement the proof accuses is true")
        if verdict.status != PROVEN:
            raise refused(422, "Undecided", f"the ledger could not judge the proof: {verdict.reason}",
                          f"nothing was recorded; the ledger re-executes at most {o.fuel} fuel and fetches at most "
                          f"{o.max_bytes} bytes, from its nodes and the proof's sources, on its own profile")
        return await asyncio.to_thread(self.ledger.record_fraud, proof, verdict.result_cid)


@dataclass
class Auditor:
    """Draws newly eligible entries and re-executes the drawn ones (``cod ledger serve --audit P``)."""

    ledger: Ledger
    desk: FraudDesk
    on_append: Callable[[], None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    audits: int = 0   # audits run (drawn entries re-executed), for the log and the tests

    async def run(self) -> None:
        """Audit until cancelled; an error is logged, never ends the task."""
        while True:
            try:
                await self.round()
            except Exception as exc:  # noqa: BLE001 - logged and retried: auditing must not stop for good
                log.error("audit round failed: %s: %s", type(exc).__name__, exc)
            try:
                await asyncio.wait_for(self.wake.wait(), IDLE_S)
            except asyncio.TimeoutError:
                pass
            self.wake.clear()

    async def round(self) -> int:
        """Draw (and audit, if drawn) every eligible entry not drawn yet; returns the entries drawn."""
        rate = self.desk.options.audit_rate
        done = 0
        for job, entry in await asyncio.to_thread(self.ledger.to_audit, rate):
            _, selected = await asyncio.to_thread(self.ledger.draw, entry, rate)
            found: dict[str, Any] = {}
            if selected:
                found = await self.audit(job, entry)
                self.audits += 1
            try:
                await asyncio.to_thread(self.ledger.record_audit, job, entry, rate, **found)
            except LedgerRefused as exc:  # the job changed meanwhile (a later entry): drawn again next round
                log.warning("audit of entry %d not recorded: %s", entry, exc.message)
                continue
            done += 1
            if self.on_append is not None:
                self.on_append()
        return done

    async def audit(self, job: str, entry: int) -> dict[str, Any]:
        """Re-execute the job of eligibility entry ``entry``: the outcome, result, reason and proofs."""
        from ..fraud import build
        from ..reexec import gather, reexecute

        o = self.desk.options
        rec = await asyncio.to_thread(lambda: self.ledger.state.eligibility[job])
        agreeing = [s for s in rec.statements if s["statement"]["node"] in rec.nodes]
        profile = str(agreeing[0]["statement"]["profile"])
        try:
            spec = JobSpec.from_dict(rec.spec)
            async with self.desk.slots():
                prepared = await gather(spec, list(o.nodes), self.desk.store, max_bytes=o.max_bytes)
                ruling = await asyncio.to_thread(reexecute, prepared, profile, o.fuel)
        except CodError as exc:
            return {"outcome": "undecided", "reason": f"the audit could not run: {exc.message}"[:MAX_REASON_CHARS]}
        if ruling.result_cid is None:
            why = ruling.refused or "the job was not re-executed"
            return {"outcome": "undecided", "reason": why[:MAX_REASON_CHARS]}
        if ruling.result_cid == rec.result:
            return {"outcome": "agrees", "result": ruling.result_cid}
        proofs = [(build(rec.spec, s, result_cid=ruling.result_cid, exit_code=ruling.exit_code or 0,
                         trap=ruling.trap, fuel_used=ruling.segment_fuel, method="audit",
                         sources=list(o.nodes)[:MAX_SOURCES]), ruling.result_cid) for s in agreeing]
        log.warning("audit of job %s: re-execution gave %s, %d node(s) signed %s", job, ruling.result_cid,
                    len(agreeing), rec.result)
        return {"outcome": "disagrees", "result": ruling.result_cid, "proofs": proofs}


__all__ = ["Auditor", "FraudDesk", "FraudOptions", "audit_rate"]
