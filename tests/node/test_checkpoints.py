"""Checkpoint queries of a node (SPEC 11.7): advertised, bounded, signed, refused with JSON errors."""

from __future__ import annotations

import base64

import aiohttp
import pytest

from cod.errors import BadSignature, CheckpointRefused
from cod.identity import Identity
from cod.limits import MAX_CHECKPOINTS, MIN_CHECKPOINT_INTERVAL
from cod.node.checkpoints import Listing, check_interval, parse
from cod.node.server import start_node


def _listing(identity: Identity) -> Listing:
    return Listing("job", identity.node_id, "p", "t", 1 << 16, ((0, 70000, "a" * 64), (1, 140000, "b" * 64)),
                   150000, "c" * 64, 0, None, "bafy")


def test_a_signed_listing_parses_and_any_change_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    identity = Identity.load_or_create(tmp_path)
    signed = _listing(identity).sign(identity)
    assert parse(signed, "job", identity.node_id, 1 << 16) == _listing(identity)
    with pytest.raises(BadSignature, match="not job other"):
        parse(signed, "other", identity.node_id, 1 << 16)
    forged = {"checkpoints": dict(signed["checkpoints"], result="bafylie"), "signature": signed["signature"]}
    with pytest.raises(BadSignature):
        parse(forged, "job", identity.node_id, 1 << 16)
    junk = {"checkpoints": dict(signed["checkpoints"], checkpoints=[[0, 5, "zz"]]), "signature": signed["signature"]}
    with pytest.raises(BadSignature, match="malformed"):
        parse(junk, "job", identity.node_id, 1 << 16)
    with pytest.raises(BadSignature, match="malformed"):
        parse({"checkpoints": signed["checkpoints"], "signature": base64.b64encode(b"x").decode() + "!"},
              "job", identity.node_id, 1 << 16)


def test_intervals_below_the_minimum_or_giving_too_many_checkpoints_are_refused() -> None:
    assert check_interval(MIN_CHECKPOINT_INTERVAL, (1 << 16) * MAX_CHECKPOINTS) == 1 << 16
    for bad in (MIN_CHECKPOINT_INTERVAL - 1, True, "65536", 0):
        with pytest.raises(CheckpointRefused, match="at least 65536"):
            check_interval(bad, 10)
    with pytest.raises(CheckpointRefused, match=f"over {MAX_CHECKPOINTS} checkpoints"):
        check_interval(1 << 16, (1 << 16) * (MAX_CHECKPOINTS + 1))


async def test_the_node_advertises_checkpoints_and_answers_errors_as_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    running = await start_node(tmp_path / "node", concurrency=1)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(running.url + "/v1/info") as resp:
                published = (await resp.json())["checkpoints"]
            assert published["min_interval"] == 1 << 16 and published["max_checkpoints"] == MAX_CHECKPOINTS
            assert published["supported"] is (published["unsupported"] is None)
            job = "bagaaierarfxzqnpcwwqakjmz3bbhgoua3welwuo3ndqy2j3gzzaxcgkxhthq"
            async with http.post(f"{running.url}/v1/jobs/{job}/checkpoints", json={"interval": 1 << 16}) as resp:
                body = await resp.json()
            assert resp.status in (404, 501) and body["error"] in ("NotFound", "CheckpointUnsupported")
            async with http.post(f"{running.url}/v1/jobs/{job}/checkpoints", json={"every": 1}) as resp:
                body = await resp.json()
            assert (resp.status, body["error"]) == (409, "CheckpointRefused")
            async with http.get(f"{running.url}/v1/jobs/{job}/checkpoints/x/snapshot") as resp:
                assert (resp.status, (await resp.json())["error"]) == (409, "CheckpointRefused")
    finally:
        await running.stop()


async def test_a_done_job_is_traced_on_demand_signed_cached_and_its_snapshot_served(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cod.checkpoint import available, snapshot_hash
    from cod.local import prepare
    from verifier import verify

    from ..helpers import VECTORS

    if available() is not None:
        pytest.skip(available() or "")
    running = await start_node(tmp_path / "node", concurrency=1)
    try:
        job = prepare(VECTORS / "wordcount.wasm", [], inputs=[str(VECTORS / "data" / "wordcount")])
        done = await verify(job, [running.url], 1)
        assert running.node.checkpointer.traces == 0  # nothing is checkpointed unless asked
        node_id = running.node.identity.node_id
        async with aiohttp.ClientSession() as http:
            url = f"{running.url}/v1/jobs/{done.job_cid}/checkpoints"
            async with http.post(url, json={"interval": 1 << 16}) as resp:
                assert resp.status == 200, await resp.text()
                listing = parse(await resp.json(), done.job_cid, node_id, 1 << 16)
            async with http.post(url, json={"interval": 1 << 16}) as resp:
                assert parse(await resp.json(), done.job_cid, node_id, 1 << 16) == listing
            assert running.node.checkpointer.traces == 1  # the second answer came from the cache
            assert listing.result == done.result_cid and listing.checkpoints
            async with http.get(f"{url}/0/snapshot?interval=65536") as resp:
                data = await resp.read()
        assert snapshot_hash(data) == listing.checkpoints[0][2]
    finally:
        await running.stop()
