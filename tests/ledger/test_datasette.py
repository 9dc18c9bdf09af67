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

from .bkit import DATA, MOD, RESULT, agreeing, blessed_ledger, job_of, spec

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

    decision = entries.sign_decision(MOD, job=job, result=RESULT, action="approve", datacap=1 << 40,
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
