"""The SQLite file: append-only tables (raw sqlite3 cannot UPDATE or DELETE), WAL, indexes, views."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cod.ledger import entries
from cod.ledger.log import Ledger
from cod.ledger.store import DB_FILE, TABLES
from tests.ledger.bkit import DATA, MOD, NODES, ORIGIN, RESULT, agreeing, blessed_ledger, job_of, spec


def populated(tmp: Path) -> Ledger:
    """A ledger with a row in every table."""
    ledger = blessed_ledger(tmp)
    s = spec(DATA)
    index, _, _ = ledger.report_evidence(s, agreeing(s))
    ledger.decide(entries.sign_decision(MOD, origin=ORIGIN, job=job_of(s), result=RESULT, action="approve",
                                        datacap=1 << 40, reason="ok", eligibility=index, supersedes=None))
    ledger.refusal(entries.sign_refusal(NODES[0], job=job_of(s), policy="fil-plus-only", inputs=[DATA], reason="r"))
    ledger.add_cosignature(ledger.size, "witness.example", "— witness.example AAAAAAAA")
    return ledger


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_table_refuses_update_and_delete(tmp_path: Path, table: str) -> None:
    populated(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "ledger" / DB_FILE)
    count = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    assert count > 0, table
    column = next(iter(TABLES[table][0]))
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute(f"UPDATE {table} SET {column} = {column}")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute(f"DELETE FROM {table}")
    assert conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == count
    conn.close()


def test_wal_and_unique_leaf_hash(tmp_path: Path) -> None:
    populated(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "ledger" / DB_FILE)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    leaf, digest = conn.execute("SELECT leaf, leaf_hash FROM entries WHERE idx = 1").fetchone()
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO entries VALUES (999, 'x', ?, ?)", (leaf, digest))


@pytest.mark.parametrize("sql", [
    "SELECT entry FROM blessings WHERE cid = 'x'",
    "SELECT entry FROM eligibility WHERE job = 'x'",
    "SELECT entry FROM eligibility WHERE result = 'x'",
    "SELECT entry FROM decisions WHERE job = 'x'",
    "SELECT entry FROM decisions WHERE result = 'x'",
    "SELECT entry FROM approvals WHERE proposal_id = 'x'",
    "SELECT entry FROM proposals WHERE proposal_id = 'x'",
    "SELECT idx FROM entries WHERE leaf_hash = x'00'",
    "SELECT entry FROM refusals WHERE job = 'x'",
])
def test_queries_use_an_index(tmp_path: Path, sql: str) -> None:
    populated(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "ledger" / DB_FILE)
    plan = " ".join(str(row[-1]) for row in conn.execute("EXPLAIN QUERY PLAN " + sql))
    assert "USING" in plan and "INDEX" in plan, plan


def test_views_answer_what_the_ledger_answers(tmp_path: Path) -> None:
    ledger = populated(tmp_path)
    s2 = spec(DATA, output_base=DATA)
    index2, _, _ = ledger.report_evidence(s2, agreeing(s2, 3))
    conn = sqlite3.connect(tmp_path / "ledger" / DB_FILE)
    assert [r[0] for r in conn.execute("SELECT moderator FROM current_moderators")] == [MOD.node_id]
    assert [(r[0], r[2]) for r in conn.execute("SELECT job, result, entry FROM moderation_queue")] == \
        [(job_of(s2), index2)] == [(q["job"], q["entry"]) for q in ledger.queue()]
    approved = conn.execute("SELECT result, job, datacap FROM approved_results").fetchall()
    assert approved == [(RESULT, job_of(spec(DATA)), 1 << 40)]
    assert [r[0] for r in conn.execute("SELECT action FROM latest_decisions")] == ["approve"]


def test_datasette_reads_the_database(tmp_path: Path) -> None:
    datasette = pytest.importorskip("datasette.app")
    import asyncio
    populated(tmp_path).close()

    async def ask() -> list[str]:
        ds = datasette.Datasette([str(tmp_path / "ledger" / DB_FILE)])
        db = ds.get_database()
        result = await db.execute("SELECT moderator FROM current_moderators")
        return [row["moderator"] for row in result.rows]

    assert asyncio.run(ask()) == [MOD.node_id]
