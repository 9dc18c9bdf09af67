"""The verifier against real nodes on loopback: honest ones, liars, forgers, and the dead."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from cod.identity import Identity
from cod.jobspec import Limits
from cod.local import prepare
from cod.statement import SignedStatement, Statement
from verifier import Devstack, Records, verify
from verifier.verify import PROFILE_MISMATCH, Answer, _judge, accept

from ..helpers import ROOT, VECTORS, load_vector

WORDCOUNT = load_vector("wordcount")


def _wordcount() -> Any:
    return prepare(VECTORS / "wordcount.wasm", [], inputs=[str(VECTORS / "data" / "wordcount")])


async def test_an_embedded_network_compiles_into_the_requesters_module_cache(records: Records, tmp_path: Path) -> None:
    """Stage 10: with no nodes named, run_verified starts its own, and they keep compiled modules in
    the cache it is given (the requester's), so a Go module (seconds to compile) is compiled once
    on the machine, not once a node. Nothing else wrote to that cache here."""
    from verifier.network import run_verified

    shared = tmp_path / "modules"
    job = _wordcount()
    result = await run_verified(job, 2, [], records=records, output_dir=tmp_path / "out", cache_dir=shared)
    assert result.outcome == "verified" and result.result_cid == WORDCOUNT["expect"]["result_cid"]
    digest = hashlib.sha256((VECTORS / "wordcount.wasm").read_bytes()).hexdigest()
    assert [p.name for p in shared.glob("*/*.cwasm")] == [digest + ".cwasm"]


async def test_three_honest_nodes_verify(records: Records, tmp_path: Path) -> None:
    async with Devstack(3, base_dir=tmp_path / "stack") as stack:
        result = await verify(_wordcount(), stack.urls, 3, records=records, output_dir=tmp_path / "out")
    assert result.outcome == "verified" and result.exit_code == 0
    assert result.result_cid == WORDCOUNT["expect"]["result_cid"]
    assert len({a.node_id for a in result.answers}) == 3 and all(a.signature_valid for a in result.answers)
    assert (tmp_path / "out" / "stdout").read_text() == WORDCOUNT["expect"]["stdout"]
    assert all(row["agreed"] == 1 for row in records.nodes())
    assert records.job(result.job_cid)["outcome"] == "verified"  # type: ignore[index]


async def test_a_lying_node_is_caught_and_named(records: Records, tmp_path: Path) -> None:
    async with Devstack(3, bad_nodes=1, base_dir=tmp_path / "stack") as stack:
        liar = stack.nodes[-1].node.identity.node_id
        result = await verify(_wordcount(), stack.urls, 3, records=records, output_dir=tmp_path / "out")
        assert result.outcome == "mismatch" and result.exit_code == 10 and result.result_cid is None
        honest = WORDCOUNT["expect"]["result_cid"]
        assert sorted(result.groups[honest]) == sorted(n.node.identity.node_id for n in stack.nodes[:2])
        (lie,) = [cid for cid in result.groups if cid != honest]
        assert result.groups[lie] == [liar]
        assert not (tmp_path / "out").exists()  # nothing unverified is handed over
        assert records.node(liar)["disagreed"] == 1  # type: ignore[index]
        quorum = await verify(_wordcount(), stack.urls, 3, quorum=2, records=records)
        assert (quorum.outcome, quorum.result_cid) == ("verified-by-quorum", honest)


async def test_one_node_is_unverifiable(records: Records, tmp_path: Path) -> None:
    async with Devstack(1, base_dir=tmp_path / "stack") as stack:
        result = await verify(_wordcount(), stack.urls, 1, records=records, output_dir=tmp_path / "out")
    assert result.outcome == "unverifiable" and result.exit_code == 12
    assert result.result_cid == WORDCOUNT["expect"]["result_cid"] and (tmp_path / "out" / "stdout").exists()


class Tamperer:
    """A proxy in front of an honest node that tampers with its signed statements."""

    def __init__(self, backend: str, mode: str, tmp: Path) -> None:
        self.backend, self.mode = backend, mode
        self.other = Identity.load_or_create(tmp / f"forger-{mode}")
        self.replay: dict[str, Any] | None = None

    def tamper(self, job: dict[str, Any]) -> dict[str, Any]:
        statement = dict(job["statement"]["statement"])
        if self.mode == "alter":
            statement["result"] = statement["result"][:-1] + ("a" if statement["result"][-1] != "a" else "b")
            job["result_cid"] = statement["result"]
            job["statement"] = {"statement": statement, "signature": job["statement"]["signature"]}
        elif self.mode == "forge":
            statement["result"] = statement["result"][:-1] + ("a" if statement["result"][-1] != "a" else "b")
            job["result_cid"] = statement["result"]
            signature = self.other.sign(Statement(**statement).canonical_bytes())
            job["statement"] = {"statement": statement, "signature": base64.b64encode(signature).decode()}
        elif self.mode == "replay":
            assert self.replay is not None
            job["statement"], job["result_cid"] = self.replay["statement"], self.replay["result_cid"]
        return job

    async def handle(self, request: web.Request) -> web.StreamResponse:
        async with aiohttp.ClientSession() as http:
            async with http.request(request.method, self.backend + request.path_qs, data=await request.read(),
                                    headers={"Content-Type": request.content_type}) as resp:
                body = await resp.read()
                if request.method == "POST" and request.path == "/v1/jobs" and resp.status == 200:
                    body = json.dumps(self.tamper(json.loads(body))).encode()
                return web.Response(body=body, status=resp.status, content_type=resp.content_type)

    async def start(self) -> tuple[web.AppRunner, str]:
        application = web.Application(client_max_size=1 << 30)
        application.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(application)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return runner, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("mode", ["alter", "forge", "replay"])
async def test_tampered_statements_are_rejected_and_a_spare_is_used(mode: str, records: Records,
                                                                    tmp_path: Path) -> None:
    async with Devstack(4, base_dir=tmp_path / "stack") as stack:
        tamperer = Tamperer(stack.urls[0], mode, tmp_path)
        if mode == "replay":  # a genuine statement of this node, for another job
            hello = prepare(VECTORS / "hello.wasm", [])
            first = await verify(hello, [stack.urls[0]], 1, records=Records(tmp_path / "other.db"))
            tamperer.replay = {"statement": first.answers[0].statement, "result_cid": first.result_cid}
        runner, proxy = await tamperer.start()
        honest = {n.node.identity.node_id for n in stack.nodes[1:]}
        try:
            cheat_id = stack.nodes[0].node.identity.node_id
            records.see(cheat_id, proxy, "")
            records.bump(cheat_id, "agreed")  # make the tamperer the first choice
            result = await verify(_wordcount(), [proxy] + stack.urls[1:], 3, records=records)
        finally:
            await runner.cleanup()
    bad = [a for a in result.answers if a.node_id == cheat_id]
    assert bad and bad[0].signature_valid is False and bad[0].result_cid is None
    assert result.outcome == "verified"  # on the three honest nodes: the spare stood in
    assert {a.node_id for a in result.answers if a.valid} == honest
    assert records.node(cheat_id)["bad_signature"] == 1  # type: ignore[index]


def _serve(tmp: Path, name: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "cod", "serve", "--data-dir", str(tmp / name), "--port", "0",
                             "--concurrency", "1"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, line.strip().rsplit(" ", 1)[-1]


async def _kill_when_running(proc: subprocess.Popen[str], url: str, job_cid: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(f"{url}/v1/jobs/{job_cid}") as resp:
                    if resp.status == 200 and (await resp.json())["state"] == "running":
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize("spare", [True, False])
async def test_a_node_killed_mid_job(spare: bool, records: Records, tmp_path: Path) -> None:
    nodes = [_serve(tmp_path, f"n{i}") for i in range(4 if spare else 3)]
    job = prepare(VECTORS / "sha256.wasm", ["256"], limits=Limits(timeout_ms=60_000))
    try:
        victim, victim_url = nodes[0]
        async with aiohttp.ClientSession() as http, http.get(victim_url + "/v1/info") as resp:
            victim_id = (await resp.json())["node_id"]
        records.see(victim_id, victim_url, "")
        records.bump(victim_id, "agreed")  # the victim is among the first chosen
        started = time.monotonic()
        killer = asyncio.create_task(_kill_when_running(victim, victim_url, str(job.spec.cid)))
        result = await verify(job, [url for _, url in nodes], 3, records=records, deadline_s=45)
        await killer
        elapsed = time.monotonic() - started
    finally:
        for proc, _ in nodes:
            proc.kill()
            proc.wait()
    failed = [a for a in result.answers if not a.valid]
    assert failed and failed[0].url == victim_url and failed[0].error
    assert result.outcome == ("verified" if spare else "incomplete")
    assert elapsed < 40  # never a hang: the dead node's request failed at once


async def test_a_busy_node_makes_the_verifier_back_off(records: Records, tmp_path: Path) -> None:
    async with Devstack(1, base_dir=tmp_path / "stack", queue_size=0) as stack:
        jobs = [prepare(VECTORS / "sha256.wasm", [str(n)]) for n in (24, 25, 26)]
        results = await asyncio.gather(*(verify(j, stack.urls, 1, records=records) for j in jobs))
    assert [r.outcome for r in results] == ["unverifiable"] * 3  # all done, one at a time


def test_profiles_that_disagree_are_not_called_liars() -> None:
    job = prepare(VECTORS / "hello.wasm", [])
    answers = [Answer(f"n{i}", "u", profile, result_cid=result, signature_valid=True)
               for i, (profile, result) in enumerate([("p1", "bafyA"), ("p1", "bafyA"), ("p2", "bafyB")])]
    verdict = _judge(job, "job", answers, 3, 0)
    assert verdict.outcome == PROFILE_MISMATCH and verdict.exit_code == 13 and verdict.result_cid is None


def test_a_docker_statement_names_the_docker_profile_and_contradicts_nothing(tmp_path: Path) -> None:
    """Every node signs a docker job's statement with profile "docker" (SPEC 10), whatever its
    /v1/info shows: that is the profile it must sign, no contradiction (SPEC 11 step 4). The
    same statement for a wasm job is one: its node advertised another profile."""
    node = Identity.load_or_create(tmp_path / "node")
    result = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    statement = Statement(job="job", result=result, node=node.node_id, profile="docker", exit_code=0, trap=None,
                          fuel_used=0)
    record = {"state": "done", "result_cid": result, "statement": statement.sign(node).to_json()}
    docker = accept(Answer(node.node_id, "u", "cod-wasi-2+wasmtime-x"), record, "job", "docker")
    wasm = accept(Answer(node.node_id, "u", "cod-wasi-2+wasmtime-x"), record, "job", "wasm")
    assert docker.valid and not docker.contradicts and docker.profile == docker.advertised == "docker"
    assert wasm.valid and wasm.contradicts and wasm.advertised == "cod-wasi-2+wasmtime-x"


def test_cli_against_a_devstack_with_a_liar(tmp_path: Path) -> None:
    env = dict(os.environ, COD_HOME=str(tmp_path / "home"))
    stack = subprocess.Popen([sys.executable, "-m", "cod", "devstack", "--nodes", "3", "--bad-nodes", "1"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert stack.stdout is not None
        export = ""
        while not export:
            line = stack.stdout.readline()
            assert line, "devstack ended early"
            if "export COD_NODES=" in line:
                export = line.split("=", 1)[1].strip()
        env["COD_NODES"] = export
        proc = subprocess.run([sys.executable, "-m", "cod", "run", "--verify", "3", "--json", "--referee", "none",
                               str(VECTORS / "wordcount.wasm"), "-i", str(VECTORS / "data" / "wordcount"),
                               "--output-dir", str(tmp_path / "out")], cwd=tmp_path, capture_output=True, text=True,
                              env=env, timeout=120)
        assert proc.returncode == 10, proc.stderr
        data = json.loads(proc.stdout)
        assert data["outcome"] == "mismatch" and len(data["groups"]) == 2 and data["result_cid"] is None
        assert all(n["signature_valid"] for n in data["nodes"])
        listed = subprocess.run([sys.executable, "-m", "cod", "list"], cwd=tmp_path, capture_output=True,
                                text=True, env=env)
        assert "MISMATCH" in listed.stdout  # a mismatch stands out in capitals
        quorum = subprocess.run([sys.executable, "-m", "cod", "run", "--verify", "3", "--quorum", "2", "--referee",
                                 "none",
                                 str(VECTORS / "wordcount.wasm"), "-i", str(VECTORS / "data" / "wordcount")],
                                cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
        assert quorum.returncode == 0 and "VERIFIED-BY-QUORUM" in quorum.stderr
        assert quorum.stdout == WORDCOUNT["expect"]["stdout"]

        def cod(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "cod", *args], cwd=tmp_path, capture_output=True,
                                  text=True, env=env, timeout=60)

        job = WORDCOUNT["job_cid"]
        got = cod("get", job[:20], "--output-dir", str(tmp_path / "again"))
        assert got.returncode == 0, got.stderr
        assert (tmp_path / "again" / "stdout").read_text() == WORDCOUNT["expect"]["stdout"]
        assert cod("get", job, "--car", str(tmp_path / "r.car")).returncode == 0
        assert (tmp_path / "r.car").stat().st_size > 0
        described = json.loads(cod("describe", job, "--json").stdout)
        assert described["outcome"] == "verified-by-quorum" and len(described["nodes"]) == 3
        assert all(n["statement"]["signature"] for n in described["nodes"])
        nodes = json.loads(cod("nodes", "--json").stdout)
        assert len(nodes) == 3 and [n["disagreed"] for n in nodes].count(2) == 1  # the liar, twice
        missing = cod("describe", "bagaaieranosuchjob")
        assert missing.returncode == 17 and missing.stderr.startswith("error: no job")
    finally:
        stack.send_signal(signal.SIGINT)
        stack.wait(timeout=30)


def test_signed_statement_wire_format_is_stable() -> None:
    # the statement's canonical bytes, by hand: sorted keys, no spaces
    statement = Statement(job="j", result="r", node="n", profile="p", exit_code=0, trap=None, fuel_used=1)
    assert statement.canonical_bytes() == (b'{"exit_code":0,"fuel_used":1,"job":"j","node":"n","profile":"p",'
                                           b'"result":"r","trap":null,"type":"cod/result-statement/v1"}')
    assert SignedStatement.from_json({"statement": json.loads(statement.canonical_bytes()),
                                      "signature": "AA=="}).statement == statement


async def test_one_honest_node_beats_two_colluding_liars_by_re_execution(records: Records, tmp_path: Path) -> None:
    """Stage 11 (SPEC 11.3): two liars that sign the same lie outvote one honest node (the quorum
    trusts the count); the referee re-executes the job here and accepts the honest claim, naming
    both liars, and the records keep their proven lie apart from mere disagreement."""
    async with Devstack(3, bad_nodes=2, base_dir=tmp_path / "stack") as stack:
        honest_id = stack.nodes[0].node.identity.node_id
        liars = sorted(n.node.identity.node_id for n in stack.nodes[1:])
        honest = WORDCOUNT["expect"]["result_cid"]  # from the vector, not from the code under test
        voted = await verify(_wordcount(), stack.urls, 3, quorum=2, records=records, referee="none")
        assert voted.outcome == "verified-by-quorum" and voted.result_cid != honest  # the lie wins the vote
        assert voted.referee is None and voted.liars == []
        refereed = await verify(_wordcount(), stack.urls, 3, quorum=2, records=records, referee="self",
                                output_dir=tmp_path / "out")
    assert (refereed.outcome, refereed.result_cid, refereed.exit_code) == ("verified-by-referee", honest, 0)
    assert refereed.liars == liars and all(liar in (refereed.note or "") for liar in liars)
    assert refereed.referee == {"method": "self", "result_cid": honest, "job_fuel": refereed.referee["job_fuel"],
                                "segment_fuel": refereed.referee["segment_fuel"], "rounds": 0, "liars": liars}
    assert refereed.referee["job_fuel"] == Limits().fuel
    assert 0 < refereed.referee["segment_fuel"] == [a.fuel_used for a in refereed.answers
                                                    if a.node_id == honest_id][0]
    assert (tmp_path / "out" / "stdout").read_text() == WORDCOUNT["expect"]["stdout"]
    as_json = refereed.to_json()
    assert as_json["liars"] == liars and as_json["referee"]["method"] == "self"
    for liar in liars:
        row = records.node(liar)
        assert row is not None and row["lied"] == 1
        assert records.score(liar) < records.score(honest_id)
    assert records.node(honest_id)["lied"] == 0  # type: ignore[index]
    (run,) = [r for r in records.runs(refereed.job_cid) if r["outcome"] == "verified-by-referee"]
    assert run["extra"]["liars"] == liars and run["extra"]["referee"]["result_cid"] == honest


async def test_the_referee_bounded_by_fuel_or_lacking_an_input_leaves_the_vote(records: Records,
                                                                              tmp_path: Path) -> None:
    """Past --referee-fuel, or without an input's bytes here, the referee says why and does not
    judge: the outcome is today's (the quorum of liars), and nobody is called a liar."""
    from dataclasses import replace

    async with Devstack(3, bad_nodes=2, base_dir=tmp_path / "stack") as stack:
        bounded = await verify(_wordcount(), stack.urls, 3, quorum=2, records=records, referee="self",
                               referee_fuel=1000)
        assert bounded.outcome == "verified-by-quorum" and bounded.liars == [] and bounded.referee is None
        assert "fuel bound (1000 of the job's" in (bounded.note or "")
        # the nodes hold the input now; this requester does not (named by CID only), and 64 bytes
        # of fetching (--referee-bytes) cannot get it from the signing nodes
        lacking = replace(_wordcount(), sources={})
        blind = await verify(lacking, stack.urls, 3, quorum=2, records=records, referee="self", referee_bytes=64)
        assert blind.outcome == "verified-by-quorum" and blind.liars == []
        assert "does not hold the input" in (blind.note or "")


async def test_the_referee_fetches_what_it_lacks_by_cid_from_the_signing_nodes(records: Records,
                                                                               tmp_path: Path) -> None:
    """SPEC 11.3 step 1: an input this requester names by CID only is fetched from the nodes that
    signed, checked against its CID, and the referee judges: the honest claim (the vector's result)
    beats two liars; the fetched bytes land in the store given, the input's CID intact."""
    from dataclasses import replace

    from cod.content.store import ContentStore

    honest = WORDCOUNT["expect"]["result_cid"]
    async with Devstack(3, bad_nodes=2, base_dir=tmp_path / "stack") as stack:
        await verify(_wordcount(), stack.urls, 3, records=records, referee="none")  # the nodes now hold the input
        store = ContentStore(tmp_path / "requester-store")
        lacking = replace(_wordcount(), sources={})
        judged = await verify(lacking, stack.urls, 3, quorum=2, records=records, referee="self", store=store)
    assert (judged.outcome, judged.result_cid) == ("verified-by-referee", honest)
    assert len(judged.liars) == 2
    (item,) = lacking.spec.inputs
    assert item.cid is not None and store.get(item.cid) is not None


def test_a_referee_on_another_profile_refuses_to_judge() -> None:
    from verifier.referee import referee

    ruling = referee(_wordcount(), "cod-profile-of-another-engine")
    assert ruling.result_cid is None and ruling.refused is not None
    assert "does not judge across profiles" in ruling.refused


def test_a_referee_result_no_claim_equals_accepts_nothing_and_brands_every_claimant() -> None:
    """SPEC 11.3 step 4: two claims, neither equal to the referee's result: referee-disagrees
    (exit 26), no result, both signers proven liars; a node of another profile is not judged."""
    from verifier.referee import Ruling
    from verifier.verify import Verification, _rule

    a, b, other = (Answer(f"12D3KooW{x}", f"http://{x}", "p1", result_cid=f"bafy{x}", signature_valid=True)
                   for x in "abc")
    other.profile = "p2"
    verification = Verification("bagaajob", "mismatch", None, 3, 0, [a, b, other])
    _rule(verification, "p1", Ruling(result_cid="bafyreferee", job_fuel=10, segment_fuel=7))
    assert (verification.outcome, verification.result_cid, verification.exit_code) == ("referee-disagrees", None, 26)
    assert verification.liars == ["12D3KooWa", "12D3KooWb"]
    assert verification.referee == {"method": "self", "result_cid": "bafyreferee", "job_fuel": 10, "segment_fuel": 7,
                                    "rounds": 0, "liars": ["12D3KooWa", "12D3KooWb"]}
