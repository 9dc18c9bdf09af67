"""class Ledger: the ledger as a Python library (the service is a thin HTTP shell over it).

A ledger is a data directory holding ``ledger.sqlite`` (store.py) and ``log.key`` (the log's
Ed25519 key, 0600). Every append runs each new leaf through the state machine (state.py), then
writes the leaves, their stored hashes, the derived rows and a new signed checkpoint in one
SQLite transaction; a refused leaf refuses the whole request and stores nothing. Appends and
reads are serialised by one lock, so the service may call from any thread.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AuditFailed, KeyFileError, LocalPathError, NotFound, UsageError
from ..identity import Identity
from . import merkle, tiles
from .checkpoint import Checkpoint
from .entries import (APPROVAL, BLESS, DECISION, PROPOSAL, REFUSAL, Audit, Entry, EntryRefused, Genesis, Signed,
                      check_id, check_new, draw_message, drawn, fraud_entry, kind_of, leaf_bytes, parse_leaf,
                      parse_signed, proposal_id_of)
from .evidence import Judgement, parse_evidence
from .note import NoteError, Signer, append_signatures, check_name, parse_signature_line
from .posters import POSTERS_FILE, Posters
from .state import FraudRecord, LedgerState, Row, claim_key, eligibility_entry
from .store import DB_FILE, Store, connect, create, derived_differences, refresh_views

LOG_KEY_FILE = "log.key"
ORIGIN_PREFIX = "cod-ledger/"


@dataclass
class _Request:
    """One append request waiting for (or done by) a group commit."""

    leaves: Sequence[bytes]
    parsed: Sequence[Entry] | None
    verified: bool
    done: bool = False
    result: list[int] | None = None
    error: BaseException | None = None


class Ledger:
    """An open ledger. Make one with ``Ledger.init`` or ``Ledger.open``."""

    def __init__(self, data_dir: Path, store: Store, signer: Signer, state: LedgerState) -> None:
        self.data_dir = data_dir
        self._store = store
        self._signer = signer
        self._state = state
        self._lock = threading.RLock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Request] = []
        self._posters = Posters(data_dir / POSTERS_FILE)
        self.audit_rate = 0
        """Millionths of newly eligible entries audited (`--audit P`); when not 0, an eligible entry
        enters the moderation queue once its audit entry is recorded (12.10)."""

    # -- making and opening --------------------------------------------------------------------
    @classmethod
    def init(cls, data_dir: Path, root_keys: Sequence[str], threshold: int, origin: str | None = None) -> Ledger:
        """Create a ledger: log.key (0600), the genesis leaf and the first checkpoint.

        Raises UsageError for bad root keys, threshold or origin; LocalPathError if a ledger
        exists there already; KeyFileError if log.key exists.
        """
        keys = sorted(set(root_keys))
        if not keys:
            raise UsageError("a ledger needs at least one root key", "pass --root-key ID (cod keygen prints one)")
        for key in keys:
            try:
                check_id(key, "root key")
            except EntryRefused as exc:
                raise UsageError(exc.message, exc.hint) from None
        if not 1 <= threshold <= len(keys):
            raise UsageError(f"threshold {threshold} is not between 1 and the {len(keys)} root keys",
                             "K of the root keys must sign a moderator change")
        data_dir = Path(data_dir)
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LocalPathError(f"cannot create {data_dir}: {exc.strerror}") from None
        if (data_dir / DB_FILE).exists():
            raise LocalPathError(f"{data_dir} holds a ledger already", "open it (cod ledger serve), or choose "
                                 "another --data-dir")
        identity = Identity.create_key_file(data_dir / LOG_KEY_FILE)
        name = origin if origin is not None else ORIGIN_PREFIX + identity.node_id
        try:
            check_name(name)
        except ValueError as exc:
            raise UsageError(f"origin {name!r} is not usable: {exc}", "an origin is a key name: no spaces, no '+'") \
                from None
        signer = Signer(name, identity.signing_key)
        genesis = Genesis(name, signer.vkey, tuple(keys), threshold)
        store = Store(connect(data_dir / DB_FILE))
        create(store.conn)
        ledger = cls(data_dir, store, signer, LedgerState())
        ledger._append([leaf_bytes(genesis)])
        return ledger

    @classmethod
    def open(cls, data_dir: Path) -> Ledger:
        """Open a ledger and replay its log (signatures are the audit's job, not startup's).

        Raises LocalPathError when there is no ledger, KeyFileError for log.key, and AuditFailed
        when the log does not replay or its latest checkpoint does not match the entries.
        """
        data_dir = Path(data_dir)
        if not (data_dir / DB_FILE).is_file():
            raise LocalPathError(f"{data_dir} holds no ledger ({DB_FILE} is missing)",
                                 "create one: cod ledger init --data-dir D --root-key ID --threshold K")
        identity = Identity.from_key_file(data_dir / LOG_KEY_FILE)
        store = Store(connect(data_dir / DB_FILE))
        refresh_views(store.conn)
        state = LedgerState()
        conn = store.conn
        derived: dict[str, list[tuple[Any, ...]]] = {}
        n = 0
        leaves = merkle.RootBuilder()  # the root the leaves themselves give, not the stored hashes'
        for idx, leaf in conn.execute("SELECT idx, leaf FROM entries ORDER BY idx"):
            if idx != n:
                raise AuditFailed([f"entry {n} is missing"], "run cod ledger verify")
            leaves.add(merkle.leaf_hash(leaf.encode()))
            try:
                for table, row in state.apply(n, leaf.encode(), check_signatures=False):
                    derived.setdefault(table, []).append(row)
            except EntryRefused as exc:
                raise AuditFailed([f"entry {n} does not replay: {exc.message}"], "run cod ledger verify") from None
            n += 1
        if state.genesis is None:
            raise AuditFailed(["the ledger has no genesis entry"], "run cod ledger verify")
        signer = Signer(state.genesis.origin, identity.signing_key)
        if signer.vkey != state.genesis.log_key:
            raise KeyFileError(f"{data_dir / LOG_KEY_FILE} is not the key the genesis names ({state.genesis.log_key})")
        latest = store.latest_checkpoint()
        if latest is None or latest[0] != n:
            raise AuditFailed([f"the latest checkpoint is of size {latest[0] if latest else 0}, the log holds {n} "
                               "entries"], "run cod ledger verify")
        if merkle.tree_hash(n, store.read_hashes) != latest[1]:
            raise AuditFailed(["the stored hashes do not give the latest checkpoint's root"], "run cod ledger verify")
        if leaves.root() != latest[1]:  # a leaf rewritten by hand would be replayed, and served, unsigned
            raise AuditFailed(["the entries do not give the latest checkpoint's root (an entry was rewritten)"],
                              "run cod ledger verify")
        # the derived tables are what Datasette and SQL readers see: rows written by hand are refused here
        differences = derived_differences(conn, derived)
        if differences:
            store.conn.close()
            raise AuditFailed(differences, "the derived tables were edited outside cod: run cod ledger verify; "
                              "restore the data directory from a copy that verifies")
        return cls(data_dir, store, signer, state)

    def close(self) -> None:
        with self._lock:
            self._store.conn.close()
            self._posters.close()

    # -- facts ---------------------------------------------------------------------------------
    @property
    def origin(self) -> str:
        return self._signer.name

    @property
    def vkey(self) -> str:
        return self._signer.vkey

    @property
    def size(self) -> int:
        return self._state.size

    @property
    def state(self) -> LedgerState:
        """The replayed state (read it; never change it)."""
        return self._state

    def info(self) -> dict[str, Any]:
        with self._lock:
            return {"origin": self.origin, "vkey": self.vkey, "size": self.size,
                    "root_keys": list(self._state.root_keys), "threshold": self._state.threshold,
                    "moderators": self.moderators()}

    # -- appending -----------------------------------------------------------------------------
    def _reader(self, pending: dict[int, bytes]) -> merkle.HashReader:
        def read(indexes: list[int]) -> list[bytes]:
            missing = [i for i in indexes if i not in pending]
            found = dict(zip(missing, self._store.read_hashes(missing)))
            return [pending[i] if i in pending else found[i] for i in indexes]
        return read

    def _append(self, leaves: Sequence[bytes], parsed: Sequence[Entry] | None = None,
                verified: bool = False) -> list[int]:
        """Apply and store ``leaves`` with a new checkpoint; all or nothing. Returns their indexes.

        ``parsed``, when given, holds the entries the leaves are the leaf_bytes of; ``verified``
        says the caller checked their signatures (before taking the lock: Ed25519 checks of anyone's
        entries never hold up the readers; a signature's validity does not depend on the state). Group commit:
        requests of other threads waiting for the lock are written in the same SQLite
        transaction under one checkpoint (each request still all or nothing); the caller's own
        request goes first, so what it judged under the lock is what it appends.
        """
        request = _Request(leaves, parsed, verified)
        with self._queue_lock:
            self._queue.append(request)
        with self._lock:
            if not request.done:
                with self._queue_lock:
                    others = [r for r in self._queue if r is not request]
                    self._queue = []
                self._commit_group([request] + others)
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _commit_group(self, group: list[_Request]) -> None:
        """Apply each request (a refused one is undone alone), then store all accepted ones at once."""
        state = self._state
        start = state.size
        state.begin()
        derived: list[Row] = []
        rows: list[tuple[int, str, str, bytes]] = []
        accepted: list[_Request] = []
        try:
            for request in group:
                mark = state.mark()
                mine: list[Row] = []
                new_rows = []
                try:
                    for i, leaf in enumerate(request.leaves):
                        index = start + len(rows) + i
                        entry = request.parsed[i] if request.parsed is not None else parse_leaf(leaf)
                        mine += state.apply(index, leaf, check_signatures=not request.verified, parsed=entry,
                                            appending=True)
                        new_rows.append((index, kind_of(entry), leaf.decode(), merkle.leaf_hash(leaf)))
                except Exception as exc:  # noqa: BLE001 - the request's own error, raised in its own thread
                    state.rollback_to(mark)
                    request.error = exc
                    continue
                request.result = [r[0] for r in new_rows]
                rows += new_rows
                derived += mine
                accepted.append(request)
            if rows:
                self._store_rows(start, rows, derived)
        except BaseException as exc:  # a failed write (or an interrupt): nothing of the group is kept
            state.rollback()
            for request in group:
                if request in accepted or request.error is None:
                    request.error, request.result = exc, None
                request.done = True
            raise
        state.commit()
        for request in group:
            request.done = True

    def _store_rows(self, start: int, rows: list[tuple[int, str, str, bytes]], derived: list[Row]) -> None:
        """Stored hashes, the signed checkpoint, and one SQLite transaction for rows appended at ``start``."""
        pending: dict[int, bytes] = {}
        read = self._reader(pending)
        first = merkle.stored_hash_count(start)
        for row in rows:
            new = merkle.stored_hashes_for_record_hash(row[0], row[3], read)
            base = merkle.stored_hash_count(row[0])
            for k, h in enumerate(new):
                pending[base + k] = h
        size = start + len(rows)
        root = merkle.tree_hash(size, read)
        note = self._signer.sign(Checkpoint(self.origin, size, root).body().decode())
        hashes = sorted((i, h) for i, h in pending.items() if i >= first)
        self._store.append(rows, hashes, derived, (size, root, note))

    def _verify(self, entry: Signed) -> None:
        """The checks of a new signed entry that need no lock: its kind and origin (this ledger's), then
        its signature (so a statement for another ledger is named as such, whatever its signature)."""
        check_new(entry, self.origin)
        entry.verify()

    def _signed(self, parsed: Sequence[Signed]) -> list[int]:
        """Verify the signatures outside the lock, then apply and store (all or nothing)."""
        for entry in parsed:
            self._verify(entry)
        return self._append([leaf_bytes(e) for e in parsed], parsed, verified=True)

    def append_signed(self, payloads: Sequence[Any]) -> list[int]:
        """Append signed entries as received (any signed kind), validated; all or nothing."""
        return self._signed([parse_signed(p) for p in payloads])

    def bless(self, batches: Sequence[Any]) -> list[int]:
        """Append bless batches (one leaf each), in one transaction."""
        return self._signed([parse_signed(b, BLESS) for b in batches])

    def report_evidence(self, spec: Any, statements: Any, poster: str | None = None) -> tuple[int, Judgement, bool]:
        """Judge evidence (merged with what the job has); append an eligibility entry if it changes.

        Returns (entry, judgement, new): new is False when the judgement is the job's latest entry.
        ``poster`` (the client's address, or the scanned node) is kept beside a new entry.
        Raises EntryRefused 422 for malformed evidence (nothing stored).
        """
        parse_evidence(spec, statements)  # every check of the evidence alone, signatures too, outside the lock
        with self._lock:
            judgement, changed = self._state.judge(spec, statements, check_signatures=False)
            if not changed:
                return self._state.eligibility[judgement.job].entry, judgement, False
            (index,) = self._append([leaf_bytes(eligibility_entry(judgement))], verified=True)
            if poster is not None:
                self._posters.record(index, poster)
            return index, judgement, True

    # -- fraud proofs and audits (12.10) ----------------------------------------------------------
    def fraud_of(self, claim: dict[str, Any]) -> FraudRecord | None:
        """The fraud entry of a liar's signed statement (SignedStatement.to_json()), if recorded."""
        with self._lock:
            return self._state.frauds.get(claim_key(claim))

    def record_fraud(self, proof: Any, result: str | None) -> tuple[FraudRecord, bool]:
        """Append the fraud entry of a proof (a cod.fraud.FraudProof) that this ledger checked and
        found ``result`` for; (its record, True), or (the recorded one, False) when the lie is known."""
        leaf = leaf_bytes(fraud_entry(proof, result))
        key = claim_key(proof.claim.to_json())
        with self._lock:
            known = self._state.frauds.get(key)
            if known is not None:
                return known, False
            self._append([leaf], verified=True)
            return self._state.frauds[key], True

    def draw(self, eligibility: int, rate: int) -> tuple[bytes, bool]:
        """The log key's audit draw for eligibility entry ``eligibility``, and whether it selects it at ``rate``."""
        with self._lock:
            judged = self._state.judged[eligibility]
        signature = self._signer.sign_bytes(draw_message(self.origin, eligibility, judged.leaf_hash))
        return signature, drawn(signature, rate)

    def to_audit(self, rate: int) -> list[tuple[str, int]]:
        """(job, entry) of every job whose latest eligibility entry is eligible and not drawn yet, oldest first."""
        with self._lock:
            return [(job, rec.entry) for job, rec in sorted(self._state.eligibility.items(), key=lambda kv: kv[1].entry)
                    if rec.eligible and rec.entry not in self._state.audited and self.job_state(job) == "eligible"]

    def record_audit(self, job: str, eligibility: int, rate: int, *, outcome: str | None = None,
                     result: str | None = None, reason: str | None = None,
                     proofs: Sequence[tuple[Any, str | None]] = ()) -> list[int]:
        """Append the audit entry of a draw (after the fraud entries of ``proofs``, (FraudProof, result)
        pairs, that are not recorded yet), all or nothing; returns the indexes appended."""
        draw, selected = self.draw(eligibility, rate)
        audit = Audit(job, eligibility, rate, draw, selected, outcome if selected else None,
                      result if selected else None, reason if selected else None)
        with self._lock:
            leaves = [leaf_bytes(fraud_entry(p, r)) for p, r in proofs
                      if claim_key(p.claim.to_json()) not in self._state.frauds]
            return self._append(leaves + [leaf_bytes(audit)], verified=True)

    def signers(self, job: str) -> list[dict[str, Any]]:
        """Each key in the job's evidence with what the log says of it (12.7): for a moderator to weigh."""
        with self._lock:
            rec = self._state.eligibility.get(job)
            if rec is None:
                return []
            out = []
            for s in rec.statements:
                node, result = s["statement"]["node"], s["statement"]["result"]
                known = self._state.signers[node]
                out.append({"node": node, "result": result, "agrees": rec.eligible and result == rec.result,
                            "first_seen": known.first_seen, "jobs": known.jobs, "disputed_jobs": known.disputed})
            return out

    def posters(self, job: str) -> list[dict[str, Any]]:
        """Who posted each eligibility entry of the job, as recorded beside the log (None: not recorded)."""
        with self._lock:
            entries_of = self._state.eligibility_entries.get(job, ())
            found = self._posters.of(entries_of)
            return [{"entry": e, "poster": found.get(e)} for e in entries_of]

    def _one(self, signed: Any, kind: str) -> tuple[int, Entry]:
        entry = parse_signed(signed, kind)
        return self._signed([entry])[0], entry

    def decide(self, signed: Any) -> int:
        """Append a moderator's decision (12.6); EntryRefused says why not."""
        return self._one(signed, DECISION)[0]

    def propose(self, signed: Any) -> tuple[int, str]:
        """Append a root key holder's proposal; returns (entry, proposal_id)."""
        index, entry = self._one(signed, PROPOSAL)
        assert isinstance(entry, Signed)
        return index, proposal_id_of(entry.statement)

    def approve(self, signed: Any) -> tuple[int, bool]:
        """Append an approval; returns (entry, whether the change is now in effect)."""
        entry = parse_signed(signed, APPROVAL)
        self._verify(entry)  # outside the lock, as every signature
        with self._lock:
            (index,) = self._append([leaf_bytes(entry)], [entry], verified=True)
            effect = self._state.proposals[str(entry.statement["proposal"])].in_effect
            return index, effect is not None and effect <= index

    def refusal(self, signed: Any) -> int:
        """Append a node's signed refusal."""
        return self._one(signed, REFUSAL)[0]

    def add_cosignature(self, size: int, witness_name: str, line: str) -> bool:
        """Keep a witness's cosignature line of the checkpoint at ``size``; False if it had one.

        The caller verified the cosignature (witness.add_checkpoint does, given the witness's
        vkey); this refuses (EntryRefused 400) a line that is not a signature line of that
        witness, or a size with no checkpoint, so ``checkpoint()`` always serves a valid note.
        """
        try:
            parsed = parse_signature_line(line)
        except NoteError as exc:
            raise EntryRefused(400, "BadRequest", f"not a cosignature line: {exc}") from None
        if parsed.name != witness_name:
            raise EntryRefused(400, "BadRequest", f"the line is signed by {parsed.name!r}, not {witness_name!r}")
        with self._lock:
            if self._store.checkpoint_at(size) is None:
                raise EntryRefused(400, "BadRequest", f"the ledger has no checkpoint of size {size}")
            return self._store.add_cosignature(size, witness_name, line)

    # -- the log -------------------------------------------------------------------------------
    def read_hashes(self, indexes: list[int]) -> list[bytes]:
        with self._lock:
            return self._store.read_hashes(indexes)

    def entries(self, start: int, end: int) -> list[bytes]:
        with self._lock:
            return self._store.entries(start, end)

    def checkpoint(self, size: int | None = None) -> str:
        """The signed checkpoint note of ``size`` (default: latest) with its cosignatures appended."""
        with self._lock:
            size = self.size if size is None else size
            note = self._store.checkpoint_at(size)
            if note is None:
                raise NotFound(f"the ledger has no checkpoint of size {size}",
                               "checkpoints exist at the sizes appends reached; ask for the latest")
            return append_signatures(note, [line for _, line in self._store.cosignatures(size)])

    def latest_checkpoint(self) -> tuple[int, str]:
        """The size and signed checkpoint note of the latest checkpoint, read together under the lock.

        ``size`` alone may be read mid group-commit (a size no checkpoint has); this never is.
        """
        with self._lock:
            size = self.size
            return size, self.checkpoint(size)

    def mirror(self, directory: Path) -> int:
        """Write the log as static C2SP tlog-tiles files (checkpoint, tile/..., tile/entries/...).

        Any static HTTP server of ``directory`` is then a mirror ``cod ledger verify --url`` can
        audit. Returns the tree size written. Raises LocalPathError if the directory is unusable.
        """
        with self._lock:
            size = self.size
            files: dict[str, bytes] = {"checkpoint": self.checkpoint(size).encode()}
            for level, index, width in tiles.tiles_of(size):
                files[tiles.tile_path(level, index, width)] = tiles.tile_bytes(level, index, width,
                                                                             self._store.read_hashes)
                if level == 0:
                    start = index * tiles.TILE_WIDTH
                    files[tiles.entries_path(index, width)] = tiles.bundle(self._store.entries(start, start + width))
        try:
            # the checkpoint last: a reader of a half-written mirror sees the old tree, whole
            for name, data in sorted(files.items(), key=lambda kv: (kv[0] == "checkpoint", kv[0])):
                path = Path(directory) / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        except OSError as exc:
            raise LocalPathError(f"cannot write the mirror in {directory}: {exc.strerror}") from None
        return size

    def _sizes(self, first: int, second: int | None) -> int:
        size = self.size if second is None else second
        if not 0 < size <= self.size:
            raise EntryRefused(400, "BadRequest", f"tree size {size} is not between 1 and {self.size}")
        if not 0 <= first < size + (1 if second is not None else 0):
            raise EntryRefused(400, "BadRequest", f"{first} is not within the tree of size {size}")
        return size

    def inclusion(self, index: int, size: int | None = None) -> dict[str, Any]:
        """The inclusion proof of leaf ``index`` in the tree of ``size`` (default: latest), with the leaf."""
        with self._lock:
            t = self._sizes(index, size)
            if index >= t:
                raise EntryRefused(400, "BadRequest", f"leaf {index} is not in the tree of size {t}")
            proof = merkle.prove_record(t, index, self._store.read_hashes)
            return {"leaf_index": index, "tree_size": t,
                    "leaf": base64.b64encode(self._store.entries(index, index + 1)[0]).decode(),
                    "inclusion_path": [base64.b64encode(h).decode() for h in proof], "checkpoint": self.checkpoint(t)}

    def consistency(self, old: int, new: int | None = None) -> dict[str, Any]:
        """The consistency proof from size ``old`` to ``new`` (default: latest)."""
        with self._lock:
            t = self._sizes(old, new)
            if old < 1:
                raise EntryRefused(400, "BadRequest", "the old size is at least 1")
            proof = merkle.prove_tree(t, old, self._store.read_hashes)
            return {"old": old, "new": t, "proof": [base64.b64encode(h).decode() for h in proof],
                    "checkpoint": self.checkpoint(t)}

    # -- queries -------------------------------------------------------------------------------
    def _leaf(self, index: int) -> dict[str, Any]:
        value = json.loads(self._store.entries(index, index + 1)[0])
        assert isinstance(value, dict)
        return value

    def input(self, cid: str) -> dict[str, Any]:
        """Whether ``cid`` is blessed, from the replayed state (never from a table anyone could write)."""
        with self._lock:
            found = self._state.blessings.get(cid, ())
            return {"cid": cid, "blessed": bool(found),
                    "blessings": [{"entry": b.entry, "deals": list(b.deals), "source": b.source} for b in found]}

    def job_state(self, job: str) -> str:
        """eligible | ineligible | approved | rejected | unknown."""
        rec = self._state.eligibility.get(job)
        if rec is None:
            return "unknown"
        decision = self._state.decisions.get(job)
        # A decision stands while the job stays eligible with the result it judged: more agreeing
        # statements arriving later (a node scanned late, anyone's extra key) must not undo it.
        if decision is not None and rec.eligible and decision.result == rec.result:
            return "approved" if decision.action == "approve" else "rejected"
        return "eligible" if rec.eligible else "ineligible"

    def job(self, job: str) -> dict[str, Any]:
        """The job's latest eligibility entry (with its evidence), its decisions, and its state."""
        with self._lock:
            rec = self._state.eligibility.get(job)
            eligibility = None
            if rec is not None:
                eligibility = {"entry": rec.entry, "eligible": rec.eligible, "reason": rec.reason,
                               "result": rec.result, "nodes": list(rec.nodes), "blessings": rec.blessings,
                               "spec": rec.spec, "statements": list(rec.statements)}
            decisions = []
            for entry in self._state.decision_entries.get(job, ()):
                leaf = self._leaf(entry)
                decisions.append({"entry": entry, **leaf["statement"], "statement": leaf["statement"],
                                  "signature": leaf["signature"]})
            latest = self._state.decisions.get(job)
            if eligibility is not None:
                eligibility["signers"] = self.signers(job)
                eligibility["posters"] = self.posters(job)
            return {"job": job, "eligibility": eligibility, "decisions": decisions, "state": self.job_state(job),
                    "latest_decision": latest.entry if latest else None, "flags": self._state.flags(job),
                    "audit": self._state.audit_of(job), "audited": self._state.is_audited(job)}

    def queue(self, cursor: int = -1, limit: int | None = None) -> list[dict[str, Any]]:
        """Eligible jobs with no decision on their latest eligibility entry, oldest first.

        ``cursor`` and ``limit`` page it: the jobs whose latest eligibility entry is after ``cursor``,
        at most ``limit`` of them (the service passes the last entry of a page as the next cursor).
        """
        with self._lock:
            out: list[dict[str, Any]] = []
            for job, rec in sorted(self._state.eligibility.items(), key=lambda kv: kv[1].entry):
                if limit is not None and len(out) >= limit:
                    break
                if rec.entry > cursor and self.job_state(job) == "eligible" and (
                        not self.audit_rate or rec.entry in self._state.audited):
                    out.append({"job": job, "result": rec.result, "entry": rec.entry, "nodes": list(rec.nodes),
                                "inputs": sorted(rec.blessings), "signers": self.signers(job),
                                "posters": self.posters(job), "flags": self._state.flags(job),
                                "audit": self._state.audit_of(job), "audited": self._state.is_audited(job)})
            return out

    def result(self, cid: str) -> dict[str, Any]:
        """The notary's answer for a result CID; NotFound if no job was ever eligible with it."""
        with self._lock:
            jobs = list(self._state.jobs_of_result.get(cid, ()))
            if not jobs:
                raise NotFound(f"no eligible job has result {cid}", "the ledger knows results of eligible jobs only")
            chosen = jobs[0]
            for job in jobs:
                if self.job_state(job) == "approved" and self._state.decisions[job].result == cid:
                    chosen = job
                    break
            rec = self._state.eligibility[chosen]
            decision = self._state.decisions.get(chosen)
            approved = self.job_state(chosen) == "approved" and rec.result == cid
            answer: dict[str, Any] = {"result": cid, "approved": approved, "job": chosen, "nodes": list(rec.nodes),
                                      "datacap": decision.datacap if approved and decision else 0,
                                      "decision": None, "proof": None, "flags": self._state.flags(chosen)}
            if decision is not None:
                leaf = self._leaf(decision.entry)
                answer["decision"] = {"entry": decision.entry, "statement": leaf["statement"],
                                      "signature": leaf["signature"]}
                answer["proof"] = self.inclusion(decision.entry)
            return answer

    def moderators(self) -> list[str]:
        with self._lock:
            return sorted(self._state.moderators)

    def proposals(self) -> list[dict[str, Any]]:
        with self._lock:
            # the signed statement too: a root key holder checks that it hashes to the ID before signing
            return [{"proposal_id": pid, "action": p.action, "moderator": p.moderator, "entry": p.entry,
                     "signatures": list(p.signers), "in_effect": p.in_effect is not None,
                     "effective_entry": p.in_effect, "statement": self._leaf(p.entry)["statement"],
                     "stale": p.in_effect is None and self._state.stale_reason(p, APPROVAL) is not None}
                    for pid, p in sorted(self._state.proposals.items(), key=lambda kv: kv[1].entry)]

    def proposal(self, pid: str) -> dict[str, Any]:
        for p in self.proposals():
            if p["proposal_id"] == pid:
                return p
        raise NotFound(f"no proposal {pid}", "list them: cod ledger moderator list")
