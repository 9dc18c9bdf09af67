"""The verifier against hostile nodes (tests/hostile.py) in front of real nodes on loopback.

Every malformed answer drops that node with a reason and never a traceback; every bad
results CAR is caught and another agreeing node delivers; time and bytes stay bounded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from cod.identity import Identity
from cod.jobspec import Limits
from cod.local import PreparedJob, prepare
from cod.wasm.engine import profile_id
from verifier import Devstack, Records, fetch, verify
from verifier.fetch import results_car_bound
from verifier.jobview import recorded_view
from verifier.verify import AGREES, DISAGREES, FAILED, NotEnoughNodes, statuses

from ..helpers import VECTORS, load_vector
from ..hostile import LIE, RESULT_MODES, Hostile
from ..hostile_gateway import Gateway, forward_to
from ..node_kit import start_node_in
from ..wasm.module_kit import MIX, MIX_TOP, random_cids

pytestmark = pytest.mark.asyncio(loop_scope="module")
WORDCOUNT = load_vector("wordcount")
HONEST = WORDCOUNT["expect"]["result_cid"]  # the vector's result CID (cross-checked by js-ipfs-unixfs)
SMALL_CAPS = Limits(stdout_bytes=1 << 16, stderr_bytes=1 << 16, output_bytes=1 << 16, timeout_ms=60_000)


def _job() -> PreparedJob:
    """Wordcount with small caps (caps are in the job CID, not in the result)."""
    return prepare(VECTORS / "wordcount.wasm", [], inputs=[str(VECTORS / "data" / "wordcount")], limits=SMALL_CAPS)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Devstack]:
    async with Devstack(3, base_dir=tmp_path_factory.mktemp("stack")) as running:
        warm = await verify(_job(), running.urls, 3, records=Records(tmp_path_factory.mktemp("warm") / "r.db"))
        assert warm.outcome == "verified" and warm.result_cid == HONEST  # every node has run it once
        yield running


def _ids(stack: Devstack) -> list[str]:
    return [n.node.identity.node_id for n in stack.nodes]


def _set(name: str, value: Any) -> Any:
    def patch(body: dict[str, Any]) -> dict[str, Any]:
        return dict(body, **{name: value})
    return patch


def _drop(name: str) -> Any:
    def patch(body: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in body.items() if k != name}
    return patch


BAD_INFOS: list[tuple[str, dict[str, Any], str]] = [
    ("node_id list", {"info": _set("node_id", ["12D3KooW"])}, "'node_id' is list"),
    ("node_id int", {"info": _set("node_id", 5)}, "'node_id' is int"),
    ("node_id missing", {"info": _drop("node_id")}, "'node_id' is NoneType"),
    ("node_id not an ID", {"info": _set("node_id", "12D3KooWnotreally")}, "not an Ed25519 node ID"),
    ("node_id huge", {"info": _set("node_id", "x" * 100_000)}, "longer than"),
    ("profile object", {"info": _set("profile", {"a": 1})}, "'profile' is dict"),
    ("profile int", {"info": _set("profile", 5)}, "'profile' is int"),
    ("profile escape", {"info": _set("profile", "p\x1b[31m")}, "not a valid identifier"),
    ("capabilities string", {"info": _set("capabilities", "wasm")}, "'capabilities'"),
    ("capabilities ints", {"info": _set("capabilities", [1])}, "'capabilities'"),
    ("capabilities object", {"info": _set("capabilities", {"wasm": 1})}, "'capabilities'"),
    ("public_key int", {"info": _set("public_key", 5)}, "'public_key' is int"),
    ("public_key of another", {"info": _set("public_key", "00" * 32)}, "not the key inside node_id"),
    ("body a list", {"raw_info": b"[]"}, "is list, not an object"),
    ("body not JSON", {"raw_info": b"{not json"}, "not JSON"),
    ("body nested", {"raw_info": b"[" * 200_000}, "not JSON"),
    ("body oversized", {"raw_info": b" " * (3 << 20)}, "over the cap of 2097152"),
]


@pytest.mark.parametrize("case", BAD_INFOS, ids=[c[0] for c in BAD_INFOS])
async def test_a_malformed_info_drops_the_node_with_a_reason(case: tuple[str, dict[str, Any], str],
                                                             stack: Devstack, records: Records) -> None:
    _, options, reason = case
    async with Hostile(stack.urls[0], **options) as bad:
        result = await verify(_job(), [bad.url] + stack.urls[1:], 2, records=records)
    assert result.outcome == "verified" and result.result_cid == HONEST
    assert [url for url, _ in result.unreachable] == [bad.url]
    assert reason in result.unreachable[0][1] and "\x1b" not in result.unreachable[0][1]
    assert {a.node_id for a in result.answers} == set(_ids(stack)[1:])
    assert all(isinstance(row["profile"], str) for row in records.nodes())


def _statement(name: str, value: Any) -> Any:
    def patch(record: dict[str, Any]) -> dict[str, Any]:
        record["statement"]["statement"][name] = value
        return record
    return patch


def _outer(name: str, value: Any) -> Any:
    def patch(record: dict[str, Any]) -> dict[str, Any]:
        record["statement"][name] = value
        return record
    return patch


BAD_JOBS: list[tuple[str, dict[str, Any], str]] = [
    ("job_cid int", {"job": _set("job_cid", 5)}, "'job_cid' is int"),
    ("job_cid other", {"job": _set("job_cid", WORDCOUNT["job_cid"])}, "answers another job"),
    ("state int", {"job": _set("state", 5)}, "'state' is int"),
    ("state unknown", {"job": _set("state", "exploded")}, "is not one of"),
    ("result_cid int", {"job": _set("result_cid", 5)}, "'result_cid' is int"),
    ("result_cid missing", {"job": _set("result_cid", None)}, "'result_cid' is NoneType"),
    ("result_cid upper case", {"job": _set("result_cid", HONEST.upper())}, "not a CIDv1"),
    ("result_cid junk", {"job": _set("result_cid", "bafyjunk")}, "not a CIDv1"),
    ("statement string", {"job": _set("statement", "signed, honest")}, "'statement' is str"),
    ("statement empty", {"job": _set("statement", {})}, "exactly the members"),
    ("exit_code string", {"job": _statement("exit_code", "0")}, "'exit_code' is str"),
    ("exit_code bool", {"job": _statement("exit_code", False)}, "'exit_code' is bool"),
    ("fuel_used negative", {"job": _statement("fuel_used", -1)}, "outside"),
    ("fuel_used float", {"job": _statement("fuel_used", 1.5)}, "'fuel_used' is float"),
    ("trap int", {"job": _statement("trap", 5)}, "'trap' is int"),
    ("node list", {"job": _statement("node", ["x"])}, "'node' is list"),
    ("extra member", {"job": _statement("extra", 1)}, "exactly the members"),
    ("signature int", {"job": _outer("signature", 5)}, "'signature' is int"),
    ("body a list", {"raw_job": b"[1, 2]"}, "is list, not an object"),
    ("body cut", {"raw_job": b'{"state": "do'}, "not JSON"),
    ("body nested", {"raw_job": b"[" * 200_000}, "not JSON"),
    ("body oversized", {"raw_job": b"[" + b"0," * (2 << 20) + b"0]"}, "over the cap of 2097152"),
]


@pytest.mark.parametrize("case", BAD_JOBS, ids=[c[0] for c in BAD_JOBS])
async def test_a_malformed_job_record_fails_the_node_and_a_spare_stands_in(
        case: tuple[str, dict[str, Any], str], stack: Devstack, records: Records) -> None:
    _, options, reason = case
    cheat = _ids(stack)[0]
    records.see(cheat, "", "")
    records.bump(cheat, "agreed")  # asked first
    async with Hostile(stack.urls[0], **options) as bad:
        result = await verify(_job(), [bad.url] + stack.urls[1:], 2, records=records)
    assert result.outcome == "verified" and result.result_cid == HONEST
    (failed,) = [a for a in result.answers if a.node_id == cheat]
    assert not failed.valid and failed.error is not None and reason in failed.error, failed.error
    assert records.node(cheat)["failed"] == 1  # type: ignore[index]


async def test_a_failed_job_with_terminal_escapes_is_shown_clean(stack: Devstack, records: Records) -> None:
    failed = {"error": "Boom\x1b[2J", "message": "wiped\x1b[31m your screen"}
    async with Hostile(stack.urls[0], job=lambda r: dict(r, state="failed", error=failed)) as bad:
        result = await verify(_job(), [bad.url], 1, records=records)
    assert result.outcome == "incomplete"
    assert result.answers[0].error == "job failed: Boom?[2J wiped?[31m your screen"


async def test_a_valid_signature_on_a_lie_is_outvoted_and_named(stack: Devstack, records: Records,
                                                                tmp_path: Path) -> None:
    liar = Identity.load_or_create(tmp_path / "liar")
    async with Hostile(stack.urls[0], identity=liar, lie=True) as bad:
        urls = [bad.url] + stack.urls[1:]
        result = await verify(_job(), urls, 3, records=records)
        assert result.outcome == "mismatch" and result.result_cid is None
        assert {cid: set(nodes) for cid, nodes in result.groups.items()} == {
            HONEST: set(_ids(stack)[1:]), LIE: {liar.node_id}}
        named = {a.node_id: s for a, (s, _) in zip(result.answers, statuses(result))}
        assert named == {liar.node_id: DISAGREES, **{i: AGREES for i in _ids(stack)[1:]}}
        quorum = await verify(_job(), urls, 3, quorum=2, records=records)
    assert (quorum.outcome, quorum.result_cid) == ("verified-by-quorum", HONEST)
    assert records.node(liar.node_id)["disagreed"] == 2  # type: ignore[index]


OTHER_PROFILE = "cod-wasi-2+another-engine"  # a profile ID no node of the stack has


@pytest.mark.parametrize("lie", [True, False], ids=["a lie", "the honest result"])
async def test_a_statement_under_another_profile_than_advertised_is_a_named_mismatch(
        lie: bool, stack: Devstack, records: Records, tmp_path: Path) -> None:
    """A node whose /v1/info shows the stack's profile but whose statement names another made a
    signed contradiction (SPEC 11 step 4): not a profile mismatch that excuses a lie, but a
    mismatch naming it, counted as disagreeing; the honest nodes' agreement is judged as if it had
    signed the profile it advertised (so --quorum 2 of 3 verifies the honest result)."""
    liar = Identity.load_or_create(tmp_path / "liar")
    async with Hostile(stack.urls[0], identity=liar, lie=lie, profile=OTHER_PROFILE) as bad:
        urls = [bad.url] + stack.urls[1:]
        result = await verify(_job(), urls, 3, records=records)
        assert result.outcome == "mismatch" and result.exit_code == 10 and result.result_cid is None
        named = {a.node_id: s for a, (s, _) in zip(result.answers, statuses(result))}
        assert named == {liar.node_id: DISAGREES, **{i: AGREES for i in _ids(stack)[1:]}}
        (signed,) = [a for a in result.answers if a.node_id == liar.node_id]
        assert signed.profile == OTHER_PROFILE and signed.advertised == profile_id()
        assert result.note is not None and liar.node_id in result.note and OTHER_PROFILE in result.note
        assert all(records.node(i)["agreed"] >= 1 for i in _ids(stack)[1:])  # type: ignore[index]
        quorum = await verify(_job(), urls, 3, quorum=2, records=records)
    assert (quorum.outcome, quorum.result_cid) == ("verified-by-quorum", HONEST)
    assert records.node(liar.node_id)["disagreed"] == 2  # type: ignore[index]
    view = recorded_view(records, quorum.job_cid)  # what cod describe / cod list --json show later
    assert view is not None and {n["node_id"]: n["status"] for n in view["nodes"]} == named


async def test_a_copying_node_passes_as_agreement(stack: Devstack, records: Records, tmp_path: Path) -> None:
    """What agreement cannot stop (SPEC 11.7): a node that signs another node's answer as its own."""
    copier = Identity.load_or_create(tmp_path / "copier")
    async with Hostile(stack.urls[1], identity=copier) as copying:
        result = await verify(_job(), [copying.url] + stack.urls[1:], 3, records=records)
    assert result.outcome == "verified" and copier.node_id in result.groups[HONEST]


