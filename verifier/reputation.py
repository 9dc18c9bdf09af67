"""The requester's records (SQLite via sqlite-utils): nodes with their track record, and jobs.

A node's record counts how often it agreed, disagreed (was in a minority), failed
(no answer, crash, refusal) or sent a bad signature. Selection prefers the best score.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import sqlite_utils

COUNTERS = ("agreed", "disagreed", "failed", "bad_signature")


def default_path() -> Path:
    home = os.environ.get("COD_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share", "cod")
    return Path(home) / "requester.db"


class Records:
    def __init__(self, path: Path | None = None) -> None:
        path = path or default_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite_utils.Database(path)
        self.db.enable_wal()
        self.db.execute("PRAGMA synchronous = NORMAL")
        if not self.db.table("nodes").exists():
            self.db.table("nodes").create({"node_id": str, "url": str, "profile": str, "agreed": int, "disagreed": int,
                                     "failed": int, "bad_signature": int}, pk="node_id", defaults={
                                         c: 0 for c in COUNTERS})
        if not self.db.table("jobs").exists():
            self.db.table("jobs").create({"job_cid": str, "seq": int, "outcome": str, "result_cid": str, "n": int,
                                    "quorum": int, "spec": str, "answers": str}, pk="job_cid")

    # plain SQL on the hot path: sqlite-utils' upsert introspects the table on every call
    def see(self, node_id: str, url: str, profile: str) -> None:
        with self.db.conn:
            self.db.conn.execute(
                "INSERT INTO nodes (node_id, url, profile, agreed, disagreed, failed, bad_signature) "
                "VALUES (?, ?, ?, 0, 0, 0, 0) ON CONFLICT(node_id) DO UPDATE SET url = excluded.url, "
                "profile = excluded.profile", [node_id, url, profile])

    def bump(self, node_id: str, counter: str) -> None:
        assert counter in COUNTERS
        with self.db.conn:
            self.db.conn.execute(f"UPDATE nodes SET {counter} = COALESCE({counter}, 0) + 1 WHERE node_id = ?",
                                 [node_id])

    def score(self, node_id: str) -> int:
        row = self.node(node_id)
        if row is None:
            return 0
        return int(row["agreed"] or 0) - 4 * int(row["disagreed"] or 0) - 2 * int(row["failed"] or 0) - 8 * int(
            row["bad_signature"] or 0)

    def node(self, node_id: str) -> dict[str, Any] | None:
        cursor = self.db.conn.execute(
            "SELECT node_id, url, profile, agreed, disagreed, failed, bad_signature FROM nodes WHERE node_id = ?",
            [node_id])
        row = cursor.fetchone()
        names = ("node_id", "url", "profile", "agreed", "disagreed", "failed", "bad_signature")
        return dict(zip(names, row)) if row else None

    def nodes(self) -> list[dict[str, Any]]:
        return list(self.db.table("nodes").rows_where(order_by="node_id"))

    def record_job(self, job_cid: str, outcome: str, result_cid: str | None, n: int, quorum: int,
                   spec: dict[str, Any], answers: list[dict[str, Any]]) -> None:
        with self.db.conn:
            self.db.conn.execute(
                "INSERT OR REPLACE INTO jobs (job_cid, seq, outcome, result_cid, n, quorum, spec, answers) "
                "VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs), ?, ?, ?, ?, ?, ?)",
                [job_cid, outcome, result_cid, n, quorum, json.dumps(spec, sort_keys=True),
                 json.dumps(answers, sort_keys=True)])

    def job(self, job_cid: str) -> dict[str, Any] | None:
        rows = list(self.db.table("jobs").rows_where("job_cid = ? OR job_cid LIKE ?", [job_cid, job_cid + "%"]))
        if not rows:
            return None
        row = rows[0]
        return dict(row, spec=json.loads(row["spec"]), answers=json.loads(row["answers"]))

    def jobs(self, limit: int = 50) -> list[dict[str, Any]]:
        return list(self.db.table("jobs").rows_where(order_by="seq desc", limit=limit))
