"""Attacks on how the requester picks nodes by their holdings (SPEC 11 step 1): nodes that lie
about what they hold change the order at most, never the outcome, and not for ever.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from cod.local import prepare

from ..hostile_gateway import Gateway, forward_to
from ..node_kit import start_node_in


async def test_a_node_lying_in_its_holdings_changes_only_the_order(tmp_path: Path, records: Any,
                                                                  http: aiohttp.ClientSession) -> None:
    """Attack 5: a node that claims to hold everything (a proxy rewriting /v1/holdings in
    front of a cheating node) is asked first, but its lie never makes a result verified."""
    from cod.local import prepare as prep
    from verifier.verify import verify

    from ..helpers import VECTORS

    honest = [await start_node_in(tmp_path, f"h{n}") for n in range(2)]
    cheat = await start_node_in(tmp_path, "cheat", cheat=True)
    proxy = Gateway()

    async def answer(request: web.Request) -> web.StreamResponse:
        if request.path == "/v1/holdings":
            wanted = request.query.getall("cid", [])
            return web.json_response({"datasets": wanted, "private_modules": wanted, "modules": wanted,
                                      "blobs": wanted, "truncated": False})
        return await forward_to(http, cheat.url, request)

    proxy.handler = answer
    await proxy.start()
    try:
        text = tmp_path / "t.txt"
        text.write_bytes(b"a b c\n")
        job = prep(VECTORS / "wordcount.wasm", [], inputs=[f"{text}:/inputs/t.txt"])
        liar = cheat.node.identity.node_id
        result = await verify(job, [honest[0].url, honest[1].url, proxy.url], 2, records=records)
        asked = [a.node_id for a in result.answers]
        assert liar in asked, asked  # the lie moved it into the first N ...
        assert result.outcome == "mismatch", result.outcome  # ... and no further
        assert result.results_dir is None
        quorum = await verify(job, [honest[0].url, honest[1].url, proxy.url], 3, quorum=2, records=records)
        assert quorum.outcome == "verified-by-quorum"
        lied = [a.result_cid for a in quorum.answers if a.node_id == liar]
        assert lied and lied[0] != quorum.result_cid
    finally:
        await proxy.stop()
        await cheat.stop()
        for node in honest:
            await node.stop()


@pytest.mark.parametrize("answer_kind", ["429-junk", "500", "huge", "not-lists", "slow"])
async def test_a_hostile_holdings_answer_is_only_an_empty_hint(tmp_path: Path, records: Any,
                                                               http: aiohttp.ClientSession, answer_kind: str) -> None:
    """Attack 5: one node answers /v1/holdings with a 429 and a junk Retry-After, a 500, a
    body over the 2 MiB JSON cap, lists of non-strings, or not before the info timeout; the
    verification goes on with the others and its outcome is theirs."""
    from verifier.verify import verify

    from ..helpers import VECTORS

    honest = [await start_node_in(tmp_path, f"h{n}") for n in range(2)]
    proxy = Gateway()

    async def answer(request: web.Request) -> web.StreamResponse:
        if request.path == "/v1/holdings":
            if answer_kind == "429-junk":
                return web.Response(status=429, headers={"Retry-After": "soon"})
            if answer_kind == "500":
                return web.Response(status=500, text="{")
            if answer_kind == "huge":
                return web.Response(body=b'{"blobs": ["' + b"x" * (3 << 20) + b'"]}', content_type="application/json")
            if answer_kind == "slow":
                await asyncio.sleep(7)  # past the 5 s a requester gives /v1/info and /v1/holdings
            return web.json_response({"datasets": [1, None, {"a": 1}], "blobs": "all", "modules": [[]]})
        return await forward_to(http, honest[1].url, request)

    proxy.handler = answer
    await proxy.start()
    try:
        text = tmp_path / "t.txt"
        text.write_bytes(b"a b c\n")
        job = prepare(VECTORS / "wordcount.wasm", [], inputs=[f"{text}:/inputs/t.txt"])
        result = await asyncio.wait_for(verify(job, [honest[0].url, proxy.url], 2, records=records), 60)
        assert result.outcome == "verified", (result.outcome, result.note, result.unreachable)
    finally:
        await proxy.stop()
        for node in honest:
            await node.stop()


@pytest.mark.parametrize("lies", [False, True])
async def test_a_cheater_lying_in_holdings_is_not_asked_first_for_ever(tmp_path: Path, records: Any,
                                                                       http: aiohttp.ClientSession, lies: bool) -> None:
    """Attack 5: a cheater that disagreed (by a strict majority) keeps its place among the
    first N because it holds the module (honestly, from its last run) or claims to hold
    everything; an honest node with a clean record that lacks the module is left out."""
    from verifier.verify import verify

    from ..helpers import VECTORS

    honest = [await start_node_in(tmp_path, f"h{n}") for n in range(3)]
    cheat = await start_node_in(tmp_path, "cheat", cheat=True)
    proxy = Gateway()

    async def answer(request: web.Request) -> web.StreamResponse:
        if request.path == "/v1/holdings" and lies:
            wanted = request.query.getall("cid", [])
            return web.json_response({"datasets": [], "private_modules": [], "modules": wanted, "blobs": wanted,
                                      "truncated": False})
        return await forward_to(http, cheat.url, request)

    proxy.handler = answer
    await proxy.start()
    try:
        liar = cheat.node.identity.node_id
        urls = [node.url for node in honest] + [proxy.url]
        asked_each_run = []
        for n in range(4):
            text = tmp_path / f"t{n}.txt"
            text.write_bytes(b"a b c %d\n" % n)
            job = prepare(VECTORS / "wordcount.wasm", [], inputs=[f"{text}:/inputs/t.txt"])
            # the first run is on h0, h1 and the cheater only (so it disagrees and holds the module)
            result = await verify(job, urls if n else urls[:2] + urls[3:], 3, records=records)
            asked_each_run.append(liar in [a.node_id for a in result.answers])
            if n == 0:
                assert result.outcome == "mismatch"
        assert asked_each_run[0]
        assert not asked_each_run[-1], f"after disagreeing the liar is still asked before honest nodes: {asked_each_run}"
    finally:
        await proxy.stop()
        await cheat.stop()
        for node in honest:
            await node.stop()
