"""Checking fraud proofs by re-execution (cod.fraud.check, SPEC 11.5): a real lying node's signed
statement is proven false, an honest one refuted, and a proof whose content cannot be had is
undecided naming the CID. Expected results are the wordcount vector's."""

from __future__ import annotations

from pathlib import Path

from cod.content.store import ContentStore
from cod.fraud import FraudProof, build, check
from cod.local import prepare
from cod.statement import SignedStatement
from cod.wasm.engine import Engine
from verifier import Devstack, Records, verify

from ..helpers import VECTORS
from .kit import HONEST, LIE, SPEC, WORDCOUNT, key, proof_obj, signed

INPUT = VECTORS / "data" / "wordcount"


async def test_a_lying_nodes_statement_is_proven_from_the_nodes_by_cid(records: Records, tmp_path: Path) -> None:
    """A cheating devstack node signs a changed result; the proof names it, and a checker holding
    nothing gets the module and input by CID from the proof's sources and proves the lie."""
    job = prepare(VECTORS / "wordcount.wasm", [], inputs=[str(INPUT)])
    async with Devstack(1, bad_nodes=1, base_dir=tmp_path / "stack") as stack:
        told = await verify(job, stack.urls, 1, records=records)
        (answer,) = told.answers
        assert answer.statement is not None and answer.result_cid != HONEST  # it lied
        claim = SignedStatement.from_json(answer.statement)
        proof = build(job.spec, claim, result_cid=HONEST, exit_code=0, trap=None,
                      fuel_used=WORDCOUNT["expect"]["fuel_used"], sources=stack.urls)
        assert proof.liar == answer.node_id and proof.job_cid == WORDCOUNT["job_cid"]
        verdict = await check(FraudProof.from_bytes(proof.canonical_bytes()), ContentStore(tmp_path / "empty"),
                              cache_dir=tmp_path / "cache")
    assert verdict.status == "proven" and verdict.result_cid == HONEST, verdict
    assert answer.result_cid in verdict.reason and answer.node_id in verdict.reason
    assert verdict.fuel_used == WORDCOUNT["expect"]["fuel_used"]


def _store_with_job(tmp_path: Path) -> ContentStore:
    store = ContentStore(tmp_path / "store")
    store.add(VECTORS / "wordcount.wasm")
    store.add(INPUT)
    return store


async def test_a_signed_lie_is_proven_and_an_honest_claim_refuted_from_the_local_store(tmp_path: Path) -> None:
    store = _store_with_job(tmp_path)
    liar = key(3)
    lie = FraudProof.parse(proof_obj(signed(liar, LIE)))
    proven = await check(lie, store, cache_dir=tmp_path / "cache")
    assert (proven.status, proven.result_cid) == ("proven", HONEST)
    # a false accusation: an honest node's true statement, a "referee" result that is not the job's
    honest = FraudProof.parse(proof_obj(signed(key(4), HONEST), referee_result=LIE))
    refuted = await check(honest, store, cache_dir=tmp_path / "cache")
    assert (refuted.status, refuted.result_cid) == ("refuted", HONEST)
    assert "false accusation" in refuted.reason and key(4).node_id in refuted.reason
    # the referee's part is not signed and not trusted: a proof naming another referee result
    # is judged by the checker's own run
    odd = FraudProof.parse(proof_obj(signed(liar, LIE), referee_result="bafybeihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"))
    judged = await check(odd, store, cache_dir=tmp_path / "cache")
    assert (judged.status, judged.result_cid) == ("proven", HONEST) and "the proof's referee found" in judged.reason


async def test_missing_content_is_undecided_naming_the_cid(tmp_path: Path) -> None:
    proof = FraudProof.parse(proof_obj(signed(key(3), LIE)))
    nothing = await check(proof, ContentStore(tmp_path / "empty"), cache_dir=tmp_path / "cache")
    assert nothing.status == "undecided" and nothing.result_cid is None
    assert SPEC.module in nothing.reason, nothing.reason
    module_only = ContentStore(tmp_path / "module-only")
    module_only.add(VECTORS / "wordcount.wasm")
    no_input = await check(proof, module_only, urls=["http://127.0.0.1:9"], cache_dir=tmp_path / "cache")
    assert no_input.status == "undecided"
    assert SPEC.inputs[0].cid is not None and SPEC.inputs[0].cid in no_input.reason, no_input.reason
    assert "nor did any of 1 source(s)" in no_input.reason


async def test_a_claim_of_another_profile_is_undecided(tmp_path: Path) -> None:
    here = Engine(tmp_path / "cache").profile
    other = "wasmtime-0.0.0+0000000000000000"
    assert other != here
    proof = FraudProof.parse(proof_obj(signed(key(3), LIE, profile=other)))
    verdict = await check(proof, _store_with_job(tmp_path), cache_dir=tmp_path / "cache")
    assert verdict.status == "undecided" and other in verdict.reason and here in verdict.reason


async def test_the_fuel_bound_is_undecided(tmp_path: Path) -> None:
    proof = FraudProof.parse(proof_obj(signed(key(3), LIE)))
    verdict = await check(proof, _store_with_job(tmp_path), fuel=1000, cache_dir=tmp_path / "cache")
    assert verdict.status == "undecided" and "fuel bound (1000" in verdict.reason
