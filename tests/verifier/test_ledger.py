"""`cod run --verify N --ledger URL`: the evidence reported after the run (SPEC 11, step 9).

Real nodes (a `cod devstack` subprocess, or nodes on loopback in this process), real keys,
`cod` as a subprocess; the ledger is the stand-in of tests/ledger/standin.py served from a
thread (it records the evidence and judges it by design.md's rules in a few lines). Whatever
the ledger does, the run's exit code is the run's.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cod.local import prepare
from cod.node.policy import Policy
from cod.node.server import start_node
from cod.statement import SignedStatement
from verifier.reputation import Records
from verifier.verify import statuses, verify

from ..helpers import ROOT, VECTORS, load_vector
from ..ledger import standin
from ..ledger.standin import StandIn

VECTOR = load_vector("wordcount")
INPUT: str = VECTOR["spec"]["inputs"][0]["cid"]
JOB = [str(VECTORS / "wordcount.wasm"), "-i", str(VECTORS / "data" / "wordcount")]


class Stack:
    def __init__(self, env: dict[str, str], urls: list[str], cwd: Path) -> None:
        self.env, self.urls, self.cwd = env, urls, cwd

    def cod(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cod", *args], cwd=self.cwd, capture_output=True, text=True,
                              env=dict(self.env, **env), timeout=120)

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self.cod("run", "--verify", "3", *args, *JOB, COD_NODES=",".join(self.urls), **env)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("verify-ledger")
    env = dict(os.environ, COD_HOME=str(tmp / "home"), PYTHONPATH=str(ROOT), XDG_CONFIG_HOME=str(tmp / "config"))
    for name in ("COD_NODES", "COD_LEDGER"):
        env.pop(name, None)
    devstack = subprocess.Popen([sys.executable, "-m", "cod", "devstack", "--nodes", "3"], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    urls: list[str] = []
    try:
        assert devstack.stdout is not None
        while len(urls) < 3:
            line = devstack.stdout.readline()
            assert line, "devstack ended early"
            if line.startswith("node "):
                urls.append(line.split()[3])
        yield Stack(env, urls, tmp)
    finally:
        devstack.send_signal(signal.SIGINT)
        devstack.wait(timeout=30)


@pytest.fixture()
def ledger() -> Iterator[tuple[StandIn, str]]:
    fake = StandIn()
    with standin.in_thread(fake) as url:
        yield fake, url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_verified_run_reports_its_evidence(stack: Stack, ledger: tuple[StandIn, str]) -> None:
    fake, url = ledger
    fake.blessed.add(INPUT)
    done = stack.run("--ledger", url)
    assert done.returncode == 0, done.stderr
    assert "ledger: eligible (entry 1)" in done.stderr
    [evidence] = fake.evidence
    assert evidence["spec"] == VECTOR["spec"]
    statements = [SignedStatement.from_json(s) for s in evidence["statements"]]
    nodes = [s.statement.node for s in statements]
    assert nodes == sorted(nodes) and len(set(nodes)) == 3  # every valid statement, once, by node ID
    for signed in statements:
        assert signed.verify(VECTOR["job_cid"], signed.statement.node).result == VECTOR["expect"]["result_cid"]


def test_json_output_carries_the_ledgers_answer(stack: Stack, ledger: tuple[StandIn, str]) -> None:
    fake, url = ledger
    done = stack.run("--ledger", url, "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["outcome"] == "verified"
    assert out["ledger"] == {"url": url, "reported": True, "entry": 1, "eligible": False,
                             "reason": "input CID is not blessed FIL+ data", "result": None, "nodes": [],
                             "error": None}


def test_a_not_eligible_job_names_the_reason(stack: Stack, ledger: tuple[StandIn, str]) -> None:
    done = stack.run("--ledger", ledger[1])
    assert done.returncode == 0
    assert "ledger: not eligible: input CID is not blessed FIL+ data (entry 1)" in done.stderr


@pytest.mark.parametrize("answer", [(201, {"entry": "one", "eligible": True}), (201, {"entry": 1, "eligible": "yes"}),
                                    (201, [1]), (422, {"error": "BadEvidence", "message": "statement 2 is forged",
                                                       "hint": "h"})])
def test_a_ledger_that_refuses_or_lies_never_changes_the_exit_code(stack: Stack, ledger: tuple[StandIn, str],
                                                                   answer: tuple[int, Any]) -> None:
    fake, url = ledger
    fake.canned["/v1/evidence"] = answer
    done = stack.run("--ledger", url, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["ledger"]
    assert report["reported"] is False and report["error"]
    if answer[0] == 422:
        assert "BadEvidence" in report["error"] and "statement 2 is forged" in report["error"]


def test_a_ledger_that_is_down_is_reported_and_the_run_stands(stack: Stack) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    done = stack.run("--ledger", url)
    assert done.returncode == 0
    assert f"ledger: could not report: cannot reach the ledger at {url}" in done.stderr


def test_the_ledger_comes_from_cod_ledger_or_the_config_file(stack: Stack, ledger: tuple[StandIn, str]) -> None:
    fake, url = ledger
    config = Path(stack.env["XDG_CONFIG_HOME"]) / "cod" / "config.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps({"ledger": url}))
    try:
        assert "ledger: not eligible" in stack.run().stderr
        assert len(fake.evidence) == 1
        done = stack.run(COD_LEDGER="http://127.0.0.1:1/")  # the environment wins over the file
        assert "could not report: cannot reach the ledger at http://127.0.0.1:1" in done.stderr
        assert len(fake.evidence) == 1
        done = stack.run(COD_LEDGER="ledger.example")  # refused before anything runs
        assert done.returncode == 21 and "COD_LEDGER" in done.stderr and "Job CID" not in done.stderr
        config.write_text(json.dumps({"ledger": ["not", "a", "string"]}))
        done = stack.run()
        assert done.returncode == 21 and '"ledger" must be a non-empty string' in done.stderr
    finally:
        config.unlink()


def test_ledger_goes_with_verify(stack: Stack) -> None:
    done = stack.cod("run", "--ledger", "http://127.0.0.1:1", *JOB)
    assert done.returncode == 2 and "--ledger, --require-local, --referee, --referee-fuel, --referee-bytes and --audit go with --verify N" in done.stderr


async def test_a_node_refusing_by_policy_is_failed_and_a_spare_is_asked(tmp_path: Path, records: Records) -> None:
    fake = StandIn()  # knows no blessed input: the strict node refuses
    runner, url = await standin.start(fake)
    strict = await start_node(tmp_path / "strict", concurrency=1, policy=Policy("fil-plus-only", url))
    others = [await start_node(tmp_path / f"n{i}", concurrency=1) for i in range(3)]
    try:
        records.see(strict.node.identity.node_id, strict.url, strict.node.profile)
        for _ in range(5):  # the strict node has the best record: it is asked first
            records.bump(strict.node.identity.node_id, "agreed")
        assert records.score(strict.node.identity.node_id) == 5
        job = prepare(VECTORS / "wordcount.wasm", ["wordcount.wasm"], inputs=[str(VECTORS / "data" / "wordcount")])
        result = await verify(job, [strict.url] + [o.url for o in others], 3, records=records)
        assert result.outcome == "verified" and job.spec.inputs[0].cid == INPUT
        by_node = dict(zip((a.node_id for a in result.answers), statuses(result)))
        status, detail = by_node[strict.node.identity.node_id]
        assert status == "failed" and detail.startswith(f"policy: input CID {INPUT} is not blessed FIL+ data")
        assert sum(s == "agrees" for s, _ in by_node.values()) == 3  # the spare took its place
        assert strict.node.identity.node_id not in [SignedStatement.from_json(s).statement.node
                                                    for s in result.statements()]
    finally:
        for running in [strict, *others]:
            await running.stop()
        await runner.cleanup()


@pytest.fixture()
def real_ledger(tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """Engineer B's Ledger with one root key (threshold 1) that made one moderator."""
    from cod.identity import Identity
    from cod.ledger.entries import sign_proposal
    from cod.ledger.log import Ledger

    root, moderator = Identity.load_or_create(tmp_path / "root"), Identity.load_or_create(tmp_path / "mod")
    ledger = Ledger.init(tmp_path / "ledger", [root.node_id], 1)
    ledger.propose(sign_proposal(root, origin=ledger.origin, action="add", moderator=moderator.node_id))
    assert moderator.node_id in ledger.moderators()
    yield ledger, moderator
    ledger.close()


