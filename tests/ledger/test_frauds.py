"""Fraud proofs at the ledger (SPEC.md 12.10): a real ledger on loopback, real keys, real re-execution."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import aiohttp

from cod.content.store import ContentStore
from cod.ledger.frauds import CONTENT_DIR
from cod.ledger.log import Ledger
from cod.ledger.rates import Rate, WriteLimits
from cod.ledger.server import start_ledger

from ..fraud.kit import HONEST, LIE, WORDCOUNT, key, proof_obj, signed
from ..helpers import VECTORS
from .bkit import blessed_ledger


async def post(session: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    async with session.post(url + "/v1/fraud-proofs", json=body) as resp:
        return resp.status, await resp.json()


async def test_a_proven_lie_is_recorded_once_and_false_accusations_junk_and_floods_are_refused(
        tmp_path: Path) -> None:
    blessed_ledger(tmp_path).close()
    store = ContentStore(tmp_path / "ledger" / CONTENT_DIR)  # the ledger holds the job's module and input
    store.add(VECTORS / "wordcount.wasm")
    store.add(VECTORS / "data" / "wordcount")
    running = await start_ledger(tmp_path / "ledger", limits=WriteLimits(fraud=Rate(8, 3_600_000)))
    liar, other = key(7), key(8)
    try:
        async with aiohttp.ClientSession() as session:
            lie = proof_obj(signed(liar, LIE))
            first, second = await asyncio.gather(post(session, running.url, lie), post(session, running.url, lie))
            assert sorted(b["status"] for _, b in (first, second)) == ["known", "recorded"], (first, second)
            assert first[0] == second[0] == 200 and first[1]["index"] == second[1]["index"]
            index = first[1]["index"]
            status, body = await post(session, running.url, lie)  # replayed later: known, no new entry
            assert (status, body["status"], body["index"]) == (200, "known", index)
            # an honest statement accused: the ledger's own run gives exactly what it signed
            status, body = await post(session, running.url, proof_obj(signed(other, HONEST), referee_result=LIE))
            assert (status, body["error"]) == (422, "Refuted"), body
            status, body = await post(session, running.url, {"type": "cod/fraud-proof/v1", "junk": 1})
            assert (status, body["error"]) == (400, "BadProof") and body["hint"], body
            big = copy.deepcopy(lie)
            big["job"]["env"] = {"X": "y" * 70_000}
            status, body = await post(session, running.url, big)
            assert status in (400, 413), body
            async with session.post(running.url + "/v1/fraud-proofs", data=b"{" + b" " * (2 << 20) + b"}") as resp:
                assert resp.status == 413
            codes = [(await post(session, running.url, proof_obj(signed(key(20 + n), LIE))))[0] for n in range(4)]
            assert 429 in codes, codes
            # the liar's statement no longer counts: liar + another key agreeing on the lie is not eligible
            spec = copy.deepcopy(WORDCOUNT["spec"])
            statements = [signed(liar, LIE).to_json(), signed(key(9), LIE).to_json()]
            async with session.post(running.url + "/v1/evidence", json={"spec": spec, "statements": statements}) as r:
                answer = await r.json()
            assert answer["eligible"] is False and "proven liars set aside" in answer["reason"], answer
            size = running.ledger.size
    finally:
        await running.stop()
    reopened = Ledger.open(tmp_path / "ledger")  # the replay agrees
    try:
        assert reopened.size == size and reopened.state.convicted[liar.node_id] == index
    finally:
        reopened.close()
    from cod.ledger.audit import audit_dir
    assert audit_dir(tmp_path / "ledger") == []


async def test_an_audit_turns_a_colluding_pair_into_fraud_entries_before_the_queue(tmp_path: Path) -> None:
    from cod.ledger import entries
    from cod.ledger.frauds import FraudOptions

    from .bkit import MOD, ORIGIN

    ledger = blessed_ledger(tmp_path)
    data = WORDCOUNT["spec"]["inputs"][0]["cid"]
    ledger.bless([entries.sign_bless_batch(MOD, {data: [1]}, origin=ORIGIN)])
    ledger.close()
    store = ContentStore(tmp_path / "ledger" / CONTENT_DIR)
    store.add(VECTORS / "wordcount.wasm")
    store.add(VECTORS / "data" / "wordcount")
    running = await start_ledger(tmp_path / "ledger", fraud=FraudOptions(audit_rate=1_000_000))
    a, b, h1, h2 = key(30), key(31), key(32), key(33)
    try:
        async with aiohttp.ClientSession() as session:
            lie = {"spec": WORDCOUNT["spec"], "statements": [signed(a, LIE).to_json(), signed(b, LIE).to_json()]}
            async with session.post(running.url + "/v1/evidence", json=lie) as r:
                made = await r.json()
            assert made["eligible"] is True  # two keys agree: eligible by the rules of 12.5
            assert running.auditor is not None
            for _ in range(200):
                job = await (await session.get(running.url + f"/v1/jobs/{made['job']}")).json()
                if job["audit"] is not None:
                    break
                await asyncio.sleep(0.05)
            assert job["audit"]["selected"] is True and job["audit"]["outcome"] == "disagrees", job["audit"]
            assert job["audit"]["result"] == HONEST and job["audited"] is False
            assert sorted(f["node"] for f in job["flags"]) == sorted([a.node_id, b.node_id])
            queue = await (await session.get(running.url + "/v1/moderation/queue")).json()
            assert [j["flags"] != [] for j in queue["jobs"]] == [True]
            honest = {"spec": WORDCOUNT["spec"], "statements": [signed(h1, HONEST).to_json(),
                                                                 signed(h2, HONEST).to_json()]}
            async with session.post(running.url + "/v1/evidence", json=honest) as r:
                now = await r.json()
            assert now["eligible"] is True and now["result"] == HONEST, now  # the liars count for nothing now
            for _ in range(200):
                job = await (await session.get(running.url + f"/v1/jobs/{made['job']}")).json()
                if job["audited"]:
                    break
                await asyncio.sleep(0.05)
            assert job["audited"] is True and job["flags"] == [] and job["audit"]["outcome"] == "agrees"
    finally:
        await running.stop()
    from cod.ledger.audit import audit_dir
    assert audit_dir(tmp_path / "ledger") == []  # cod ledger verify: every draw and fraud entry replays, signed


async def test_a_cheating_devstack_nodes_lie_is_recorded_from_its_own_content(records: Any, tmp_path: Path) -> None:
    """A cheating node's signed lie, posted with no content at the ledger: the ledger fetches the
    module and input by CID from the proof's sources (the nodes) and records it."""
    from cod.fraud import build
    from cod.local import prepare
    from cod.statement import SignedStatement
    from verifier import Devstack, verify

    blessed_ledger(tmp_path).close()
    job = prepare(VECTORS / "wordcount.wasm", [], inputs=[str(VECTORS / "data" / "wordcount")])
    async with Devstack(1, bad_nodes=1, base_dir=tmp_path / "stack") as stack:
        (answer,) = (await verify(job, stack.urls, 1, records=records)).answers
        assert answer.statement is not None and answer.result_cid != HONEST
        proof = build(job.spec, SignedStatement.from_json(answer.statement), result_cid=HONEST, exit_code=0,
                      trap=None, fuel_used=WORDCOUNT["expect"]["fuel_used"], sources=stack.urls)
        running = await start_ledger(tmp_path / "ledger")
        try:
            async with aiohttp.ClientSession() as session:
                status, body = await post(session, running.url, proof.to_json())
            assert (status, body["status"], body["proof_id"]) == (200, "recorded", proof.proof_id), body
            assert running.ledger.state.convicted == {answer.node_id: body["index"]}
        finally:
            await running.stop()
