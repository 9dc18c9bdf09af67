"""A node's FIL+ policy (SPEC 9.7) and its statements feed: real nodes on loopback, real SQLite,
real executor processes, real keys; the ledger is the stand-in of tests/ledger/standin.py (it
answers GET /v1/inputs/{cid} as design.md documents, can lie or drip, and checks each refusal's
signature with PyNaCl against the key inside the node ID)."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings, strategies as st

from cod import JobSpec, Limits, module_cid
from cod.content.car import write_car
from cod.errors import NodeError
from cod.identity import verify
from cod.jobspec import Input, canonical_json
from cod.ledger import entries
from cod.node import policy as policy_module
from cod.node.policy import Policy
from cod.node.server import RunningNode, start_node
from cod.statement import SignedStatement

from ..helpers import ROOT, VECTORS, load_vector
from ..ledger import standin
from ..ledger.standin import StandIn
from ..node_kit import BUSY_WAT, wat

WORDCOUNT = (VECTORS / "wordcount.wasm").read_bytes()
HELLO = (VECTORS / "hello.wasm").read_bytes()
BUSY = wat(BUSY_WAT)
VECTOR = load_vector("wordcount")
SPEC: dict[str, Any] = VECTOR["spec"]
INPUT: str = SPEC["inputs"][0]["cid"]
WAIT_S = 60  # a bound on waiting for the background reporter, never an assertion about time


@pytest.fixture()
async def ledger() -> AsyncIterator[tuple[StandIn, str]]:
    fake = StandIn()
    runner, url = await standin.start(fake)
    yield fake, url
    await runner.cleanup()


async def _node(tmp_path: Path, name: str, url: str | None, policy: str, **options: Any) -> RunningNode:
    options.setdefault("concurrency", 1)
    options.setdefault("queue_size", 2)
    return await start_node(tmp_path / name, policy=Policy(policy, url), allow_local=[VECTORS / "data"], **options)


@pytest.fixture()
async def strict(tmp_path: Path, ledger: tuple[StandIn, str]) -> AsyncIterator[RunningNode]:
    """A fil-plus-only node asking the stand-in."""
    running = await _node(tmp_path, "strict", ledger[1], "fil-plus-only")
    yield running
    await running.stop()


async def _post(http: aiohttp.ClientSession, url: str, spec: dict[str, Any], wait: bool = True) -> tuple[int, Any]:
    async with http.post(url + "/v1/jobs" + ("?wait=true" if wait else ""), json={"spec": spec}) as resp:
        return resp.status, await resp.json(content_type=None)


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as resp:
        return resp.status, await resp.json(content_type=None)


async def _upload(http: aiohttp.ClientSession, url: str, tmp_path: Path) -> None:
    for cid, data, car in ((module_cid(WORDCOUNT), WORDCOUNT, False), (module_cid(HELLO), HELLO, False),
                           (module_cid(BUSY), BUSY, False)):
        async with http.put(f"{url}/v1/blobs/{cid}", data=data,
                            headers={"Content-Type": "application/octet-stream"}) as resp:
            assert resp.status in (200, 201)
    write_car(VECTORS / "data" / "wordcount", tmp_path / "in.car")
    async with http.put(f"{url}/v1/blobs/{INPUT}", data=(tmp_path / "in.car").read_bytes(),
                        headers={"Content-Type": "application/vnd.ipld.car"}) as resp:
        assert resp.status in (200, 201)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_info_shows_the_policy(strict: RunningNode, node: RunningNode, http: aiohttp.ClientSession,
                                     ledger: tuple[StandIn, str]) -> None:
    assert (await _get(http, strict.url + "/v1/info"))[1]["policy"] == {"name": "fil-plus-only", "ledger": ledger[1]}
    assert (await _get(http, node.url + "/v1/info"))[1]["policy"] == {"name": "any", "ledger": None}


async def test_fil_plus_only_refuses_an_unblessed_job_and_reports_a_signed_refusal(
        strict: RunningNode, http: aiohttp.ClientSession, ledger: tuple[StandIn, str]) -> None:
    fake, _ = ledger
    status, body = await _post(http, strict.url, SPEC)  # the node lacks the blobs: the policy answers first
    assert status == 403
    assert body["error"] == "PolicyRefused"
    assert f"input CID {INPUT} is not blessed FIL+ data" in body["message"] and "fil-plus-only" in body["message"]
    assert body["hint"]
    assert (await _get(http, f"{strict.url}/v1/jobs/{VECTOR['job_cid']}"))[0] == 404  # nothing queued or kept
    await asyncio.wait_for(fake.refusal_seen.wait(), WAIT_S)
    [signed] = fake.refusals  # the stand-in checked its signature against the node ID's key
    statement = signed["statement"]
    assert statement["node"] == strict.node.identity.node_id
    assert (statement["type"], statement["job"], statement["policy"], statement["inputs"]) == (
        "cod/ledger/refusal/v1", VECTOR["job_cid"], "fil-plus-only", [INPUT])
    assert "is not blessed" in statement["reason"] and len(statement["nonce"]) == 32
    assert set(statement) == {"type", "node", "job", "policy", "inputs", "reason", "nonce"}
    verify(statement["node"], canonical_json(statement), base64.b64decode(signed["signature"]))
    entries.parse_signed(signed, entries.REFUSAL).verify()  # a valid refusal entry for the ledger's parser too
    # the same job again: refused again, reported once (a retrying requester cannot flood the ledger)
    assert (await _post(http, strict.url, SPEC))[0] == 403
    assert strict.node.policy.reported == 1 and len(fake.refusals) == 1


@pytest.mark.parametrize("inputs, reason", [
    ((), "the job reads no FIL+ data"),
    ((Input(local=str(VECTORS / "data" / "wordcount")),), "is a node-local path, not FIL+ data"),
])
async def test_fil_plus_only_refuses_jobs_without_fil_plus_inputs(
        strict: RunningNode, http: aiohttp.ClientSession, ledger: tuple[StandIn, str], tmp_path: Path,
        inputs: tuple[Input, ...], reason: str) -> None:
    await _upload(http, strict.url, tmp_path)
    spec = JobSpec(module=module_cid(WORDCOUNT), inputs=inputs).to_dict()
    status, body = await _post(http, strict.url, spec)
    assert (status, body["error"]) == (403, "PolicyRefused") and reason in body["message"]
    assert ledger[0].questions == []  # decided without asking


async def test_fil_plus_only_refuses_a_job_whose_only_fil_plus_data_is_its_output_base(
        strict: RunningNode, http: aiohttp.ClientSession, ledger: tuple[StandIn, str], tmp_path: Path) -> None:
    # SPEC 9.7: a FIL+ job has at least one input; a blessed output base alone does not make one
    ledger[0].blessed.add(INPUT)
    await _upload(http, strict.url, tmp_path)
    spec = JobSpec(module=module_cid(WORDCOUNT), output_base=INPUT).to_dict()
    status, body = await _post(http, strict.url, spec)
    assert (status, body["error"]) == (403, "PolicyRefused") and "the job reads no FIL+ data" in body["message"]
    assert ledger[0].questions == []


async def test_fil_plus_only_runs_a_blessed_job_and_caches_the_answer(
        strict: RunningNode, http: aiohttp.ClientSession, ledger: tuple[StandIn, str], tmp_path: Path) -> None:
    fake, _ = ledger
    fake.blessed.add(INPUT)
    status, body = await _post(http, strict.url, SPEC)
    assert (status, body["error"]) == (409, "MissingBlobs")  # past the policy: the node asks for the blobs
    await _upload(http, strict.url, tmp_path)
    status, job = await _post(http, strict.url, SPEC)
    assert status == 200 and job["result_cid"] == VECTOR["expect"]["result_cid"]
    SignedStatement.from_json(job["statement"]).verify(VECTOR["job_cid"], strict.node.identity.node_id)
    other = dict(SPEC, args=["wordcount.wasm", "again"])
    assert (await _post(http, strict.url, other))[0] == 200
    assert fake.questions == [INPUT]  # blessed: asked once for the node's life
    assert fake.refusals == []


async def test_a_not_blessed_answer_is_kept_a_while_then_asked_again(
        strict: RunningNode, http: aiohttp.ClientSession, ledger: tuple[StandIn, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake, _ = ledger
    await _upload(http, strict.url, tmp_path)
    assert (await _post(http, strict.url, SPEC))[0] == 403
    fake.blessed.add(INPUT)  # blessed meanwhile: the cached "no" still holds (NOT_BLESSED_TTL_S)
    assert (await _post(http, strict.url, SPEC))[0] == 403
    assert fake.questions == [INPUT]
    monkeypatch.setattr(policy_module, "NOT_BLESSED_TTL_S", 0.0)
    strict.node.policy._cache.clear()  # as if NOT_BLESSED_TTL_S had passed
    assert (await _post(http, strict.url, SPEC))[0] == 200
    assert fake.questions == [INPUT, INPUT]


async def test_fil_plus_only_fails_closed_when_the_ledger_is_down(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    running = await _node(tmp_path, "n", f"http://127.0.0.1:{_free_port()}", "fil-plus-only")
    try:
        status, body = await _post(http, running.url, SPEC)
        assert (status, body["error"]) == (503, "LedgerUnavailable")
        assert INPUT in body["message"] and "fail closed" in body["hint"]
        assert (await _get(http, running.url + "/v1/health"))[0] == 200
        assert (await _get(http, f"{running.url}/v1/jobs/{VECTOR['job_cid']}"))[0] == 404
    finally:
        await running.stop()


@pytest.mark.parametrize("mode", [standin.BAD_JSON, standin.YES_STRING, standin.OTHER_CID, standin.HUGE,
                                  standin.LIST, standin.NOT_FOUND])
async def test_a_lying_ledger_counts_as_not_blessed(strict: RunningNode, http: aiohttp.ClientSession,
                                                    ledger: tuple[StandIn, str], mode: str) -> None:
    fake, _ = ledger
    fake.blessed.add(INPUT)
    fake.mode = mode  # what it answers is never a well-formed yes
    status, body = await _post(http, strict.url, SPEC)
    assert (status, body["error"]) == (403, "PolicyRefused") and "is not blessed" in body["message"]
    assert (await _get(http, strict.url + "/v1/health"))[0] == 200


@pytest.mark.parametrize("mode", [standin.ERROR_500, standin.SLOW])
async def test_a_failing_or_dripping_ledger_is_unavailable(strict: RunningNode, http: aiohttp.ClientSession,
                                                           ledger: tuple[StandIn, str], mode: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    fake, _ = ledger
    fake.blessed.add(INPUT)
    fake.mode = mode
    monkeypatch.setattr(policy_module, "LEDGER_TIMEOUT_S", 0.5)  # the stand-in answers after 3 s
    status, body = await _post(http, strict.url, SPEC)
    assert (status, body["error"]) == (503, "LedgerUnavailable")
    fake.mode = standin.HONEST  # nothing of the failure was cached
    assert (await _post(http, strict.url, SPEC))[1]["error"] == "MissingBlobs"


async def test_refusals_are_retried_while_the_ledger_fails(strict: RunningNode, http: aiohttp.ClientSession,
                                                           ledger: tuple[StandIn, str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    fake, _ = ledger
    monkeypatch.setattr(policy_module, "REFUSAL_FIRST_BACKOFF_S", 0.01)
    fake.down_refusals = 2  # 503, 503, then taken
    assert (await _post(http, strict.url, SPEC))[0] == 403
    await asyncio.wait_for(fake.refusal_seen.wait(), WAIT_S)
    assert len(fake.refusals) == 1 and strict.node.policy.dropped == 0


async def test_a_rate_limited_refusal_is_retried_after_the_ledger_says(strict: RunningNode,
                                                                        http: aiohttp.ClientSession,
                                                                        ledger: tuple[StandIn, str],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # issue 19 point 24: the ledger answers 429 RateLimited to a burst; the node waits (at most
    # REFUSAL_MAX_BACKOFF_S, made short here) and posts again instead of dropping the refusal
    fake, _ = ledger
    monkeypatch.setattr(policy_module, "REFUSAL_MAX_BACKOFF_S", 0.01)
    fake.limited_refusals = 2  # 429, 429, then taken
    assert (await _post(http, strict.url, SPEC))[0] == 403
    await asyncio.wait_for(fake.refusal_seen.wait(), WAIT_S)
    assert len(fake.refusals) == 1 and strict.node.policy.dropped == 0 and fake.limited_refusals == 0


async def test_the_refusal_backlog_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cod.identity import Identity

    monkeypatch.setattr(policy_module, "REFUSAL_BACKLOG", 2)
    policy = Policy("fil-plus-only", f"http://127.0.0.1:{_free_port()}")
    policy.start(Identity.load_or_create(tmp_path))
    try:
        for n in range(5):  # in one turn of the loop: the sender has not taken any yet
            policy.report(f"job{n}", (INPUT,), "not blessed")
        assert policy.dropped == 3
    finally:
        await policy.close()


async def test_two_submissions_at_once_run_one_job(strict: RunningNode, http: aiohttp.ClientSession,
                                                   ledger: tuple[StandIn, str], tmp_path: Path) -> None:
    ledger[0].blessed.add(INPUT)
    await _upload(http, strict.url, tmp_path)
    first, second = await asyncio.gather(_post(http, strict.url, SPEC), _post(http, strict.url, SPEC))
    assert first[0] == second[0] == 200 and first[1]["result_cid"] == second[1]["result_cid"]
    assert len((await _get(http, strict.url + "/v1/jobs"))[1]["jobs"]) == 1


def _busy(n: int, inputs: tuple[Input, ...]) -> dict[str, Any]:
    return JobSpec(module=module_cid(BUSY), args=("busy", str(n)), inputs=inputs,
                   limits=Limits(fuel=10**12, timeout_ms=60_000)).to_dict()


async def test_prefer_fil_plus_keeps_half_the_places_for_fil_plus_jobs(
        tmp_path: Path, http: aiohttp.ClientSession, ledger: tuple[StandIn, str]) -> None:
    fake, url = ledger
    fake.blessed.add(INPUT)
    running = await _node(tmp_path, "p", url, "prefer-fil-plus", concurrency=1, queue_size=3)  # 4 places, 2 ordinary
    try:
        await _upload(http, running.url, tmp_path)
        ordinary = [await _post(http, running.url, _busy(n, ()), wait=False) for n in range(3)]
        assert [s for s, _ in ordinary] == [202, 202, 429]
        assert ordinary[2][1]["error"] == "NodeBusy" and "FIL+" in ordinary[2][1]["message"]
        fil_plus = [await _post(http, running.url, _busy(n, (Input(cid=INPUT),)), wait=False) for n in range(3)]
        assert [s for s, _ in fil_plus] == [202, 202, 429]  # FIL+ jobs take the rest; then the queue is full
        assert fil_plus[2][1]["message"] == "this node's queue is full"
        await asyncio.wait_for(fake.refusal_seen.wait(), WAIT_S)
        assert [r["statement"]["policy"] for r in fake.refusals] == ["prefer-fil-plus"]
        for status, job in ordinary[:2] + fil_plus[:2]:
            async with http.delete(f"{running.url}/v1/jobs/{job['job_cid']}") as resp:
                assert resp.status == 200
        assert running.node.ordinary == set()  # places given back
    finally:
        await running.stop()


async def test_prefer_fil_plus_runs_ordinary_jobs_when_the_ledger_is_down(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    running = await _node(tmp_path, "p", f"http://127.0.0.1:{_free_port()}", "prefer-fil-plus")
    try:
        await _upload(http, running.url, tmp_path)
        status, job = await _post(http, running.url, SPEC)
        assert status == 200 and job["result_cid"] == VECTOR["expect"]["result_cid"]
    finally:
        await running.stop()


async def test_a_done_job_is_served_whatever_the_policy(tmp_path: Path, http: aiohttp.ClientSession,
                                                        ledger: tuple[StandIn, str]) -> None:
    running = await _node(tmp_path, "d", None, "any")
    await _upload(http, running.url, tmp_path)
    assert (await _post(http, running.url, SPEC))[0] == 200
    await running.stop()
    running = await _node(tmp_path, "d", ledger[1], "fil-plus-only")  # same data dir, now strict
    try:
        status, job = await _get(http, f"{running.url}/v1/jobs/{VECTOR['job_cid']}")
        assert status == 200 and job["state"] == "done"
        async with http.get(f"{running.url}/v1/jobs/{VECTOR['job_cid']}/results.car") as resp:
            assert resp.status == 200
        assert (await _post(http, running.url, SPEC))[0] == 200  # answered as it stands, not refused
        assert ledger[0].questions == []
    finally:
        await running.stop()


def test_a_policy_needs_a_ledger(tmp_path: Path) -> None:
    with pytest.raises(NodeError, match="needs --ledger"):
        Policy("fil-plus-only", None)
    with pytest.raises(NodeError, match="unknown policy"):
        Policy("fil-plus-mostly", "http://127.0.0.1:1")
    done = subprocess.run([sys.executable, "-m", "cod", "serve", "--data-dir", str(tmp_path / "n"), "--policy",
                           "prefer-fil-plus"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--policy prefer-fil-plus needs --ledger URL" in done.stderr
    done = subprocess.run([sys.executable, "-m", "cod", "serve", "--data-dir", str(tmp_path / "n"), "--ledger",
                           "ftp://x", "--policy", "fil-plus-only"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "--ledger" in done.stderr


# -- the statements feed ----------------------------------------------------------------------
def _hello(n: int) -> dict[str, Any]:
    return JobSpec(module=module_cid(HELLO), args=("hello.wasm", str(n))).to_dict()


async def test_the_statements_feed_pages_in_completion_order(node: RunningNode, http: aiohttp.ClientSession,
                                                             tmp_path: Path) -> None:
    await _upload(http, node.url, tmp_path)
    jobs = [(await _post(http, node.url, _hello(n)))[1]["job_cid"] for n in range(3)]
    page = (await _get(http, node.url + "/v1/statements?after=0&limit=2"))[1]
    assert [s["seq"] for s in page["statements"]] == [1, 2] and page["next"] == 2
    assert [s["job"] for s in page["statements"]] == jobs[:2]
    for item in page["statements"]:
        assert JobSpec.from_dict(item["spec"]).cid.__str__() == item["job"]
        SignedStatement.from_json(item["statement"]).verify(item["job"], node.node.identity.node_id)
    page = (await _get(http, node.url + "/v1/statements?after=2"))[1]
    assert [s["job"] for s in page["statements"]] == jobs[2:] and page["next"] == 3
    assert (await _get(http, node.url + "/v1/statements?after=3"))[1] == {"statements": [], "next": 3}
    assert (await _get(http, node.url + "/v1/statements"))[1]["next"] == 3  # no after: from the start


@pytest.mark.parametrize("query", ["after=-1", "after=abc", "after=1.5", "after=" + "9" * 30, "limit=0",
                                   "limit=1001", "limit=", "after=%EF%BC%91"])
async def test_a_bad_statements_query_is_a_json_400(node: RunningNode, http: aiohttp.ClientSession,
                                                    query: str) -> None:
    status, body = await _get(http, node.url + "/v1/statements?" + query)
    assert status == 400 and body["error"] == "BadQuery" and body["hint"]


async def test_an_earlier_database_gets_its_completion_order(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    running = await start_node(tmp_path / "old", concurrency=1)
    await _upload(http, running.url, tmp_path)
    jobs = [(await _post(http, running.url, _hello(n)))[1]["job_cid"] for n in range(2)]
    await running.stop()
    with sqlite3.connect(tmp_path / "old" / "jobs.db") as db:  # back to the Stage 3 schema
        db.execute("DROP INDEX jobs_done_seq")
        db.execute("ALTER TABLE jobs DROP COLUMN done_seq")
    running = await start_node(tmp_path / "old", concurrency=1)
    try:
        page = (await _get(http, running.url + "/v1/statements"))[1]
        assert [(s["seq"], s["job"]) for s in page["statements"]] == [(1, jobs[0]), (2, jobs[1])]
        job = (await _post(http, running.url, _hello(9)))[1]["job_cid"]
        assert (await _get(http, running.url + "/v1/statements?after=2"))[1]["statements"][0]["job"] == job
    finally:
        await running.stop()


async def test_openapi_documents_the_feed_and_the_policy(node: RunningNode, http: aiohttp.ClientSession) -> None:
    doc = (await _get(http, node.url + "/v1/openapi.json"))[1]
    assert "/v1/statements" in doc["paths"]
    responses = doc["paths"]["/v1/jobs"]["post"]["responses"]
    assert "PolicyRefused" in responses["403"]["description"] and "503" in responses
    assert "policy" in doc["components"]["schemas"]["Info"]["properties"]


async def test_a_job_naming_many_inputs_cannot_hold_the_answer(strict: RunningNode, http: aiohttp.ClientSession,
                                                                ledger: tuple[StandIn, str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from cod.content.cid import CID, RAW

    fake, _ = ledger
    fake.mode = standin.SLOW  # each question would take 3 s, 8 at a time
    monkeypatch.setattr(policy_module, "JUDGE_TIMEOUT_S", 0.5)
    inputs = tuple(Input(cid=str(CID.of(RAW, bytes([n]))), path=f"/inputs/{n}") for n in range(40))
    spec = JobSpec(module=module_cid(HELLO), inputs=inputs).to_dict()
    status, body = await _post(http, strict.url, spec)
    assert (status, body["error"]) == (503, "LedgerUnavailable") and "no answers within 0.5 s" in body["message"]


@settings(max_examples=30)
@given(finished=st.permutations(range(8)), limit=st.integers(1, 5), failed=st.sets(st.integers(0, 7)))
def test_paging_by_next_gives_every_done_job_once_in_completion_order(
        tmp_path_factory: pytest.TempPathFactory, finished: list[int], limit: int, failed: set[int]) -> None:
    from cod.node.store import DONE, FAILED, JobStore

    store = JobStore(tmp_path_factory.mktemp("feed") / "jobs.db")
    for n in range(8):
        store.add(f"job{n}", {"n": n})
    for n in finished:  # they finish in this order; some fail (no statement, no number)
        if n in failed:
            store.update(f"job{n}", state=FAILED, error="{}")
        else:
            store.update(f"job{n}", state=DONE, statement=f'{{"n": {n}}}')
    seen: list[tuple[int, str]] = []
    after = 0
    while page := store.statements(after, limit):
        assert len(page) <= limit
        seen += [(row["seq"], row["job"]) for row in page]
        after = page[-1]["seq"]
    expected = [f"job{n}" for n in finished if n not in failed]
    assert [job for _, job in seen] == expected
    assert [seq for seq, _ in seen] == list(range(1, len(expected) + 1))


def test_cod_serve_takes_the_ledger_and_the_policy(tmp_path: Path) -> None:
    import signal
    import urllib.request

    fake = StandIn()
    with standin.in_thread(fake) as url:
        served = subprocess.Popen([sys.executable, "-m", "cod", "serve", "--data-dir", str(tmp_path / "n"),
                                   "--port", "0", "--ledger", url, "--policy", "fil-plus-only"],
                                  cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert served.stdout is not None
            line = served.stdout.readline()
            assert f"(policy fil-plus-only, ledger {url})" in line
            node_url = line.split(" serving on ")[1].split()[0]
            with urllib.request.urlopen(node_url + "/v1/info", timeout=30) as resp:
                assert json.load(resp)["policy"] == {"name": "fil-plus-only", "ledger": url}
            request = urllib.request.Request(node_url + "/v1/jobs", data=json.dumps({"spec": SPEC}).encode(),
                                             headers={"Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=30)
            assert refused.value.code == 403 and json.load(refused.value)["error"] == "PolicyRefused"
        finally:
            served.send_signal(signal.SIGINT)
            served.wait(timeout=30)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8)


async def test_whatever_the_ledger_answers_the_node_refuses_cleanly_or_runs(
        strict: RunningNode, http: aiohttp.ClientSession, ledger: tuple[StandIn, str]) -> None:
    """Random answers (any JSON value, any blessed-looking object, raw bytes, any status): the node
    answers 403, 503 or (only for a well-formed yes) 409 MissingBlobs; it never fails or hangs."""
    fake, _ = ledger
    fake.mode = standin.CUSTOM
    answers = st.one_of(
        st.tuples(st.sampled_from([200, 201, 204, 301, 400, 404, 418, 500, 502, 503]),
                  JSON.map(lambda v: json.dumps(v).encode())),
        st.tuples(st.sampled_from([200, 201, 203]),
                  st.fixed_dictionaries({"cid": st.sampled_from([INPUT, INPUT.upper(), ""]),
                                                       "blessed": JSON}).map(lambda v: json.dumps(v).encode())),
        st.tuples(st.just(200), st.binary(max_size=64)))
    seen: list[tuple[int, str]] = []

    @settings(max_examples=40, deadline=None)
    @given(answer=answers)
    def one(answer: tuple[int, bytes]) -> None:
        fake.custom = answer
        strict.node.policy._cache.clear()
        seen.append((answer[0], answer[1].decode("utf-8", "replace")))

    # hypothesis drives a synchronous function: collect the answers, then ask the node for each
    one()
    for status, body in seen:
        fake.custom = (status, body.encode())
        strict.node.policy._cache.clear()
        code, answer = await _post(http, strict.url, SPEC)
        well_formed_yes = status == 200 and _is_yes(body)
        if well_formed_yes:
            assert (code, answer["error"]) == (409, "MissingBlobs")
        elif status >= 500:
            assert (code, answer["error"]) == (503, "LedgerUnavailable")
        else:
            assert (code, answer["error"]) == (403, "PolicyRefused"), (status, body, answer)
    assert (await _get(http, strict.url + "/v1/health"))[0] == 200


def _is_yes(body: str) -> bool:
    try:
        value = json.loads(body)
    except ValueError:
        return False
    return isinstance(value, dict) and value.get("blessed") is True and value.get("cid") == INPUT


async def test_a_refusal_of_a_job_with_very_many_inputs_is_still_a_valid_entry(
        strict: RunningNode, http: aiohttp.ClientSession, ledger: tuple[StandIn, str]) -> None:
    from cod.content.cid import CID, RAW

    fake, _ = ledger
    inputs = tuple(Input(cid=str(CID.of(RAW, n.to_bytes(2, "big"))), path=f"/inputs/{n}") for n in range(300))
    status, _ = await _post(http, strict.url, JobSpec(module=module_cid(HELLO), inputs=inputs).to_dict())
    assert status == 403
    await asyncio.wait_for(fake.refusal_seen.wait(), WAIT_S)
    [signed] = fake.refusals
    assert len(signed["statement"]["inputs"]) == entries.MAX_REFUSAL_INPUTS
    entries.parse_signed(signed, entries.REFUSAL).verify()
