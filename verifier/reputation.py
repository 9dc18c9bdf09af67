"""The requester's records (SQLite via sqlite-utils): nodes with their track record, jobs, runs.

A node's record counts how often it agreed, disagreed (was outside a strict majority),
failed (no answer, crash, refusal, a malformed answer, results it would not hand over),
sent a bad signature, or lied: signed a result the requester's own re-execution (the referee,
SPEC 11.3) proved wrong. A proven lie is kept apart from mere disagreement, and a node with
one ranks last. Selection prefers the best score.

Every verification is a row of ``runs`` (never overwritten: a run recorded before its nodes
were asked, ``running``, is completed in place once, by ``finish_run``); the ``jobs`` row of a
job mirrors its latest run. Timestamps are kept for the records only: nothing that reaches a
result reads them. Schema versions (``PRAGMA user_version``): 0 is Stage 2 (``nodes``,
``jobs``), 1 adds ``runs``, 2 ``runs.extra``, 3 ``nodes.last_seen``, 4 ``nodes.lied``; opening an older
database migrates it in one transaction, each Stage 2 job becoming one run with unknown
timestamps.

Nodes of an embedded devstack (``cod run --verify N`` with no nodes configured) live for one
command; their runs are kept, but they are not added to ``nodes`` (``Records.ephemeral``).
"""

from __future__ import annotations

import copy
import json
import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cod.errors import LocalPathError, UsageError

from .outcomes import UNFINISHED

COUNTERS = ("agreed", "disagreed", "failed", "bad_signature", "lied")
SCHEMA_VERSION = 4
PROVEN_LIE_WEIGHT = 1_000_000
"""What one proven lie takes from a score: more than any record of agreement earns back (ranks it last)."""
LOCK_TIMEOUT_S = 30.0
"""How long a command waits for another cod process that holds the records' write lock."""
MAX_CANDIDATES_SHOWN = 10
NODE_COLUMNS = ("node_id", "url", "profile", "agreed", "disagreed", "failed", "bad_signature", "last_seen", "lied")
NODE_ID_PREFIX = "12D3KooW"
"""What every node ID (an Ed25519 libp2p peer ID) starts with; short node IDs leave it out."""
RUN_COLUMNS = ("run_id", "job_cid", "started_at", "finished_at", "outcome", "result_cid", "n", "quorum", "note",
               "extra", "answers")

_CREATE = [
    "CREATE TABLE IF NOT EXISTS nodes (node_id TEXT PRIMARY KEY, url TEXT, profile TEXT, agreed INTEGER DEFAULT 0, "
    "disagreed INTEGER DEFAULT 0, failed INTEGER DEFAULT 0, bad_signature INTEGER DEFAULT 0, last_seen TEXT, "
    "lied INTEGER DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS jobs (job_cid TEXT PRIMARY KEY, seq INTEGER, outcome TEXT, result_cid TEXT, "
    "n INTEGER, quorum INTEGER, spec TEXT, answers TEXT)",
    "CREATE TABLE IF NOT EXISTS runs (run_id INTEGER PRIMARY KEY AUTOINCREMENT, job_cid TEXT NOT NULL, "
    "started_at TEXT, finished_at TEXT, outcome TEXT NOT NULL, result_cid TEXT, n INTEGER, quorum INTEGER, "
    "note TEXT, answers TEXT NOT NULL, extra TEXT NOT NULL DEFAULT '{}')",
    "CREATE INDEX IF NOT EXISTS runs_by_job ON runs (job_cid, run_id)",
]


def default_path() -> Path:
    home = os.environ.get("COD_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share", "cod")
    return Path(home) / "requester.db"


