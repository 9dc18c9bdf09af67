"""The ledger's SQLite file: append-only tables, the one-transaction append, and reads.

Every table refuses UPDATE and DELETE (BEFORE triggers that RAISE(ABORT)); an append request
writes its leaves, their stored hashes, the rows derived from them and the new signed checkpoint
in one transaction, so a crash (kill -9) leaves the previous state or the new one, never a mix.
WAL mode: readers (Datasette, the audit) never block the writer. The schema is SPEC.md 12.9's.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlite_utils

from ..errors import LocalPathError

DB_FILE = "ledger.sqlite"
BUSY_TIMEOUT_MS = 10_000

# table -> (columns with types, primary key or None); entries, hashes, checkpoints, cosignatures are
# the log itself, the others are derived from the leaves by the state machine (state.Row).
TABLES: dict[str, tuple[dict[str, type], str | tuple[str, ...] | None]] = {
    "entries": ({"idx": int, "type": str, "leaf": str, "leaf_hash": bytes}, "idx"),
    "hashes": ({"idx": int, "hash": bytes}, "idx"),
    "checkpoints": ({"size": int, "root": bytes, "note": str}, "size"),
    "cosignatures": ({"size": int, "witness": str, "line": str}, ("size", "witness")),
    "blessings": ({"cid": str, "deals": str, "source": str, "entry": int}, None),
    "eligibility": ({"job": str, "result": str, "eligible": int, "reason": str, "entry": int}, None),
    "decisions": ({"job": str, "result": str, "action": str, "datacap": int, "moderator": str, "reason": str,
                   "entry": int}, None),
    "moderator_changes": ({"moderator": str, "action": str, "proposal": str, "entry": int}, None),
    "proposals": ({"proposal_id": str, "action": str, "moderator": str, "proposer": str, "entry": int},
                  "proposal_id"),
    "approvals": ({"proposal_id": str, "approver": str, "entry": int}, None),
    "refusals": ({"node": str, "job": str, "reason": str, "entry": int}, None),
}
DERIVED = ("blessings", "eligibility", "decisions", "moderator_changes", "proposals", "approvals", "refusals")

# the queries of log.py and of the service each have an index
INDEXES: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("entries", ("leaf_hash",), True),
    ("blessings", ("cid",), False),
    ("eligibility", ("job",), False),
    ("eligibility", ("result",), False),
    ("decisions", ("job",), False),
    ("decisions", ("result",), False),
    ("moderator_changes", ("moderator",), False),
    ("approvals", ("proposal_id",), False),
    ("refusals", ("job",), False),
)

VIEWS: dict[str, str] = {
    "current_moderators": (
        "SELECT m.moderator, m.entry AS since FROM moderator_changes m WHERE m.action = 'add' "
        "AND m.entry = (SELECT MAX(entry) FROM moderator_changes WHERE moderator = m.moderator)"),
    "latest_eligibility": (
        "SELECT e.* FROM eligibility e WHERE e.entry = (SELECT MAX(entry) FROM eligibility WHERE job = e.job)"),
    "latest_decisions": (
        "SELECT d.* FROM decisions d WHERE d.entry = (SELECT MAX(entry) FROM decisions WHERE job = d.job)"),
    "moderation_queue": (
        "SELECT e.job, e.result, e.entry FROM latest_eligibility e WHERE e.eligible = 1 "
        "AND NOT EXISTS (SELECT 1 FROM latest_decisions d WHERE d.job = e.job AND d.result = e.result)"),
    "approved_results": (
        "SELECT d.result, d.job, d.datacap, d.moderator, d.reason, d.entry FROM latest_decisions d "
        "JOIN latest_eligibility e ON e.job = d.job AND e.eligible = 1 AND e.result = d.result "
        "WHERE d.action = 'approve'"),
}


def trigger_names(table: str) -> tuple[str, str]:
    return f"{table}_no_update", f"{table}_no_delete"


def trigger_sql(table: str) -> list[str]:
    """The two triggers that make ``table`` append-only."""
    upd, dele = trigger_names(table)
    return [
        f"CREATE TRIGGER {upd} BEFORE UPDATE ON {table} BEGIN "
        f"SELECT RAISE(ABORT, 'the ledger is append-only: {table} rows are never updated'); END",
        f"CREATE TRIGGER {dele} BEFORE DELETE ON {table} BEGIN "
        f"SELECT RAISE(ABORT, 'the ledger is append-only: {table} rows are never deleted'); END",
    ]


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, foreign to no thread."""
    try:
        if readonly:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
        else:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL survives any process crash (kill -9); only a power loss may drop the last commits
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    except sqlite3.Error as exc:
        raise LocalPathError(f"cannot open the ledger database {path}: {exc}") from None
    return conn


def create(conn: sqlite3.Connection) -> None:
    """Create the tables, indexes, triggers and views (one transaction)."""
    db = sqlite_utils.Database(conn)
    conn.execute("BEGIN IMMEDIATE")
    try:
        for name, (columns, pk) in TABLES.items():
            db[name].create(columns, pk=pk, not_null=set(columns) - {"result", "reason"})  # type: ignore[union-attr]
        for table, cols, unique in INDEXES:
            db[table].create_index(cols, unique=unique)  # type: ignore[union-attr]
        for table in TABLES:
            for sql in trigger_sql(table):
                conn.execute(sql)
        for name, sql in VIEWS.items():
            db.create_view(name, sql)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _shown(row: tuple[Any, ...]) -> str:
    return json.dumps([r.hex() if isinstance(r, bytes) else r for r in row])[:300]


