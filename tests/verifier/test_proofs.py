"""The referee builds a fraud proof for every proven liar (verifier.proofs, SPEC 11.5): two colluding
cheating devstack nodes against one honest node; each proof is kept, listed, and checks as proven."""

from __future__ import annotations

from pathlib import Path

from cod.content.store import ContentStore
from cod.fraud import FraudProof, check
from cod.local import prepare
from verifier import Devstack, Records, verify

from ..helpers import VECTORS, load_vector

HONEST = load_vector("wordcount")["expect"]["result_cid"]


async def test_each_proven_liar_gets_a_proof_that_checks(tmp_path: Path) -> None:
    records = Records(tmp_path / "home" / "requester.db")
    job = prepare(VECTORS / "wordcount.wasm", [], inputs=[str(VECTORS / "data" / "wordcount")])
    async with Devstack(3, bad_nodes=2, base_dir=tmp_path / "stack") as stack:
        done = await verify(job, stack.urls, 3, records=records, referee="self", cache_dir=tmp_path / "cache")
        assert done.outcome == "verified-by-referee" and len(done.liars) == 2
        assert len(done.fraud_proofs) == 2 and done.to_json()["fraud_proofs"] == done.fraud_proofs
        proofs = [FraudProof.from_bytes((tmp_path / "home" / "fraud" / f"{pid}.json").read_bytes())
                  for pid in done.fraud_proofs]
        assert sorted(p.liar for p in proofs) == done.liars
        assert all(p.referee["result_cid"] == HONEST for p in proofs)
        verdict = await check(proofs[0], ContentStore(tmp_path / "empty"), cache_dir=tmp_path / "cache")
    assert (verdict.status, verdict.result_cid) == ("proven", HONEST)
    (run,) = records.runs(done.job_cid)
    assert run["extra"]["fraud_proofs"] == done.fraud_proofs

    # the same proofs kept by many writers at once (two runs of one job): whole files, no leftovers
    import threading

    from verifier.proofs import keep

    again = tmp_path / "again"
    writers = [threading.Thread(target=keep, args=(again, proofs)) for _ in range(8)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert sorted(p.name for p in again.iterdir()) == sorted(f"{p.proof_id}.json" for p in proofs)
    assert all((again / f"{p.proof_id}.json").read_bytes() == p.canonical_bytes() for p in proofs)
