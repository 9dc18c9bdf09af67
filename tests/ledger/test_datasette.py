"""The ledger database opens in Datasette, every table and view is documented in
cod/ledger/datasette.json, and the documented views answer what a moderator and a notary ask."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from datasette.app import Datasette

import cod.ledger
from cod.ledger import entries
from cod.ledger.store import DB_FILE

from .bkit import DATA, MOD, ORIGIN, RESULT, RESULT_B, agreeing, blessed_ledger, job_of, key, spec, statement

METADATA = Path(cod.ledger.__file__).parent / "datasette.json"


def _metadata() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(METADATA.read_text())
    return data


async def _get(ds: Datasette, path: str) -> Any:
    response = await ds.client.get(path)
    assert response.status_code == 200, (path, response.text[:300])
    return response.json()


def test_every_table_and_view_is_documented(tmp_path: Path) -> None:
    ledger = blessed_ledger(tmp_path)
    ledger.close()
    conn = sqlite3.connect(tmp_path / "ledger" / DB_FILE)
    names = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    conn.close()
    documented = set(_metadata()["databases"]["ledger"]["tables"])
    assert names == documented, f"undocumented: {sorted(names - documented)}; stale: {sorted(documented - names)}"
    for name, doc in _metadata()["databases"]["ledger"]["tables"].items():
        assert doc.get("description"), f"{name} has no description"


@pytest.mark.asyncio
async def test_datasette_answers_the_moderator_and_the_notary(tmp_path: Path) -> None:
    ledger = blessed_ledger(tmp_path)
    job_spec = spec(DATA)
    index, judgement, _ = ledger.report_evidence(job_spec, agreeing(job_spec, 3))
    assert judgement.eligible
    job = job_of(job_spec)
    db = tmp_path / "ledger" / DB_FILE

    ds = Datasette([str(db)], metadata=_metadata())
    await ds.invoke_startup()
    tables = await _get(ds, "/ledger.json")
    assert {t["name"] for t in tables["tables"]} >= {"entries", "blessings", "decisions"}
    queue = await _get(ds, "/ledger/moderation_queue.json?_shape=array")
    assert [(row["job"], row["result"], row["entry"]) for row in queue] == [(job, RESULT, index)]
    blessed = await _get(ds, f"/ledger/blessings.json?_shape=array&cid={DATA}")
    assert [row["cid"] for row in blessed] == [DATA]

    decision = entries.sign_decision(MOD, origin=ORIGIN, job=job, result=RESULT, action="approve", datacap=1 << 40,
                                     reason="useful word counts", eligibility=index, supersedes=None)
    decided = ledger.decide(decision)
    ledger.close()
    approved = await _get(ds, f"/ledger/approved_results.json?_shape=array&result={RESULT}")
    assert [(row["job"], row["datacap"], row["entry"]) for row in approved] == [(job, 1 << 40, decided)]
    assert await _get(ds, "/ledger/moderation_queue.json?_shape=array") == []
    # the metadata reaches the pages Datasette shows
    about = await ds.client.get("/ledger/moderation_queue")
    assert "what moderators have to look at" in about.text


def test_datasette_cannot_change_the_log(tmp_path: Path) -> None:
    """Datasette's write paths (or any SQL client) meet the append-only triggers."""
    ledger = blessed_ledger(tmp_path)
    ledger.close()
    conn = sqlite3.connect(tmp_path / "ledger" / DB_FILE)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE blessings SET cid = 'bafyevil'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM entries WHERE idx = 0")
    conn.close()


@pytest.mark.asyncio
async def test_the_moderation_queue_view_is_the_apis_queue_through_changing_decisions(tmp_path: Path) -> None:
    # issue 19 point 28: approve R, the evidence turns to R2 and R2 is rejected, the evidence turns
    # back to R: the API queues the job again (its latest decision judged another result); so must the view
    ledger = blessed_ledger(tmp_path)
    job_spec = spec(DATA)
    job = job_of(job_spec)
    db = tmp_path / "ledger" / DB_FILE
    ds = Datasette([str(db)], metadata=_metadata())
    await ds.invoke_startup()

    async def both_queues() -> tuple[list[tuple[str, str, int]], list[tuple[str, str, int]]]:
        view = await _get(ds, "/ledger/moderation_queue.json?_shape=array")
        return ([(r["job"], r["result"], r["entry"]) for r in view],
                [(r["job"], r["result"], r["entry"]) for r in ledger.queue()])

    def decide(action: str, result: str, eligibility: int, supersedes: int | None) -> int:
        return ledger.decide(entries.sign_decision(MOD, origin=ORIGIN, job=job, result=result, action=action,
                                                   datacap=(1 << 40) if action == "approve" else 0, reason="r",
                                                   eligibility=eligibility, supersedes=supersedes))

    e1, _, _ = ledger.report_evidence(job_spec, [statement(job_spec, key(30 + n)) for n in range(2)])
    d1 = decide("approve", RESULT, e1, None)
    e2, j2, _ = ledger.report_evidence(job_spec, [statement(job_spec, key(40 + n), RESULT_B) for n in range(3)])
    assert j2.result == RESULT_B
    view, api = await both_queues()
    assert view == api == [(job, RESULT_B, e2)]
    d2 = decide("reject", RESULT_B, e2, d1)
    e3, j3, _ = ledger.report_evidence(job_spec, [statement(job_spec, key(50 + n)) for n in range(2)])
    assert j3.result == RESULT
    view, api = await both_queues()
    assert api == [(job, RESULT, e3)], "the API queues the job again: its latest decision judged another result"
    assert view == api
    decide("approve", RESULT, e3, d2)
    view, api = await both_queues()
    assert view == api == []
    approved = await _get(ds, "/ledger/approved_results.json?_shape=array")
    assert [(r["job"], r["result"]) for r in approved] == [(job, RESULT)]
    ledger.close()


def test_opening_a_ledger_of_an_earlier_cod_recreates_its_views(tmp_path: Path) -> None:
    from cod.ledger.audit import audit_dir
    from cod.ledger.log import Ledger
    blessed_ledger(tmp_path).close()
    path = tmp_path / "ledger" / DB_FILE
    conn = sqlite3.connect(path)
    old = ("SELECT e.job, e.result, e.entry FROM latest_eligibility e WHERE e.eligible = 1 "
           "AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.job = e.job AND d.result = e.result)")
    conn.executescript(f"DROP VIEW moderation_queue; CREATE VIEW moderation_queue AS {old};")
    conn.close()
    assert any("view moderation_queue is not the one cod creates" in p for p in audit_dir(tmp_path / "ledger"))
    Ledger.open(tmp_path / "ledger").close()
    assert audit_dir(tmp_path / "ledger") == []
