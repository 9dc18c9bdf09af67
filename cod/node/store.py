"""Jobs of a node in SQLite (sqlite-utils, WAL): their specs, states and signed statements.

Used from the event loop's thread only. A node restarted on the same data dir serves the
results it had; jobs that were queued or running when it stopped are marked failed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlite_utils

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
COLUMNS = ("job_cid", "seq", "spec", "state", "result_cid", "exit_code", "trap", "fuel_used", "profile", "statement",
           "error")


class JobStore:
    def __init__(self, path: Path) -> None:
        self.db = sqlite_utils.Database(path)
        self.db.enable_wal()
        self.db.execute("PRAGMA synchronous = NORMAL")  # WAL keeps the file consistent; a crash loses at most
        # the last jobs' records, never corrupts them
        self.jobs = self.db.table("jobs")
        if not self.jobs.exists():
            self.jobs.create(
                {"job_cid": str, "seq": int, "spec": str, "state": str, "result_cid": str, "exit_code": int,
                 "trap": str, "fuel_used": int, "profile": str, "statement": str, "error": str},
                pk="job_cid",
            )
        self.db.execute(
            "UPDATE jobs SET state = ?, error = ? WHERE state IN (?, ?)",
            [FAILED, json.dumps({"error": "Interrupted", "message": "the node stopped during the job"}),
             QUEUED, RUNNING],
        )
        self.db.conn.commit()

    # the hot path uses plain SQL: sqlite-utils' upsert introspects the table on every call
    def get(self, job_cid: str) -> dict[str, Any] | None:
        cursor = self.db.conn.execute(f"SELECT {', '.join(COLUMNS)} FROM jobs WHERE job_cid = ?", [job_cid])
        row = cursor.fetchone()
        return dict(zip(COLUMNS, row)) if row else None

    def add(self, job_cid: str, spec: dict[str, Any]) -> None:
        with self.db.conn:
            self.db.conn.execute(
                "INSERT OR REPLACE INTO jobs (job_cid, seq, spec, state) "
                "VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs), ?, ?)",
                [job_cid, json.dumps(spec, sort_keys=True), QUEUED])

    def update(self, job_cid: str, **fields: Any) -> None:
        names = sorted(fields)
        assert set(names) <= set(COLUMNS)
        with self.db.conn:
            self.db.conn.execute(f"UPDATE jobs SET {', '.join(n + ' = ?' for n in names)} WHERE job_cid = ?",
                                 [fields[n] for n in names] + [job_cid])

    def done_cids(self) -> set[str]:
        """The job CIDs whose results this node adopted (state done)."""
        return {row[0] for row in self.db.conn.execute("SELECT job_cid FROM jobs WHERE state = ?", [DONE])}

    def list(self, limit: int = 100) -> list[dict[str, Any]]:
        return list(self.jobs.rows_where(order_by="seq desc", limit=limit))


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