def derived_differences(conn: sqlite3.Connection, want: Mapping[str, Sequence[tuple[Any, ...]]]) -> list[str]:
    """One line per derived table whose rows differ, as multisets, from ``want`` (the rows the log derives)."""
    problems = []
    for table in DERIVED:
        columns = ", ".join(TABLES[table][0])
        have = Counter(tuple(r) for r in conn.execute(f"SELECT {columns} FROM {table}"))
        wanted = Counter(want.get(table, ()))
        if have != wanted:
            extra = sorted(map(_shown, (have - wanted).elements()))
            missing = sorted(map(_shown, (wanted - have).elements()))
            detail = (f"row {extra[0]} is derived from no entry" if extra else
                      f"row {missing[0]} the log derives is missing")
            problems.append(f"table {table} differs from what the log derives: {detail}")
    return problems


def refresh_views(conn: sqlite3.Connection) -> None:
    """Recreate every view whose SQL is not VIEWS' (a ledger made by an earlier cod); views hold no data."""
    have = {str(n): str(sql) for n, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'view'")}
    fresh = sqlite3.connect(":memory:", isolation_level=None)
    create(fresh)
    want = {str(n): str(sql) for n, sql in fresh.execute("SELECT name, sql FROM sqlite_master WHERE type = 'view'")}
    fresh.close()
    stale = [name for name in VIEWS if have.get(name) != want[name]]
    if not stale:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for name in reversed(list(VIEWS)):  # later views read earlier ones
            if name in have:
                conn.execute(f"DROP VIEW {name}")
        for name in VIEWS:
            conn.execute(want[name])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class Store:
    """The ledger database: one writer (the caller serialises appends), many readers."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        """Stored hashes at ``indexes``, in that order; LookupError if one is missing."""
        if not indexes:
            return []
        found: dict[int, bytes] = {}
        unique = sorted(set(indexes))
        for start in range(0, len(unique), 500):  # SQLite's bound on host parameters
            part = unique[start:start + 500]
            marks = ",".join("?" * len(part))
            for idx, h in self.conn.execute(f"SELECT idx, hash FROM hashes WHERE idx IN ({marks})", part):
                found[idx] = bytes(h)
        try:
            return [found[i] for i in indexes]
        except KeyError as exc:
            raise LookupError(f"stored hash {exc.args[0]} is missing") from None

    def append(self, entries: Sequence[tuple[int, str, str, bytes]], hashes: Sequence[tuple[int, bytes]],
               derived: Iterable[tuple[str, tuple[Any, ...]]], checkpoint: tuple[int, bytes, str]) -> None:
        """Write one append request in one transaction; LocalPathError if SQLite cannot."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT INTO entries (idx, type, leaf, leaf_hash) VALUES (?, ?, ?, ?)", entries)
                conn.executemany("INSERT INTO hashes (idx, hash) VALUES (?, ?)", hashes)
                by_table: dict[str, list[tuple[Any, ...]]] = {}
                for table, row in derived:
                    by_table.setdefault(table, []).append(row)
                for table, rows in by_table.items():
                    marks = ",".join("?" * len(rows[0]))
                    conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
                conn.execute("INSERT INTO checkpoints (size, root, note) VALUES (?, ?, ?)", checkpoint)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise LocalPathError(f"cannot write the ledger database: {exc}",
                                 "check the disk and the data directory; nothing was appended") from None

    def add_cosignature(self, size: int, witness: str, line: str) -> bool:
        """Keep a witness's cosignature of the checkpoint at ``size``; False if it had one already."""
        try:
            cur = self.conn.execute("INSERT OR IGNORE INTO cosignatures (size, witness, line) VALUES (?, ?, ?)",
                                    (size, witness, line))
        except sqlite3.Error as exc:
            raise LocalPathError(f"cannot write the ledger database: {exc}") from None
        return cur.rowcount == 1

    def entries(self, start: int, end: int) -> list[bytes]:
        rows = self.conn.execute("SELECT leaf FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx", (start, end))
        return [leaf.encode() for (leaf,) in rows]

    def latest_checkpoint(self) -> tuple[int, bytes, str] | None:
        row = self.conn.execute("SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        return (int(row[0]), bytes(row[1]), str(row[2])) if row else None

    def checkpoint_at(self, size: int) -> str | None:
        row = self.conn.execute("SELECT note FROM checkpoints WHERE size = ?", (size,)).fetchone()
        return str(row[0]) if row else None

    def cosignatures(self, size: int) -> list[tuple[str, str]]:
        return [(str(w), str(line)) for w, line in
                self.conn.execute("SELECT witness, line FROM cosignatures WHERE size = ? ORDER BY witness", (size,))]

    def count(self, table: str) -> int:
        assert table in TABLES
        return int(self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.conn.execute(sql, params)]
