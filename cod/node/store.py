"""Jobs of a node in SQLite (sqlite-utils, WAL): their specs, states and signed statements.

Used from the event loop's thread only. A node restarted on the same data dir serves the
results it had; jobs that were queued or running when it stopped are marked failed.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import sqlite_utils

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
COLUMNS = ("job_cid", "seq", "spec", "state", "result_cid", "exit_code", "trap", "fuel_used", "profile", "statement",
           "error", "done_seq")
MAX_STATEMENTS_PAGE = 1000


class JobStore:
    def __init__(self, path: Path) -> None:
        self.db = sqlite_utils.Database(path)
        self.db.enable_wal()
        self.db.execute("PRAGMA synchronous = NORMAL")  # WAL keeps the file consistent; a crash loses at most
        # the last jobs' records, never corrupts them
        self.jobs = self.db.table("jobs")
        self._unrecorded: dict[str, str] = {}  # job CID -> the error of a failure the database could not take
        if not self.jobs.exists():
            self.jobs.create(
                {"job_cid": str, "seq": int, "spec": str, "state": str, "result_cid": str, "exit_code": int,
                 "trap": str, "fuel_used": int, "profile": str, "statement": str, "error": str, "done_seq": int},
                pk="job_cid",
            )
        self._migrate()
        self.db.execute(
            "UPDATE jobs SET state = ?, error = ? WHERE state IN (?, ?)",
            [FAILED, json.dumps({"error": "Interrupted", "message": "the node stopped during the job"}),
             QUEUED, RUNNING],
        )
        self.db.conn.commit()

    def _migrate(self) -> None:
        """Give a database of an earlier stage its completion order: ``done_seq`` numbers done
        jobs 1, 2, ... in the order they finished (earlier databases: their submission order)."""
        if "done_seq" not in self.jobs.columns_dict:
            with self.db.conn:
                self.db.conn.execute("ALTER TABLE jobs ADD COLUMN done_seq INTEGER")
                done = [row[0] for row in self.db.conn.execute(
                    "SELECT job_cid FROM jobs WHERE state = ? ORDER BY seq, job_cid", [DONE])]
                for number, job_cid in enumerate(done, start=1):
                    self.db.conn.execute("UPDATE jobs SET done_seq = ? WHERE job_cid = ?", [number, job_cid])
        self.db.execute("CREATE UNIQUE INDEX IF NOT EXISTS jobs_done_seq ON jobs (done_seq)")
        self.db.conn.commit()

    # the hot path uses plain SQL: sqlite-utils' upsert introspects the table on every call
    def get(self, job_cid: str) -> dict[str, Any] | None:
        self._record_unrecorded()
        cursor = self.db.conn.execute(f"SELECT {', '.join(COLUMNS)} FROM jobs WHERE job_cid = ?", [job_cid])
        row = cursor.fetchone()
        return self._as_failed(dict(zip(COLUMNS, row))) if row else None

    def fail(self, job_cid: str, error: str) -> None:
        """Mark the job failed with ``error`` (JSON). Never raises: when the database cannot take
        it (a full disk), the failure is kept in memory, shown by get() and list(), and written
        at the next call that finds room (a restart marks the job failed anyway)."""
        try:
            self.update(job_cid, state=FAILED, error=error)
            self._unrecorded.pop(job_cid, None)
        except sqlite3.Error:
            self._unrecorded[job_cid] = error

    def _record_unrecorded(self) -> None:
        for job_cid, error in sorted(self._unrecorded.items()):
            try:
                self.update(job_cid, state=FAILED, error=error)
            except sqlite3.Error:
                return  # still no room
            del self._unrecorded[job_cid]

    def _as_failed(self, row: dict[str, Any]) -> dict[str, Any]:
        error = self._unrecorded.get(row["job_cid"])
        return row if error is None else {**row, "state": FAILED, "error": error}

    def add(self, job_cid: str, spec: dict[str, Any]) -> None:
        with self.db.conn:
            self.db.conn.execute(
                "INSERT OR REPLACE INTO jobs (job_cid, seq, spec, state) "
                "VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs), ?, ?)",
                [job_cid, json.dumps(spec, sort_keys=True), QUEUED])
        self._unrecorded.pop(job_cid, None)  # a failed job queued again: its new record replaces the failure

    def update(self, job_cid: str, **fields: Any) -> None:
        """Set ``fields`` of a job; a job becoming done gets the next completion number (done_seq)."""
        names = sorted(fields)
        assert set(names) <= set(COLUMNS) - {"done_seq"}
        sets = [n + " = ?" for n in names]
        if fields.get("state") == DONE:
            sets.append("done_seq = (SELECT COALESCE(MAX(done_seq), 0) + 1 FROM jobs)")
        with self.db.conn:
            self.db.conn.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE job_cid = ?",
                                 [fields[n] for n in names] + [job_cid])

    def statements(self, after: int, limit: int) -> list[dict[str, Any]]:
        """Done jobs with done_seq > ``after``, in completion order, at most ``limit``:
        {"seq", "job", "spec", "statement"} (the feed of GET /v1/statements)."""
        rows = self.db.conn.execute(
            "SELECT done_seq, job_cid, spec, statement FROM jobs WHERE state = ? AND done_seq > ? "
            "ORDER BY done_seq LIMIT ?", [DONE, after, limit])
        return [{"seq": seq, "job": job, "spec": json.loads(spec), "statement": json.loads(statement)}
                for seq, job, spec, statement in rows]

    def done_cids(self) -> set[str]:
        """The job CIDs whose results this node adopted (state done)."""
        return {row[0] for row in self.db.conn.execute("SELECT job_cid FROM jobs WHERE state = ?", [DONE])}

    def done_rows(self) -> list[tuple[str, int, str]]:
        """(job CID, done_seq, result CID) of every done job."""
        return [(job, seq or 0, result) for job, seq, result in self.db.conn.execute(
            "SELECT job_cid, done_seq, result_cid FROM jobs WHERE state = ?", [DONE])]

    def list(self, limit: int = 100) -> list[dict[str, Any]]:
        return [self._as_failed(row) for row in self.jobs.rows_where(order_by="seq desc", limit=limit)]


def public(row: dict[str, Any]) -> dict[str, Any]:
    """A job row as the API shows it."""
    return {
        "job_cid": row["job_cid"],
        "state": row["state"],
        "spec": json.loads(row["spec"]),
        "result_cid": row["result_cid"],
        "exit_code": row["exit_code"],
        "trap": row["trap"],
        "fuel_used": row["fuel_used"],
        "profile": row["profile"],
        "statement": json.loads(row["statement"]) if row["statement"] else None,
        "error": json.loads(row["error"]) if row["error"] else None,
    }
