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