@pytest.mark.parametrize("mode", RESULT_MODES)
async def test_an_agreeing_node_that_sends_bad_results_is_caught_and_another_delivers(
        mode: str, stack: Devstack, records: Records, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "stdout").write_text("something else\n")
    ids = _ids(stack)
    for cheat in ids[:2]:  # both hostile nodes are asked for the results before the honest one
        records.see(cheat, "", "")
        records.bump(cheat, "agreed")
    deadline = 6.0 if mode == "drip" else None
    async with Hostile(stack.urls[0], results=mode, other_tree=other) as first, \
            Hostile(stack.urls[1], results=mode, other_tree=other) as second:
        result = await verify(_job(), [first.url, second.url, stack.urls[2]], 3, records=records,
                              output_dir=tmp_path / "out", deadline_s=deadline)
    assert result.outcome == "verified" and result.result_checked and result.result_cid == HONEST
    assert (tmp_path / "out" / "stdout").read_text() == WORDCOUNT["expect"]["stdout"]
    bad = [a for a in result.answers if a.node_id in ids[:2]]
    assert len(bad) == 2 and all(a.download_error for a in bad)
    assert all(records.node(i)["failed"] == 1 for i in ids[:2])  # type: ignore[index]
    assert [s for s, _ in statuses(result)].count(AGREES) == 3  # they agreed; then they failed to deliver
    bound = results_car_bound(SMALL_CAPS)
    for hostile in (first, second):  # the requester stops at the bound; the sender also filled the
        assert hostile.sent <= bound + (16 << 20)  # socket buffers of both ends (a few MiB on loopback)
    assert not list(tmp_path.glob("out/**/*lie*"))


