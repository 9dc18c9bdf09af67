"""Detached runs (verifier.detach): submit now, collect and judge later (cod get).

Real nodes on loopback; the honest result is the wordcount vector's (vectors/wordcount.json).
"""

from __future__ import annotations

from pathlib import Path

from cod.local import prepare
from verifier import Devstack, Records
from verifier.detach import collect, submit

from ..helpers import VECTORS, load_vector

HONEST = load_vector("wordcount")["expect"]["result_cid"]


async def test_collecting_a_detached_run_referees_disputed_claims_fetching_the_job_from_the_signers(
        records: Records, tmp_path: Path) -> None:
    """cod get of a run two liars outvote: the collecting requester holds nothing of the job (not
    even the module), fetches module and input by CID from the nodes that signed, re-executes and
    accepts the honest claim; both liars are named and recorded."""
    job = prepare(VECTORS / "wordcount.wasm", [], inputs=[str(VECTORS / "data" / "wordcount")])
    async with Devstack(3, bad_nodes=2, base_dir=tmp_path / "stack") as stack:
        await submit(job, stack.urls, 3, quorum=2, records=records)
        got = await collect(records, str(job.spec.cid), tmp_path / "out")
    assert got is not None
    assert (got.outcome, got.result_cid) == ("verified-by-referee", HONEST)
    assert len(got.liars) == 2 and got.referee is not None and got.referee["result_cid"] == HONEST
    assert (tmp_path / "out" / "stdout").read_text() == load_vector("wordcount")["expect"]["stdout"]
    (run,) = [r for r in records.runs(str(job.spec.cid)) if r["outcome"] == "verified-by-referee"]
    assert run["extra"]["liars"] == got.liars