def test_the_real_ledger_judges_the_runs_evidence_eligible(stack: Stack, real_ledger: tuple[Any, Any]) -> None:
    from cod.ledger.entries import sign_bless_batch

    ledger, moderator = real_ledger
    ledger.bless([sign_bless_batch(moderator, {INPUT: [1234]}, origin=ledger.origin)])
    with standin.backed_in_thread(ledger) as url:
        done = stack.run("--ledger", url, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["ledger"]
    assert report["reported"] and report["eligible"] is True and report["error"] is None
    assert report["result"] == VECTOR["expect"]["result_cid"] and len(report["nodes"]) == 3
    assert ledger.job(VECTOR["job_cid"])["state"] == "eligible"
    assert [j["job"] for j in ledger.queue()] == [VECTOR["job_cid"]]


def test_the_real_ledger_finds_the_run_not_eligible_without_blessings(stack: Stack,
                                                                      real_ledger: tuple[Any, Any]) -> None:
    ledger, _ = real_ledger
    with standin.backed_in_thread(ledger) as url:
        done = stack.run("--ledger", url)
    assert done.returncode == 0
    assert f"ledger: not eligible: input CID {INPUT} is not blessed FIL+ data" in done.stderr


async def test_a_refusal_reaches_the_real_ledger_as_a_valid_entry(tmp_path: Path,
                                                                  real_ledger: tuple[Any, Any]) -> None:
    import asyncio

    import aiohttp

    ledger, _ = real_ledger
    before = ledger.size
    with standin.backed_in_thread(ledger) as url:
        strict = await start_node(tmp_path / "strict", concurrency=1, policy=Policy("fil-plus-only", url))
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(strict.url + "/v1/jobs", json={"spec": VECTOR["spec"]}) as resp:
                    assert resp.status == 403
            for _ in range(600):  # until the background report lands (a bound, not a timing assertion)
                if strict.node.policy.reported or strict.node.policy.dropped:
                    break
                await asyncio.sleep(0.05)
            assert (strict.node.policy.reported, strict.node.policy.dropped) == (1, 0)
        finally:
            await strict.stop()
    assert ledger.size == before + 1
    leaf = json.loads(ledger.entries(before, before + 1)[0])
    assert leaf["statement"]["node"] == strict.node.identity.node_id and leaf["statement"]["job"] == VECTOR["job_cid"]


async def test_a_report_over_the_ledgers_rate_limit_waits_its_retry_after_and_is_reported(tmp_path: Path) -> None:
    # Stage 9 second round: many honest runs at once from one host (an Airflow fan-out) pass an address's
    # burst; the 429 says when to retry, and a report lost for a second's wait was "could not report"
    from cod.ledger.rates import Rate, WriteLimits
    from cod.ledger.server import start_ledger
    from verifier.ledger import report

    from ..ledger.bkit import DATA, agreeing, blessed_ledger, spec

    blessed_ledger(tmp_path).close()
    running = await start_ledger(tmp_path / "ledger", limits=WriteLimits(address=Rate(1, 1000)))
    try:
        answers = [await report(running.url, s, agreeing(s, 2)) for s in (spec(DATA), spec(DATA, DATA))]
    finally:
        await running.stop()
    assert [a["error"] for a in answers] == [None, None] and [a["reported"] for a in answers] == [True, True]


async def test_a_fraud_proof_is_posted_as_its_canonical_bytes_and_a_refusal_is_reported() -> None:
    """POST /v1/fraud-proofs gets the proof's canonical bytes (application/json); 200 is recorded,
    an error JSON is reported with its message, never raised (SPEC 11.5)."""
    from aiohttp import web

    from cod.fraud import FraudProof
    from verifier.ledger import fraud_summary, report_fraud

    from ..fraud.kit import LIE, key, proof_obj, signed

    proof = FraudProof.parse(proof_obj(signed(key(3), LIE)))
    seen: list[tuple[bytes, str]] = []

    async def post(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append((body, request.content_type))
        if len(seen) == 1:
            return web.json_response({"proof_id": proof.proof_id, "index": 7, "status": "recorded"})
        return web.json_response({"error": "FraudRefuted", "message": "re-execution gave the claim",
                                  "hint": "h"}, status=400)

    app = web.Application()
    app.router.add_post("/v1/fraud-proofs", post)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        url = f"http://127.0.0.1:{port}"
        ok = await report_fraud(url, proof)
        refused = await report_fraud(url, proof)
    finally:
        await runner.cleanup()
    assert seen[0] == (proof.canonical_bytes(), "application/json")
    assert (ok["reported"], ok["index"], ok["status"]) == (True, 7, "recorded")
    assert fraud_summary(ok) == f"ledger: fraud proof {proof.proof_id} recorded (entry 7)"
    assert refused["reported"] is False and "re-execution gave the claim" in refused["error"]
    down = await report_fraud("http://127.0.0.1:9", proof)
    assert down["reported"] is False and "cannot reach" in down["error"]