async def test_agreement_nobody_delivers_is_incomplete(stack: Devstack, records: Records, tmp_path: Path) -> None:
    async with Hostile(stack.urls[0], results="junk") as first, \
            Hostile(stack.urls[1], results="tampered") as second:
        result = await verify(_job(), [first.url, second.url], 2, records=records, output_dir=tmp_path / "out")
    assert result.outcome == "incomplete" and result.exit_code == 11 and not result.result_checked
    assert result.note is not None and "no node that agreed could deliver the results" in result.note
    assert not (tmp_path / "out").exists()
    assert records.job(result.job_cid)["outcome"] == "incomplete"  # type: ignore[index]


async def test_agreement_on_a_result_built_on_a_big_output_base_is_downloaded(
        stack: Devstack, records: Records, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The results of a job with an output base hold the base: the download bound counts its
    bytes and entries (SPEC 11 step 5), or two honest nodes agreeing end incomplete, both
    counted as failed. Kept fast: the requester's allowance of job-created entries is lowered
    to 10 (the nodes keep theirs), so a 1 MiB base is over the bound the caps alone give."""
    monkeypatch.setattr(fetch, "MAX_OUTPUT_ENTRIES", 10)
    base = tmp_path / "base"
    (base / "deep").mkdir(parents=True)
    big = bytes(range(256)) * 4096 + b"tail"  # 1 MiB and 4 bytes: two chunks
    (base / "deep" / "big.bin").write_bytes(big)
    job = prepare(VECTORS / "wordcount.wasm", [], inputs=[str(VECTORS / "data" / "wordcount")], limits=SMALL_CAPS,
                  output_base=str(base))
    assert len(big) > results_car_bound(SMALL_CAPS)  # what the bound was: the base alone is over it
    result = await verify(job, stack.urls[:2], 2, records=records, output_dir=tmp_path / "out")
    assert result.outcome == "verified" and result.result_checked, result.note
    assert (tmp_path / "out" / "outputs" / "deep" / "big.bin").read_bytes() == big
    assert all(records.node(i)["failed"] == 0 for i in _ids(stack)[:2])  # type: ignore[index]
    recorded = fetch.recorded_base(records.runs(result.job_cid))
    assert recorded == fetch.BaseSize(len(big), 2)  # deep/ and deep/big.bin
    row = records.job(result.job_cid)
    assert row is not None  # cod get later: the recorded measure bounds that download too
    got = await fetch.fetch_results(row, tmp_path / "again", None, base=recorded)
    assert (got / "outputs" / "deep" / "big.bin").read_bytes() == big


async def test_results_holding_guest_made_links_are_agreed_and_downloaded_as_links(
        stack: Devstack, records: Records, tmp_path: Path) -> None:
    """The escape vector makes ``up -> ..`` and a hard link in its outputs: two nodes agree on
    them, and the requester (verify, then cod get's fetch_results) writes the link as a link
    and the hard link as a file, never following anything (SPEC 4.5, 7.4)."""
    job = prepare(VECTORS / "escape.wasm", [], inputs=[f"{VECTORS / 'data' / 'escape'}:/inputs"])
    result = await verify(job, stack.urls[:2], 2, records=records, output_dir=tmp_path / "out" / "r")
    assert result.outcome == "verified" and result.result_checked, result.note
    row = records.job(result.job_cid)
    assert row is not None
    got = await fetch.fetch_results(row, tmp_path / "again" / "r", None)
    for where in (tmp_path / "out" / "r", got):
        assert os.readlink(where / "outputs" / "up") == ".."
        assert sorted(os.listdir(where / "outputs")) == ["file", "hard", "up"]
        assert not (where / "outputs" / "hard").is_symlink()
        assert sorted(os.listdir(where.parent)) == ["r"]  # nothing beside the results directory


async def test_a_node_that_drips_its_answer_fails_at_the_deadline(stack: Devstack, records: Records) -> None:
    async with Hostile(stack.urls[0], drip_job=True) as slow:
        result = await verify(_job(), [slow.url, stack.urls[1]], 2, records=records, deadline_s=3)
    assert result.outcome == "incomplete"
    (dripped,) = [a for a in result.answers if a.url == slow.url]
    assert not dripped.valid and dripped.error and ("deadline" in dripped.error or "Timeout" in dripped.error)
    assert statuses(result)[result.answers.index(dripped)][0] == FAILED


async def test_fewer_reachable_nodes_than_n_fail_before_anything_runs(stack: Devstack, records: Records) -> None:
    job = prepare(VECTORS / "sha256.wasm", ["17"])  # a job no node has seen
    dead = "http://127.0.0.1:1"
    async with Hostile(stack.urls[1], info=_set("node_id", 5)) as bad:
        with pytest.raises(NotEnoughNodes) as caught:
            await verify(job, [stack.urls[0], dead, bad.url], 3, records=records)
    message = caught.value.message
    assert message.startswith("1 of 3 node(s) can take this job, and --verify needs 3; left out: ")
    assert f"{dead} (" in message and f"{bad.url} (" in message and "'node_id' is int" in message
    assert all(n.node.jobs.get(str(job.spec.cid)) is None for n in stack.nodes)  # nothing was run
    assert records.job(str(job.spec.cid)) is None


async def test_the_same_node_behind_two_urls_counts_once(stack: Devstack, records: Records) -> None:
    async with Hostile(stack.urls[0]) as alias:
        with pytest.raises(NotEnoughNodes, match=f"{alias.url} \\(the same node as {stack.urls[0]}\\)"):
            await verify(_job(), [stack.urls[0], alias.url], 2, records=records)


async def test_verification_json_names_every_status(stack: Devstack, records: Records, tmp_path: Path) -> None:
    liar = Identity.load_or_create(tmp_path / "liar")
    async with Hostile(stack.urls[0], identity=liar, lie=True) as bad:
        result = await verify(_job(), [bad.url, stack.urls[1], stack.urls[2], "http://127.0.0.1:1"], 3,
                              records=records)
    data = json.loads(json.dumps(result.to_json()))
    assert sorted(n["status"] for n in data["nodes"]) == [DISAGREES, AGREES, AGREES]
    assert [u["url"] for u in data["unreachable"]] == ["http://127.0.0.1:1"]


@pytest.mark.asyncio(loop_scope="function")  # the function-scoped `http` session lives in this loop
@pytest.mark.parametrize("ask", ["unrelated", "again", "fresh"])
async def test_a_node_answering_missing_blobs_for_ever_gets_only_the_job_s_blobs_once(
        tmp_path: Path, records: Any, http: aiohttp.ClientSession, ask: str) -> None:
    """A proxy in front of an honest node answers every submission 409 MissingBlobs naming:
    a CID of the requester's store that the job does not name ("unrelated": nothing is
    uploaded, the requester stops at once); the job's dependency again and again ("again": it
    is uploaded once, with its true bytes, then the requester stops); a new CID each time
    ("fresh": nothing is uploaded). The requester always stops, well before its deadline."""
    from cod.content.store import ContentStore
    from verifier.verify import verify

    store = ContentStore(tmp_path / "store")
    (tmp_path / "mix.wasm").write_bytes(MIX)
    (tmp_path / "diary.txt").write_bytes(b"the requester's private notes\n")
    lib = store.add(tmp_path / "mix.wasm")
    unrelated = store.add(tmp_path / "diary.txt")
    (tmp_path / "top.wasm").write_bytes(MIX_TOP)
    job = prepare(tmp_path / "top.wasm", [], resolve=store.get, remote=True)
    assert job.modules == {lib: MIX}
    honest = await start_node_in(tmp_path, "honest")
    proxy = Gateway()
    puts: list[tuple[str, bytes]] = []
    fresh = iter(random_cids(1000, "fresh"))

    async def answer(request: web.Request) -> web.StreamResponse:
        if request.method == "POST" and request.path == "/v1/jobs":
            wanted = {"unrelated": unrelated, "again": lib, "fresh": next(fresh)}[ask]
            return web.json_response({"error": "MissingBlobs", "message": "lacks", "missing": [wanted]},
                                     status=409)
        if request.method == "PUT":
            puts.append((request.path, await request.read()))
            return web.json_response({}, status=201)
        return await forward_to(http, honest.url, request)

    proxy.handler = answer
    await proxy.start()
    try:
        started = time.monotonic()
        result = await asyncio.wait_for(verify(job, [proxy.url], 1, records=records, deadline_s=60), 60)
        assert time.monotonic() - started < 20
        assert result.outcome != "verified" and result.answers[0].error, result
        if ask == "again":
            assert puts == [(f"/v1/blobs/{lib}", MIX)]
        else:
            assert puts == []
        assert all(b"private notes" not in body for _, body in puts)
    finally:
        await proxy.stop()
        await honest.stop()


@pytest.mark.asyncio(loop_scope="function")
async def test_a_node_asking_again_for_an_input_with_each_new_blob_gets_each_blob_once(
        tmp_path: Path, records: Any, http: aiohttp.ClientSession) -> None:
    """A hostile node answers 409 three times: [input, module], [input, dependency], [input,
    module, dependency]. Each answer but the last names a blob not yet sent, so the requester
    goes on; but it re-sent the input (a CAR, possibly gigabytes) with every new blob: one
    input upload per job blob. Now each blob is uploaded once: 3 PUTs, the input's once."""
    from cod.content.store import ContentStore
    from verifier.verify import verify

    store = ContentStore(tmp_path / "store")
    (tmp_path / "mix.wasm").write_bytes(MIX)
    lib = store.add(tmp_path / "mix.wasm")
    (tmp_path / "top.wasm").write_bytes(MIX_TOP)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "big.bin").write_bytes(b"\x01" * 300_000)
    job = prepare(tmp_path / "top.wasm", [], inputs=[f"{tmp_path / 'data'}:/inputs"], resolve=store.get)
    data = job.spec.inputs[0].cid
    asks = iter([[data, job.spec.module], [data, lib], [data, job.spec.module, lib]] + [[data]] * 10)
    honest = await start_node_in(tmp_path, "honest")
    proxy = Gateway()
    puts: list[str] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        if request.method == "POST" and request.path == "/v1/jobs":
            return web.json_response({"error": "MissingBlobs", "message": "lacks", "missing": next(asks)},
                                     status=409)
        if request.method == "PUT":
            await request.read()
            puts.append(request.path.removeprefix("/v1/blobs/"))
            return web.json_response({}, status=201)
        return await forward_to(http, honest.url, request)

    proxy.handler = answer
    await proxy.start()
    try:
        result = await asyncio.wait_for(verify(job, [proxy.url], 1, records=records, deadline_s=60), 60)
        assert result.answers[0].error, result
        assert sorted(puts) == sorted([data, job.spec.module, lib]), puts
    finally:
        await proxy.stop()
        await honest.stop()


