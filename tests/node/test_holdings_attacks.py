"""Attacks on a node's GET /v1/holdings (SPEC 9.8): malformed and oversized questions, bursts."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp

from cod.content.cid import CID, RAW

from ..node_kit import health_under_load, start_node_in


async def test_holdings_refuse_malformed_and_oversized_questions_without_a_500(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Attack 5: malformed CIDs (bad base32, bad base58 CIDv0, empty, a path), a CIDv0 of a
    held blob (answered in its CIDv1 form), and a list over MAX_HOLDINGS."""
    node = await start_node_in(tmp_path, "n")
    try:
        text = b"held\n"
        cid = str(CID.of(RAW, text))
        async with http.put(f"{node.url}/v1/blobs/{cid}", data=text) as resp:
            assert resp.status in (200, 201)
        for bad in ("", "x", "b" + "1" * 60, "Qm" + "0" * 44, "Qm" + "1" * 44, f"{cid}/a", "../" + cid):
            async with http.get(f"{node.url}/v1/holdings", params=[("cid", bad)]) as resp:
                assert resp.status == 400, (bad, resp.status, await resp.text())
        async with http.get(f"{node.url}/v1/holdings", params=[("cid", cid)] * 3) as resp:
            body = await resp.json()
        assert resp.status == 200 and body["blobs"] == [cid] and body["modules"] == []
        many = "&".join(f"cid={cid}" for _ in range(10001))
        async with http.get(f"{node.url}/v1/holdings?{many}") as resp:
            assert 400 <= resp.status < 500, resp.status
        async with http.get(f"{node.url}/v1/health") as resp:
            assert resp.status == 200
    finally:
        await node.stop()


async def test_a_burst_of_holdings_requests_never_stalls_a_node_with_many_blobs(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Attack 5/7 (denial of service): GET /v1/holdings lists every blob, stats each twice and
    opens each file to see whether it is a module. On the event loop, a burst of these from
    anyone stalls /v1/health past the requester's 1.5 s (SPEC 11 step 2)."""
    node = await start_node_in(tmp_path, "n")
    try:
        files = node.node.blobs.files
        for n in range(10000):
            data = b"%d\n" % n
            (files / str(CID.of(RAW, data))).write_bytes(data)
        node.node.holdings([])  # warm
        started = time.monotonic()
        node.node.holdings([])
        one = time.monotonic() - started
        burst = max(8, int(3.0 / max(one, 0.01)))

        async def ask() -> None:
            async with http.get(f"{node.url}/v1/holdings") as resp:
                await resp.read()

        worst = await health_under_load(node.url, [ask() for _ in range(burst)])
        assert worst < 1.5, f"/v1/health took {worst:.1f} s during {burst} holdings requests ({one:.2f} s each)"
    finally:
        await node.stop()
