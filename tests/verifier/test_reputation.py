"""The requester's records: every run kept, Stage 2 databases migrated, job IDs unambiguous."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from cod.errors import UsageError
from verifier import Records

LIAR = "12D3KooWLiar"
A = "bagaaieraaaaa1"
B = "bagaaieraaaaa2"
C = "bagaaierab%_x"
D = "bagaaieraxxxx"


def _stage2_db(path: Path) -> None:
    """A requester.db exactly as Stage 2's verifier/reputation.py created and filled it."""
    db = sqlite_utils.Database(path)
    db.enable_wal()
    db.table("nodes").create({"node_id": str, "url": str, "profile": str, "agreed": int, "disagreed": int,
                              "failed": int, "bad_signature": int}, pk="node_id",
                             defaults={c: 0 for c in ("agreed", "disagreed", "failed", "bad_signature")})
    db.table("jobs").create({"job_cid": str, "seq": int, "outcome": str, "result_cid": str, "n": int,
                             "quorum": int, "spec": str, "answers": str}, pk="job_cid")
    db.conn.execute("INSERT INTO nodes (node_id, url, profile, disagreed) VALUES (?, ?, ?, 1)",
                    [LIAR, "http://liar", "p"])
    db.conn.execute("INSERT INTO jobs VALUES (?, 1, 'mismatch', NULL, 3, 0, ?, ?)",
                    [A, json.dumps({"module": "m"}), json.dumps([{"node_id": LIAR, "result_cid": "bafylie"}])])
    db.conn.execute("INSERT INTO jobs VALUES (?, 2, 'verified', 'bafyok', 3, 0, '{}', '[]')", [B])
    db.conn.commit()
    db.conn.close()


def test_a_stage2_database_is_migrated_and_keeps_its_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "requester.db"
    _stage2_db(path)
    records = Records(path)
    (old,) = records.runs(A)
    assert (old["outcome"], old["started_at"], old["answers"][0]["node_id"]) == ("mismatch", None, LIAR)
    assert records.node(LIAR)["disagreed"] == 1  # type: ignore[index]
    records.record_run(A, started_at="2026-01-01T00:00:00+00:00", finished_at="2026-01-01T00:00:01+00:00",
                       outcome="verified", result_cid="bafyok", n=3, quorum=0, spec={"module": "m"}, answers=[])
    again = Records(path)  # opening twice migrates once
    assert [r["outcome"] for r in again.runs(A)] == ["mismatch", "verified"]
    assert [r["outcome"] for r in again.runs(B)] == ["verified"]
    assert again.job(A)["outcome"] == "verified"  # type: ignore[index]  # the job row shows the latest
    listed = {row["job_cid"]: row for row in again.jobs()}
    assert (listed[A]["runs"], listed[A]["mismatches"], listed[B]["runs"]) == (2, 1, 1)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 4  # Stage 11: nodes.lied
    assert again.runs(B)[0]["extra"] == {}  # runs.extra (version 2) starts empty for migrated runs


def test_a_rerun_never_overwrites_a_mismatch(records: Records) -> None:
    for outcome in ("mismatch", "verified-by-quorum", "mismatch"):
        records.record_job(A, outcome, None, 3, 2, {}, [{"node_id": LIAR}])
    runs = records.runs(A)
    assert [r["outcome"] for r in runs] == ["mismatch", "verified-by-quorum", "mismatch"]
    assert [r["run_id"] for r in runs] == sorted(r["run_id"] for r in runs)
    assert all(r["started_at"] and r["finished_at"] for r in runs)


@pytest.fixture()
def four(records: Records) -> Records:
    for cid in (A, B, C, D):
        records.record_job(cid, "verified", None, 3, 0, {}, [])
    return records


@pytest.mark.parametrize("prefix", ["", "b", "bagaa", "bagaaiera", "bagaaieraaaaa"])
def test_an_empty_or_shared_prefix_is_refused_with_the_candidates(prefix: str, four: Records) -> None:
    with pytest.raises(UsageError) as caught:
        four.job(prefix)
    assert caught.value.code == 2
    if prefix:
        assert A in caught.value.message and B in caught.value.message


@pytest.mark.parametrize("prefix, found", [
    (A, A), ("bagaaieraaaaa2", B), ("bagaaierax", D), ("bagaaierab", C),
    ("bagaaierab%", C),  # a literal %
    ("bagaaiera%", None), ("%", None), ("_", None),  # wildcards match nothing but themselves
    ("bagaaiera_aaa1", None), ("bagaaieraaaaa_", None), ("bagaaieraaaaa3", None),
])
def test_a_prefix_names_exactly_one_job_and_wildcards_are_plain(prefix: str, found: str | None,
                                                                 four: Records) -> None:
    row = four.job(prefix)
    assert (row["job_cid"] if row else None) == found
