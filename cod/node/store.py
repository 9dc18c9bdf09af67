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


class JobStore:
    def __init__(self, path: Path) -> None:
        self.db = sqlite_utils.Database(path)
        self.db.enable_wal()
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

    def get(self, job_cid: str) -> dict[str, Any] | None:
        rows = list(self.jobs.rows_where("job_cid = ?", [job_cid]))
        return rows[0] if rows else None

    def add(self, job_cid: str, spec: dict[str, Any]) -> None:
        seq = (self.db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone() or [1])[0]
        self.jobs.upsert({"job_cid": job_cid, "seq": seq, "spec": json.dumps(spec, sort_keys=True), "state": QUEUED,
                          "result_cid": None, "exit_code": None, "trap": None, "fuel_used": None, "profile": None,
                          "statement": None, "error": None}, pk="job_cid")

    def update(self, job_cid: str, **fields: Any) -> None:
        self.jobs.update(job_cid, fields)

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