def now() -> str:
    """A record timestamp (UTC, ISO 8601, seconds): for people reading records, never for results."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


JOB_CID_PREFIX = "bagaaiera"
"""What every job CID starts with: multibase base32 of CIDv1, json (0x0200), sha2-256, 32
bytes (five bytes, exactly eight base32 characters after the ``b``); short IDs leave it out."""


def _run(row: Any) -> dict[str, Any]:
    run = dict(zip(RUN_COLUMNS, row))
    return dict(run, extra=json.loads(run["extra"] or "{}"), answers=json.loads(run["answers"]))


class Records:
    keep_nodes = True
    """False for the records of an embedded devstack's run: nodes are neither added nor counted."""

    def __init__(self, path: Path | None = None) -> None:
        path = path or default_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # plain sqlite3: every command that records a run opens this, and sqlite-utils costs
        # ~40 ms to import (BENCHMARKS.md "Stage 5: start-up"); the SQL here is all explicit
        try:
            self.conn = sqlite3.connect(str(path), timeout=LOCK_TIMEOUT_S)
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except sqlite3.Error as exc:
            raise LocalPathError(f"cannot use the records database {str(path)!r}: {exc}",
                                 "if it is damaged, move it aside (cod starts new records; COD_HOME moves them); "
                                 "if another cod holds it, wait for it") from None

    def _migrate(self) -> None:
        """Bring the database to SCHEMA_VERSION: create what is missing, turn old jobs into runs."""
        conn = self.conn
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version >= SCHEMA_VERSION:
            return
        with conn:
            for statement in _CREATE:
                conn.execute(statement)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
            if "extra" not in columns:  # a version-1 database
                conn.execute("ALTER TABLE runs ADD COLUMN extra TEXT NOT NULL DEFAULT '{}'")
            if "last_seen" not in {row[1] for row in conn.execute("PRAGMA table_info(nodes)")}:  # version 2
                conn.execute("ALTER TABLE nodes ADD COLUMN last_seen TEXT")
            if "lied" not in {row[1] for row in conn.execute("PRAGMA table_info(nodes)")}:  # version 3
                conn.execute("ALTER TABLE nodes ADD COLUMN lied INTEGER DEFAULT 0")
            # Stage 2 kept one row per job (the last run): it becomes that job's one run
            conn.execute(
                "INSERT INTO runs (job_cid, started_at, finished_at, outcome, result_cid, n, quorum, note, answers) "
                "SELECT job_cid, NULL, NULL, outcome, result_cid, n, quorum, NULL, COALESCE(answers, '[]') "
                "FROM jobs WHERE job_cid NOT IN (SELECT job_cid FROM runs) ORDER BY seq")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # plain SQL on the hot path: sqlite-utils' upsert introspects the table on every call
    def ephemeral(self) -> "Records":
        """These records, for nodes that live for one command: runs are kept, nodes are not."""
        view = copy.copy(self)
        view.keep_nodes = False
        return view

    def see(self, node_id: str, url: str, profile: str) -> None:
        if not self.keep_nodes:
            return
        with self.conn:
            self.conn.execute(
                "INSERT INTO nodes (node_id, url, profile, agreed, disagreed, failed, bad_signature, last_seen) "
                "VALUES (?, ?, ?, 0, 0, 0, 0, ?) ON CONFLICT(node_id) DO UPDATE SET url = excluded.url, "
                "profile = excluded.profile, last_seen = excluded.last_seen", [node_id, url, profile, now()])

    def find_nodes(self, prefix: str) -> list[str]:
        """Node IDs equal to ``prefix``, or starting with it, or with it after ``12D3KooW``."""
        conn = self.conn
        rows = conn.execute("SELECT node_id FROM nodes WHERE node_id = ? OR substr(node_id, 1, ?) = ? "
                            "OR substr(node_id, ?, ?) = ? ORDER BY node_id",
                            [prefix, len(prefix), prefix, len(NODE_ID_PREFIX) + 1, len(prefix), prefix]).fetchall()
        return [str(r[0]) for r in rows]

    def forget_node(self, node_id: str) -> bool:
        """Remove a node and its counts (runs keep their signed answers); False if it was unknown."""
        with self.conn:
            cursor = self.conn.execute("DELETE FROM nodes WHERE node_id = ?", [node_id])
        return cursor.rowcount > 0

    def bump(self, node_id: str, counter: str) -> None:
        assert counter in COUNTERS
        if not self.keep_nodes:
            return
        with self.conn:
            self.conn.execute(f"UPDATE nodes SET {counter} = COALESCE({counter}, 0) + 1 WHERE node_id = ?",
                                 [node_id])

    def score(self, node_id: str) -> int:
        row = self.node(node_id)
        if row is None:
            return 0
        return int(row["agreed"] or 0) - 4 * int(row["disagreed"] or 0) - 2 * int(row["failed"] or 0) - 8 * int(
            row["bad_signature"] or 0) - PROVEN_LIE_WEIGHT * int(row.get("lied") or 0)

    def node(self, node_id: str) -> dict[str, Any] | None:
        cursor = self.conn.execute(f"SELECT {', '.join(NODE_COLUMNS)} FROM nodes WHERE node_id = ?", [node_id])
        row = cursor.fetchone()
        return dict(zip(NODE_COLUMNS, row)) if row else None

    def nodes(self) -> list[dict[str, Any]]:
        cursor = self.conn.execute(f"SELECT {', '.join(NODE_COLUMNS)} FROM nodes ORDER BY node_id")
        return [dict(zip(NODE_COLUMNS, row)) for row in cursor]

    def record_run(self, job_cid: str, *, started_at: str, finished_at: str | None, outcome: str, result_cid: str | None,
                   n: int, quorum: int, spec: dict[str, Any], answers: list[dict[str, Any]],
                   note: str | None = None, extra: dict[str, Any] | None = None) -> int:
        """Add a run (never replacing one) and make it the job's latest; returns its run ID."""
        answers_json = json.dumps(answers, sort_keys=True)
        with self.conn:
            cursor = self.conn.execute(
                "INSERT INTO runs (job_cid, started_at, finished_at, outcome, result_cid, n, quorum, note, answers, "
                "extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [job_cid, started_at, finished_at, outcome, result_cid, n, quorum, note, answers_json,
                 json.dumps(extra or {}, sort_keys=True)])
            self.conn.execute(
                "INSERT OR REPLACE INTO jobs (job_cid, seq, outcome, result_cid, n, quorum, spec, answers) "
                "VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs), ?, ?, ?, ?, ?, ?)",
                [job_cid, outcome, result_cid, n, quorum, json.dumps(spec, sort_keys=True), answers_json])
        return int(cursor.lastrowid or 0)

    def finish_run(self, run_id: int, *, finished_at: str | None, outcome: str, result_cid: str | None,
                   answers: list[dict[str, Any]], note: str | None = None,
                   extra: dict[str, Any] | None = None) -> None:
        """Complete a run recorded before its nodes were asked (outcome ``running``): its outcome,
        answers, note and extra (merged into what it had); the job's row follows when this run is
        still the job's latest. A run already complete is never changed (nothing is hidden)."""
        answers_json = json.dumps(answers, sort_keys=True)
        with self.conn:
            row = self.conn.execute("SELECT job_cid, outcome, extra FROM runs WHERE run_id = ?", [run_id]).fetchone()
            if row is None or row[1] != UNFINISHED:
                return
            merged = dict(json.loads(row[2] or "{}"), **(extra or {}))
            self.conn.execute(
                "UPDATE runs SET finished_at = ?, outcome = ?, result_cid = ?, note = ?, answers = ?, extra = ? "
                "WHERE run_id = ?", [finished_at, outcome, result_cid, note, answers_json,
                                     json.dumps(merged, sort_keys=True), run_id])
            latest = self.conn.execute("SELECT MAX(run_id) FROM runs WHERE job_cid = ?", [row[0]]).fetchone()[0]
            if latest == run_id:
                self.conn.execute("UPDATE jobs SET outcome = ?, result_cid = ?, answers = ? WHERE job_cid = ?",
                                  [outcome, result_cid, answers_json, row[0]])

    def update_answers(self, run_id: int, answers: list[dict[str, Any]]) -> None:
        """The answers of a ``running`` run so far (who was given the job): what a later
        ``cod get`` collects from, should this requester die before the run ends."""
        answers_json = json.dumps(answers, sort_keys=True)
        with self.conn:
            row = self.conn.execute("SELECT job_cid, outcome FROM runs WHERE run_id = ?", [run_id]).fetchone()
            if row is None or row[1] != UNFINISHED:
                return
            self.conn.execute("UPDATE runs SET answers = ? WHERE run_id = ?", [answers_json, run_id])
            latest = self.conn.execute("SELECT MAX(run_id) FROM runs WHERE job_cid = ?", [row[0]]).fetchone()[0]
            if latest == run_id:
                self.conn.execute("UPDATE jobs SET answers = ? WHERE job_cid = ?", [answers_json, row[0]])

    def record_job(self, job_cid: str, outcome: str, result_cid: str | None, n: int, quorum: int,
                   spec: dict[str, Any], answers: list[dict[str, Any]]) -> None:
        """Stage 2's call: a run with both timestamps now."""
        stamp = now()
        self.record_run(job_cid, started_at=stamp, finished_at=stamp, outcome=outcome, result_cid=result_cid, n=n,
                        quorum=quorum, spec=spec, answers=answers)

    def resolve(self, prefix: str) -> str:
        """The one job CID that equals or starts with ``prefix``.

        Returns "" when no job matches; raises UsageError for an empty prefix or one that
        several jobs share (naming up to MAX_CANDIDATES_SHOWN). The prefix is compared as a
        plain string (``substr``), never as a LIKE pattern, so ``%`` and ``_`` are characters.
        """
        if not prefix:
            raise UsageError("an empty job ID matches every job", "give a job CID or a longer prefix (see cod list)")
        conn = self.conn
        if conn.execute("SELECT 1 FROM jobs WHERE job_cid = ?", [prefix]).fetchone():
            return prefix
        # a prefix of the CID, or of its short ID (the CID after the prefix every job CID shares)
        rows = conn.execute("SELECT job_cid FROM jobs WHERE substr(job_cid, 1, ?) = ? OR substr(job_cid, ?, ?) = ? "
                            "ORDER BY job_cid LIMIT ?",
                            [len(prefix), prefix, len(JOB_CID_PREFIX) + 1, len(prefix), prefix,
                             MAX_CANDIDATES_SHOWN + 1]).fetchall()
        if len(rows) > 1:
            shown = [r[0] for r in rows[:MAX_CANDIDATES_SHOWN]]
            more = ", ..." if len(rows) > MAX_CANDIDATES_SHOWN else ""
            raise UsageError(f"job ID prefix {prefix!r} matches several jobs: {', '.join(shown)}{more}",
                             "give more characters of the job CID")
        return str(rows[0][0]) if rows else ""

    def job(self, job_cid: str) -> dict[str, Any] | None:
        """The job named by ``job_cid`` or its unique prefix, with its latest run (see resolve)."""
        found = self.resolve(job_cid)
        if not found:
            return None
        row = self.conn.execute(
            "SELECT job_cid, seq, outcome, result_cid, n, quorum, spec, answers FROM jobs WHERE job_cid = ?",
            [found]).fetchone()
        names = ("job_cid", "seq", "outcome", "result_cid", "n", "quorum", "spec", "answers")
        job = dict(zip(names, row))
        return dict(job, spec=json.loads(job["spec"] or "null"), answers=json.loads(job["answers"] or "[]"))

    def runs(self, job_cid: str) -> list[dict[str, Any]]:
        """Every run of a job, oldest first."""
        cursor = self.conn.execute(
            f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE job_cid = ? ORDER BY run_id", [job_cid])
        return [_run(row) for row in cursor]

    def run(self, run_id: int) -> dict[str, Any] | None:
        cursor = self.conn.execute(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE run_id = ?", [run_id])
        row = cursor.fetchone()
        return _run(row) if row else None

    def latest_run(self, job_cid: str) -> dict[str, Any] | None:
        cursor = self.conn.execute(
            f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE job_cid = ? ORDER BY run_id DESC LIMIT 1", [job_cid])
        row = cursor.fetchone()
        return _run(row) if row else None

    def annotate(self, run_id: int, **fields: Any) -> None:
        """Add ``fields`` to a run's ``extra`` (what was learned after it was recorded, e.g. the
        ledger's answer); its outcome and answers are never changed."""
        with self.conn:
            row = self.conn.execute("SELECT extra FROM runs WHERE run_id = ?", [run_id]).fetchone()
            if row is None:
                return
            extra = dict(json.loads(row[0] or "{}"), **fields)
            self.conn.execute("UPDATE runs SET extra = ? WHERE run_id = ?",
                                 [json.dumps(extra, sort_keys=True), run_id])

    def job_cids(self) -> list[str]:
        """Every recorded job CID, sorted (for short IDs)."""
        return [str(r[0]) for r in self.conn.execute("SELECT job_cid FROM jobs ORDER BY job_cid")]

    def jobs(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest jobs, newest first, each with ``runs`` and ``mismatches`` (runs that were one)."""
        cursor = self.conn.execute(
            "SELECT j.job_cid, j.outcome, j.result_cid, j.n, j.quorum, "
            "(SELECT COUNT(*) FROM runs r WHERE r.job_cid = j.job_cid), "
            "(SELECT COUNT(*) FROM runs r WHERE r.job_cid = j.job_cid AND r.outcome = 'mismatch') "
            "FROM jobs j ORDER BY j.seq DESC LIMIT ?", [limit])
        names = ("job_cid", "outcome", "result_cid", "n", "quorum", "runs", "mismatches")
        return [dict(zip(names, row)) for row in cursor]

    def recent(self, limit: int = 50) -> list[tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]]:
        """The latest jobs, newest first: (job row as :meth:`job` gives it, its latest run, the
        summaries of all its runs oldest first) -- what a job view is made of."""
        out = []
        for (job_cid,) in self.conn.execute("SELECT job_cid FROM jobs ORDER BY seq DESC LIMIT ?", [limit]).fetchall():
            job = self.job(job_cid)
            assert job is not None
            runs = self.runs(job_cid)
            out.append((job, runs[-1] if runs else {}, runs))
        return out
