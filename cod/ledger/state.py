"""The ledger's state machine: every leaf, in index order, is applied here or refused.

The service validates a new entry with ``apply`` and the audit replays the whole log through
the same code, so the two can never disagree about what is valid (SPEC.md 12.4 to 12.6).
``apply`` checks everything before it changes anything: a refused entry (EntryRefused) leaves
the state as it was. ``begin``/``rollback`` undo several applied entries at once, so an append
request of many entries is all or nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .entries import (OLD_KINDS, Approval, Audit, Bless, Decision, Eligibility, Entry, EntryRefused, Fraud, Genesis,
                      Proposal, Refusal, Signed, bad, check_new, check_origin_is, check_size, draw_message, leaf_bytes,
                      parse_leaf)
from .evidence import Judgement, admit, judge
from .note import NoteError, Verifier

Row = tuple[str, tuple[Any, ...]]
"""A row of a derived table: (table name, values in the table's column order)."""

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class EligibilityRecord:
    entry: int
    eligible: bool
    result: str | None
    nodes: tuple[str, ...]
    statements: tuple[dict[str, Any], ...]
    spec: dict[str, Any]
    reason: str | None
    blessings: dict[str, int]


@dataclass(frozen=True)
class SignerRecord:
    """What the log says of a node key: what a moderator weighs (SPEC.md 12.5, signers)."""

    first_seen: int      # the eligibility entry that first held a statement of this key
    jobs: int            # jobs whose evidence holds a statement of this key
    disputed: int        # of those, jobs in which another key signed another result


@dataclass(frozen=True)
class BlessingRecord:
    entry: int
    deals: tuple[int, ...]
    source: str


@dataclass(frozen=True)
class DecisionRecord:
    entry: int
    action: str
    result: str
    datacap: int
    moderator: str
    eligibility: int


@dataclass(frozen=True)
class ProposalRecord:
    entry: int
    action: str
    moderator: str
    proposer: str
    signers: tuple[str, ...]     # in the order they signed; the proposer first
    in_effect: int | None        # the leaf at which the change took effect
    kind: str                    # the proposal's kind: v1 (names no ledger) or v2 (SPEC.md 12.6)


@dataclass(frozen=True)
class FraudRecord:
    """A fraud entry: the proof's ID, the liar, the job and result it lied about (SPEC.md 12.10)."""

    entry: int
    proof_id: str
    liar: str
    job: str
    claimed: str
    method: str


@dataclass(frozen=True)
class AuditRecord:
    """An audit entry: the eligibility entry drawn, whether it was selected, what re-executing found."""

    entry: int
    eligibility: int
    selected: bool
    outcome: str | None
    result: str | None
    reason: str | None


@dataclass(frozen=True)
class Judged:
    """An eligibility entry as an audit names it: its job, outcome, agreeing nodes and leaf."""

    job: str
    eligible: bool
    result: str | None
    nodes: tuple[str, ...]
    leaf_hash: str      # lowercase hex SHA-256 of the leaf (what the draw signs)


def claim_key(claim: dict[str, Any]) -> str:
    """What identifies a lie: the canonical JSON of the liar's signed statement (one fraud entry each)."""
    return canonical(claim)


def not_authorized(message: str, hint: str) -> EntryRefused:
    return EntryRefused(403, "NotAuthorized", message, hint)


class LedgerState:
    """What the log says so far: root keys, moderators, blessings, judgements, decisions, proposals."""

    def __init__(self) -> None:
        self.genesis: Genesis | None = None
        self.size = 0
        self.seen: set[bytes] = set()
        self.moderators: dict[str, int] = {}           # ID -> leaf that made it a moderator
        self.changed: dict[str, int] = {}              # ID -> leaf of the latest change of it (added or removed)
        self.blessed: dict[str, int] = {}              # CID -> first bless batch leaf
        self.blessings: dict[str, tuple[BlessingRecord, ...]] = {}   # CID -> every blessing, in leaf order
        self.eligibility: dict[str, EligibilityRecord] = {}   # job -> latest
        self.decisions: dict[str, DecisionRecord] = {}        # job -> latest
        self.decision_entries: dict[str, tuple[int, ...]] = {}  # job -> every decision leaf, in order
        self.jobs_of_result: dict[str, tuple[str, ...]] = {}    # result -> jobs eligible with it, first first
        self.proposals: dict[str, ProposalRecord] = {}
        self.signers: dict[str, SignerRecord] = {}               # node ID -> what the log says of it
        self.eligibility_entries: dict[str, tuple[int, ...]] = {}  # job -> every eligibility leaf, in order
        self.job_signers: dict[str, frozenset[str]] = {}  # job -> every key its evidence ever held
        self.vouched: dict[str, int] = {}  # node ID -> first approve decision naming it among the agreeing nodes
        self.convicted: dict[str, int] = {}  # node ID -> its first fraud entry (SPEC.md 12.10)
        self.frauds: dict[str, FraudRecord] = {}    # claim_key of the liar's statement -> its fraud entry
        self.frauds_of: dict[str, tuple[FraudRecord, ...]] = {}  # node ID -> its fraud entries, in order
        self.audits: dict[str, tuple[AuditRecord, ...]] = {}     # job -> its audit entries, in order
        self.audited: dict[int, int] = {}           # eligibility entry -> the audit entry that drew it
        self.judged: dict[int, Judged] = {}         # eligibility entry -> what an audit of it needs
        self._undo: list[Callable[[], None]] | None = None

    # -- the undo journal ----------------------------------------------------------------------
    def begin(self) -> None:
        """Start recording changes so ``rollback`` can undo every apply since."""
        self._undo = []

    def commit(self) -> None:
        self._undo = None

    def rollback(self) -> None:
        """Undo every apply since ``begin`` (newest first)."""
        for undo in reversed(self._undo or []):
            undo()
        self._undo = None

    def mark(self) -> int:
        """A point inside a ``begin``: ``rollback_to`` undoes the applies after it."""
        assert self._undo is not None
        return len(self._undo)

    def rollback_to(self, mark: int) -> None:
        assert self._undo is not None
        while len(self._undo) > mark:
            self._undo.pop()()

    def _put(self, table: dict[K, V], key: K, value: V) -> None:
        had = key in table
        old = table.get(key)
        table[key] = value
        if self._undo is not None:
            def undo() -> None:
                if had:
                    table[key] = old  # type: ignore[assignment]
                else:
                    del table[key]
            self._undo.append(undo)

    def _pop(self, table: dict[K, V], key: K) -> None:
        old = table.pop(key)
        if self._undo is not None:
            self._undo.append(lambda: table.__setitem__(key, old))

    def _set_size(self, size: int, seen: bytes) -> None:
        self.seen.add(seen)
        old_size = self.size
        self.size = size
        if self._undo is not None:
            def undo() -> None:
                self.seen.discard(seen)
                self.size = old_size
            self._undo.append(undo)

    def skip(self, leaf: bytes) -> None:
        """Count a refused leaf as present (the audit goes on past it to find more problems)."""
        self._set_size(self.size + 1, hashlib.sha256(leaf).digest())

    # -- reading -------------------------------------------------------------------------------
    def blessed_by(self, cid: str) -> int | None:
        return self.blessed.get(cid)

    @property
    def root_keys(self) -> tuple[str, ...]:
        return self.genesis.root_keys if self.genesis else ()

    @property
    def threshold(self) -> int:
        return self.genesis.threshold if self.genesis else 0

    def judge(self, spec: Any, statements: Any, check_signatures: bool = True) -> tuple[Judgement, bool]:
        """Judge new evidence merged with the statements already recorded for the job.

        Returns the judgement and whether it differs from the job's latest eligibility entry
        (False: the answer is that entry). Raises EntryRefused 422 for malformed evidence.
        """
        first = judge(spec, statements, self.blessed_by, check_signatures, self.convicted_at)
        latest = self.eligibility.get(first.job)
        if latest is None:
            return first, True
        known = {canonical(s) for s in latest.statements}
        extra = [s for s in first.statements if canonical(s) not in known]
        kept = admit(latest.statements, extra, self.is_vouched)
        # the new statements were verified just above, the recorded ones when they were appended
        merged = judge(latest.spec, kept, self.blessed_by, check_signatures=False, convicted=self.convicted_at)
        recorded = leaf_bytes(eligibility_entry(merged)) == leaf_bytes(self.latest_entry_of(first.job))
        return merged, not recorded

    def is_vouched(self, node: str) -> bool:
        """Approved (12.5 rule 8), and not proven a liar since (12.10)."""
        return node in self.vouched and node not in self.convicted

    def convicted_at(self, node: str) -> int | None:
        """The first fraud entry naming ``node`` as the liar, or None."""
        return self.convicted.get(node)

    def flags(self, job: str) -> list[dict[str, Any]]:
        """The proven liars among the agreeing nodes of the job's latest eligibility entry (12.10)."""
        rec = self.eligibility.get(job)
        if rec is None or not rec.eligible:
            return []
        return [{"node": node, "fraud": f.entry, "proof_id": f.proof_id}
                for node in rec.nodes for f in self.frauds_of.get(node, ())[:1]]

    def audit_of(self, job: str) -> dict[str, Any] | None:
        """The job's latest audit entry, and whether an audit vouches for its latest result (12.10)."""
        recs = self.audits.get(job, ())
        if not recs:
            return None
        last = recs[-1]
        return {"entry": last.entry, "eligibility": last.eligibility, "selected": last.selected,
                "outcome": last.outcome, "result": last.result, "reason": last.reason}

    def is_audited(self, job: str) -> bool:
        """An audit of the job re-executed it and agreed with the result of its latest eligibility entry."""
        rec = self.eligibility.get(job)
        return rec is not None and rec.eligible and any(
            a.outcome == "agrees" and a.result == rec.result for a in self.audits.get(job, ()))

    def latest_entry_of(self, job: str) -> Eligibility:
        rec = self.eligibility[job]
        return Eligibility(job, rec.spec, rec.statements, rec.eligible, rec.reason, rec.result, rec.nodes,
                           rec.blessings)

    # -- applying ------------------------------------------------------------------------------
    def apply(self, index: int, leaf: bytes, check_signatures: bool = True, parsed: Entry | None = None,
              appending: bool = False) -> list[Row]:
        """Apply leaf ``index``; return the derived rows it adds. Raises EntryRefused, changing nothing.

        ``appending``: the leaf is a new one (an append), not a leaf of the stored log being replayed;
        a new leaf may not be of an old kind (``entries.OLD_KINDS``). Order of checks: size, JSON form
        and fields (413/400), the genesis rule (400), an old kind in an append (422 OldKind), the
        origin (422 WrongLedger), a replay (409), the signature (422), the signer's authority (403),
        the kind's rules.
        """
        if index != self.size:
            raise ValueError(f"leaf {index} applied to a state of size {self.size}")
        if parsed is not None:
            check_size(leaf)
        entry = parse_leaf(leaf) if parsed is None else parsed
        digest = hashlib.sha256(leaf).digest()
        if (index == 0) != isinstance(entry, Genesis):
            raise bad("leaf 0 is the genesis entry, and only leaf 0", "cod ledger init writes the genesis")
        if isinstance(entry, Signed) and self.genesis is not None:
            if appending:
                check_new(entry, self.genesis.origin)
            else:
                check_origin_is(entry, self.genesis.origin)
        if digest in self.seen:
            raise EntryRefused(409, "Replayed", "this exact entry is already in the log",
                               "a statement is recorded once; sign a new one (a new nonce) to say it again")
        if isinstance(entry, Genesis):
            rows = self._genesis(entry)
        elif isinstance(entry, Eligibility):
            rows = self._eligibility(index, entry, leaf, check_signatures)
        elif isinstance(entry, Fraud):
            rows = self._fraud(index, entry)
        elif isinstance(entry, Audit):
            rows = self._audit(index, entry, check_signatures)
        else:
            if check_signatures:
                entry.verify()
            rows = self._signed(index, entry)
        self._set_size(index + 1, digest)
        return rows

    def _genesis(self, g: Genesis) -> list[Row]:
        try:
            verifier = Verifier.from_vkey(g.log_key)
        except NoteError as exc:
            raise bad(f"log_key is not an Ed25519 note vkey: {exc}") from None
        if verifier.name != g.origin:
            raise bad(f"log_key is named {verifier.name!r}, not the origin {g.origin!r}")
        self.genesis = g
        return []

    def _eligibility(self, index: int, e: Eligibility, leaf: bytes, check_signatures: bool) -> list[Row]:
        j = judge(e.spec, list(e.statements), self.blessed_by, check_signatures, self.convicted_at)
        if leaf_bytes(eligibility_entry(j)) != leaf:
            raise EntryRefused(422, "BadEvidence", f"the eligibility entry of job {e.job} is not what the rules of "
                               "SPEC.md 12.5 give for its spec and statements", "the ledger writes these entries itself")
        latest = self.eligibility.get(j.job)
        if latest is not None:
            self._check_grows(latest, j)
        self._count_signers(index, j, latest)
        self._put(self.eligibility_entries, j.job, self.eligibility_entries.get(j.job, ()) + (index,))
        self._put(self.judged, index, Judged(j.job, j.eligible, j.result, j.nodes,
                                                   hashlib.sha256(leaf).hexdigest()))
        if j.result is not None and j.job not in self.jobs_of_result.get(j.result, ()):
            self._put(self.jobs_of_result, j.result, self.jobs_of_result.get(j.result, ()) + (j.job,))
        self._put(self.eligibility, j.job, EligibilityRecord(index, j.eligible, j.result, j.nodes, j.statements,
                                                              j.spec, j.reason, dict(j.blessings)))
        return [("eligibility", (j.job, j.result, int(j.eligible), j.reason, index))]

    def _fraud(self, index: int, f: Fraud) -> list[Row]:
        """A fraud entry: one per lie (the liar's signed statement, checked when the entry was parsed, 12.10)."""
        claim = f.proof["claim"]
        key = claim_key(claim)
        known = self.frauds.get(key)
        if known is not None:
            raise EntryRefused(409, "Replayed", f"the statement of {f.liar} for job {f.job} is proven a lie at entry "
                               f"{known.entry} already", "a lie is recorded once")
        rec = FraudRecord(index, f.proof_id, f.liar, f.job, f.claimed, str(f.proof["referee"]["method"]))
        self._put(self.frauds, key, rec)
        self._put(self.frauds_of, f.liar, self.frauds_of.get(f.liar, ()) + (rec,))
        if f.liar not in self.convicted:
            self._put(self.convicted, f.liar, index)
        return []

    def _audit(self, index: int, a: Audit, check_signatures: bool) -> list[Row]:
        """An audit entry: a draw by the log key for an eligible entry, once per entry (12.10)."""
        entries = self.eligibility_entries.get(a.job, ())
        if a.eligibility not in entries or self.genesis is None:
            raise EntryRefused(422, "BadAudit", f"entry {a.eligibility} is not an eligibility entry of job {a.job}",
                               "the ledger writes audit entries itself")
        earlier = self.audited.get(a.eligibility)
        if earlier is not None:
            raise EntryRefused(409, "Replayed", f"eligibility entry {a.eligibility} was drawn at entry {earlier} "
                               "already", "an entry is drawn once")
        judged = self.judged[a.eligibility]
        if not judged.eligible:
            raise EntryRefused(422, "BadAudit", f"eligibility entry {a.eligibility} is not eligible: only eligible "
                               "entries are drawn", "the ledger writes audit entries itself")
        if check_signatures:
            from .note import Verifier
            message = draw_message(self.genesis.origin, a.eligibility, judged.leaf_hash)
            if not Verifier.from_vkey(self.genesis.log_key).verify(message, a.draw):
                raise EntryRefused(422, "BadSignature", f"the draw of audit entry {index} is not the log key's "
                                   "signature of its eligibility entry", "the ledger draws with its log key")
        if a.outcome == "agrees" and a.result != judged.result:
            raise EntryRefused(422, "BadAudit", f"the audit agrees with result {a.result}, but eligibility entry "
                               f"{a.eligibility} is eligible with {judged.result}", "the ledger writes audit entries itself")
        if a.outcome == "disagrees":
            if a.result == judged.result:
                raise EntryRefused(422, "BadAudit", "the audit disagrees but found the entry's result", "the ledger writes audit entries itself")
            unproven = [n for n in judged.nodes if n not in self.convicted]
            if unproven:
                raise EntryRefused(422, "BadAudit", f"the audit disagrees, but agreeing node {unproven[0]} has no fraud "
                                   "entry before it", "an audit that disagrees follows the fraud entries it proves")
        new = AuditRecord(index, a.eligibility, a.selected, a.outcome, a.result, a.reason)
        self._put(self.audits, a.job, self.audits.get(a.job, ()) + (new,))
        self._put(self.audited, a.eligibility, index)
        return []

    def _check_grows(self, latest: EligibilityRecord, j: Judgement) -> None:
        """Evidence only grows, but for the groups rule 8 of SPEC.md 12.5 evicts (exactly those)."""
        known = {canonical(s) for s in latest.statements}
        extra = [s for s in j.statements if canonical(s) not in known]
        try:
            kept = admit(latest.statements, extra, self.is_vouched)
        except EntryRefused as exc:
            raise EntryRefused(422, "BadEvidence", f"the eligibility entry of job {j.job} is not what merging its "
                               f"new statements gives: {exc.message}",
                               "the ledger writes these entries itself") from None
        if sorted(canonical(s) for s in kept) != sorted(canonical(s) for s in j.statements):
            raise EntryRefused(422, "BadEvidence", f"a later eligibility entry of job {j.job} drops statements "
                               "of the earlier one that rule 8 of SPEC.md 12.5 does not evict", "evidence only grows")

    def _count_signers(self, index: int, j: Judgement, latest: EligibilityRecord | None) -> None:
        """Count the new statements of a job for their keys; a job with a second result is disputed for all."""
        old = latest.statements if latest is not None else ()
        old_nodes = self.job_signers.get(j.job, frozenset())  # the keys evicted by rule 8 too: counted once
        old_results = {s["statement"]["result"] for s in old}
        results = {s["statement"]["result"] for s in j.statements}
        newly_disputed = len(old_results) <= 1 < len(results)
        for s in j.statements:
            node = s["statement"]["node"]
            rec = self.signers.get(node)
            is_new = node not in old_nodes
            if rec is None:
                rec = SignerRecord(index, 0, 0)
            jobs = rec.jobs + (1 if is_new else 0)
            disputed = rec.disputed + (1 if len(results) > 1 and (is_new or newly_disputed) else 0)
            if (jobs, disputed) != (rec.jobs, rec.disputed) or node not in self.signers:
                self._put(self.signers, node, SignerRecord(rec.first_seen, jobs, disputed))
        nodes = old_nodes | {s["statement"]["node"] for s in j.statements}
        if nodes != old_nodes:
            self._put(self.job_signers, j.job, nodes)

    def _signed(self, index: int, s: Signed) -> list[Row]:
        body = s.body
        if isinstance(body, Bless):
            return self._bless(index, body)
        if isinstance(body, Decision):
            return self._decision(index, body)
        if isinstance(body, Proposal):
            return self._proposal(index, s.kind, body)
        if isinstance(body, Approval):
            return self._approval(index, s.kind, body)
        assert isinstance(body, Refusal)
        return [("refusals", (body.node, body.job, body.reason, index))]

    def _moderator(self, who: str, what: str) -> None:
        if who not in self.moderators:
            raise not_authorized(f"{who} is not a current moderator, so cannot sign a {what}",
                                 "ask the root key holders to add the key (cod ledger moderator propose add)")

    def _root(self, who: str, what: str) -> None:
        if who not in self.root_keys:
            raise not_authorized(f"{who} is not a root key of this ledger, so cannot sign a {what}",
                                 "root keys are named at cod ledger init (GET /v1/info lists them)")

    def _bless(self, index: int, b: Bless) -> list[Row]:
        self._moderator(b.signer, "bless batch")
        rows: list[Row] = []
        for item in b.inputs:
            if item.cid not in self.blessed:
                self._put(self.blessed, item.cid, index)
            record = BlessingRecord(index, tuple(item.deals), b.source)
            self._put(self.blessings, item.cid, self.blessings.get(item.cid, ()) + (record,))
            rows.append(("blessings", (item.cid, json.dumps(list(item.deals)), b.source, index)))
        return rows

    def _decision(self, index: int, d: Decision) -> list[Row]:
        self._moderator(d.moderator, "decision")
        latest = self.eligibility.get(d.job)
        if latest is None:
            raise EntryRefused(404, "NotFound", f"job {d.job} has no eligibility entry",
                               "report the job's evidence first (cod run --verify N --ledger URL)")
        if d.eligibility != latest.entry:
            raise EntryRefused(409, "Stale", f"the decision names eligibility entry {d.eligibility}; the job's "
                               f"latest is {latest.entry}", "look at the job again (cod moderation show) and re-sign")
        if not latest.eligible:
            raise EntryRefused(422, "NotEligible", f"job {d.job} is not eligible (entry {latest.entry})",
                               "only eligible jobs are moderated")
        if d.result != latest.result:
            raise EntryRefused(422, "NotEligible", f"result {d.result} is not the job's eligible result {latest.result}",
                               "decide on the result the eligibility entry names")
        previous = self.decisions.get(d.job)
        want = previous.entry if previous else None
        if d.supersedes != want:
            raise EntryRefused(409, "Stale", f"the decision supersedes {d.supersedes}; the job's latest decision is "
                               f"{want}", "look at the job again (cod moderation show) and re-sign")
        if d.action == "approve":
            for node in latest.nodes:
                if node not in self.vouched:
                    self._put(self.vouched, node, index)
        self._put(self.decisions, d.job, DecisionRecord(index, d.action, d.result, d.datacap, d.moderator,
                                                        d.eligibility))
        self._put(self.decision_entries, d.job, self.decision_entries.get(d.job, ()) + (index,))
        return [("decisions", (d.job, d.result, d.action, d.datacap, d.moderator, d.reason, index))]

    def _change_applies(self, action: str, moderator: str) -> bool:
        return (moderator in self.moderators) == (action == "remove")

    def _take_effect(self, index: int, pid: str, rec: ProposalRecord) -> list[Row]:
        if rec.action == "add":
            self._put(self.moderators, rec.moderator, index)
        else:
            self._pop(self.moderators, rec.moderator)
        self._put(self.changed, rec.moderator, index)
        return [("moderator_changes", (rec.moderator, rec.action, pid, index))]

    def _proposal(self, index: int, kind: str, p: Proposal) -> list[Row]:
        self._root(p.proposer, "proposal")
        if p.proposal_id in self.proposals:
            raise EntryRefused(409, "Replayed", f"proposal {p.proposal_id} is already in the log",
                               f"approve it: cod ledger moderator approve {p.proposal_id}")
        if not self._change_applies(p.action, p.moderator):
            state = "already a moderator" if p.action == "add" else "not a moderator"
            raise EntryRefused(409, "AlreadyInEffect", f"{p.moderator} is {state}", "nothing to change")
        rec = ProposalRecord(index, p.action, p.moderator, p.proposer, (p.proposer,), None, kind)
        rows: list[Row] = [("proposals", (p.proposal_id, p.action, p.moderator, p.proposer, index))]
        if self.threshold <= 1:
            rec = ProposalRecord(index, p.action, p.moderator, p.proposer, (p.proposer,), index, kind)
            rows += self._take_effect(index, p.proposal_id, rec)
        self._put(self.proposals, p.proposal_id, rec)
        return rows

    def stale_reason(self, rec: ProposalRecord, approval_kind: str | None = None) -> str | None:
        """Why an open proposal can no longer take effect (SPEC.md 12.6, staleness), or None.

        A v2 proposal is stale once a change of its moderator took effect at a leaf after the
        proposal's own (whatever proposal made it): a proposal counts signatures for the moderator
        set it was made against, never for a later one. A v1 proposal (replayed from an old log) is
        stale, as v1 said, while its change no longer applies; and to a v2 approval it is always
        stale (only v1 approvals, which are never appended again, approve it).
        """
        changed = self.changed.get(rec.moderator)
        old = rec.kind in OLD_KINDS
        if approval_kind is not None and (approval_kind in OLD_KINDS) != old:
            return (f"it is a {rec.kind} proposal and this is a {approval_kind} approval" if not old else
                    f"it is a {rec.kind} proposal, which names no ledger: propose the change again")
        if not old and changed is not None and changed > rec.entry:
            return f"{rec.moderator} was {'added' if rec.moderator in self.moderators else 'removed'} at entry " \
                   f"{changed}, after the proposal (entry {rec.entry})"
        if not self._change_applies(rec.action, rec.moderator):
            return f"{rec.moderator} is {'already' if rec.action == 'add' else 'no longer'} a moderator"
        return None

    def _approval(self, index: int, kind: str, a: Approval) -> list[Row]:
        self._root(a.approver, "approval")
        rec = self.proposals.get(a.proposal)
        if rec is None:
            raise EntryRefused(404, "NotFound", f"no proposal {a.proposal} in the log",
                               "list proposals: cod ledger moderator list")
        if rec.in_effect is not None:
            raise EntryRefused(409, "AlreadyInEffect", f"proposal {a.proposal} took effect at entry {rec.in_effect}",
                               "nothing to approve")
        if a.approver in rec.signers:
            raise EntryRefused(409, "SignedTwice", f"{a.approver} has signed proposal {a.proposal} already",
                               f"it needs {self.threshold} distinct root keys")
        stale = self.stale_reason(rec, kind)
        if stale is not None:
            raise EntryRefused(409, "Stale", f"proposal {a.proposal} can no longer take effect: {stale}",
                               "to make the change now, propose it again (cod ledger moderator propose)")
        signers = rec.signers + (a.approver,)
        effect = index if len(signers) >= self.threshold else None
        new = ProposalRecord(rec.entry, rec.action, rec.moderator, rec.proposer, signers, effect, rec.kind)
        rows: list[Row] = [("approvals", (a.proposal, a.approver, index))]
        if effect is not None:
            rows += self._take_effect(index, a.proposal, new)
        self._put(self.proposals, a.proposal, new)
        return rows


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def eligibility_entry(j: Judgement) -> Eligibility:
    """The eligibility leaf the ledger writes for a judgement."""
    return Eligibility(j.job, j.spec, j.statements, j.eligible, j.reason, j.result, j.nodes, j.blessings)