@pytest.mark.asyncio(loop_scope="function")
async def test_a_job_of_more_than_max_inputs_is_refused_before_any_node_is_asked(
        tmp_path: Path, records: Any) -> None:
    """1025 inputs (one over cod.limits.MAX_INPUTS): a SpecError naming ``inputs`` here, before
    any node is asked (the node at the URL counts requests: none come)."""
    from cod.errors import SpecError
    from cod.jobspec import Input

    asked: list[str] = []
    node = Gateway()

    async def answer(request: web.Request) -> web.StreamResponse:
        asked.append(request.path)
        return web.json_response({}, status=500)

    node.handler = answer
    await node.start()
    try:
        hello = prepare(VECTORS / "hello.wasm", [])
        inputs = tuple(Input(cid=hello.spec.module, path=f"/in/{k}") for k in range(1025))
        job = PreparedJob(dataclasses.replace(hello.spec, inputs=inputs), hello.wasm)
        with pytest.raises(SpecError, match="1025 inputs; at most 1024") as info:
            await verify(job, [node.url], 1, records=records)
        assert info.value.field == "inputs" and asked == []
    finally:
        await node.stop()


@pytest.mark.asyncio(loop_scope="function")
async def test_a_job_at_max_inputs_that_a_node_lacks_whole_completes_through_409(
        tmp_path: Path, records: Any) -> None:
    """1024 inputs (cod.limits.MAX_INPUTS), all distinct and unknown to a fresh node, and its
    module: the node answers 409 naming all 1025 CIDs, the requester uploads each and the job
    runs (the requester refused any 409 list over 1024 CIDs, and dropped the node)."""
    (tmp_path / "in").mkdir()
    for k in range(1024):
        (tmp_path / "in" / f"{k:04d}").write_bytes(b"input %d\n" % k)
    job = prepare(VECTORS / "hello.wasm", [],
                  inputs=[f"{tmp_path / 'in' / f'{k:04d}'}:/in/{k:04d}" for k in range(1024)])
    assert len({item.cid for item in job.spec.inputs}) == 1024
    node = await start_node_in(tmp_path, "fresh")
    try:
        result = await asyncio.wait_for(verify(job, [node.url], 1, records=records, deadline_s=240), 240)
        assert result.outcome == "unverifiable" and result.answers[0].valid, result  # one node: unverifiable
        assert result.answers[0].exit_code == 0 and result.result_cid is not None
        assert all(node.node.blobs.has(str(item.cid)) for item in job.spec.inputs)
    finally:
        await node.stop()
