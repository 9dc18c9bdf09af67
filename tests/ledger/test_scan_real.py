"""The ledger's node scanner against real nodes: eligibility recorded with no requester report;
a hostile feed (garbage, wrong types, forged statements) records nothing and never crashes it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
from aiohttp import web

from cod.content.unixfs import cid_of_tree
from cod.ledger import entries
from cod.ledger.scan import Scanner
from cod.local import prepare
from verifier.devstack import Devstack
from verifier.verify import verify

from ..hostile import on_loopback
from .bkit import MOD, NODES, ORIGIN, STRANGER, governed, spec, statement

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "vectors" / "data" / "wordcount"


async def test_scanning_two_nodes_makes_a_job_eligible_without_a_requester(tmp_path: Path) -> None:
    ledger = governed(tmp_path)
    job = prepare(str(ROOT / "vectors" / "wordcount.wasm"), [], inputs=[str(DATA)])
    async with Devstack(2) as stack:
        verification = await verify(job, stack.urls, 2)  # no --ledger: nobody reports it
        assert verification.outcome == "verified"
        ledger.bless([entries.sign_bless_batch(MOD, {str(cid_of_tree(DATA)): [1]}, origin=ORIGIN)])
        async with aiohttp.ClientSession() as session:
            first = Scanner(ledger, stack.urls[0], tmp_path, 1.0)
            assert await first.scan_once(session) == 0  # one node's word is not evidence
            assert ledger.queue() == []
            second = Scanner(ledger, stack.urls[1], tmp_path, 1.0)
            assert await second.scan_once(session) == 1
            assert await second.scan_once(session) == 0  # nothing new: nothing appended
    (queued,) = ledger.queue()
    assert queued["job"] == verification.job_cid and queued["result"] == verification.result_cid
    assert sorted(queued["nodes"]) == sorted(a.node_id for a in verification.answers)


async def _hostile_node(bodies: list[bytes]) -> tuple[web.AppRunner, str]:
    calls = iter(bodies)

    async def feed(request: web.Request) -> web.Response:
        return web.Response(body=next(calls, b'{"statements": [], "next": 0}'), content_type="application/json")

    return await on_loopback(feed, 1 << 20)  # the scanner asks only GET /v1/statements


async def test_a_hostile_feed_records_nothing(tmp_path: Path) -> None:
    ledger = governed(tmp_path)
    size = ledger.size
    job_spec = spec()
    good = statement(job_spec, NODES[0])
    forged = dict(statement(job_spec, NODES[1]))
    forged["signature"] = statement(job_spec, STRANGER)["signature"]  # a signature by another key
    other_job = statement(spec(entries.check_cid(good["statement"]["result"], "cid")), NODES[2])
    pages = [b"not json", b"[]", b'{"statements": "x", "next": 1}', b'{"statements": [], "next": -5}',
             json.dumps({"statements": [{"seq": 1, "job": good["statement"]["job"], "spec": job_spec,
                                         "statement": forged},
                                        {"seq": 2, "job": good["statement"]["job"], "spec": job_spec,
                                         "statement": other_job},
                                        {"seq": 3, "job": "bafy-not-a-cid", "spec": {"x": 1}, "statement": 7},
                                        "garbage"], "next": 3}).encode(),
             b"{" * 100_000]
    runner, url = await _hostile_node(pages)
    try:
        async with aiohttp.ClientSession() as session:
            scanner = Scanner(ledger, url, tmp_path, 1.0)
            for _ in range(len(pages) + 1):
                assert await asyncio.wait_for(scanner.scan_once(session), 30) == 0
    finally:
        await runner.cleanup()
    assert ledger.size == size
    assert scanner.cache.conn.execute("SELECT COUNT(*) FROM statements").fetchone()[0] == 0
