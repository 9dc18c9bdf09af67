"""The issue's "bad input and abuse" list against the real HTTP service: each refused with a 4xx
JSON body naming the problem, and nothing stored (the tree size and the checkpoint unchanged)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cod.errors import LedgerRefused, LocalPathError
from cod.ledger import entries
from cod.ledger.client import LedgerClient
from cod.ledger.server import RunningLedger, start_ledger

from .bkit import (DATA, MOD, MOD2, NODES, ORIGIN, OTHER, RESULT, ROOTS, STRANGER, agreeing, blessed_ledger, governed,
                   job_of, spec, statement)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[RunningLedger, LedgerClient]]:
    blessed_ledger(tmp_path).close()  # root keys ROOTS (K=2), MOD a moderator, DATA blessed
    running = await start_ledger(tmp_path / "ledger")
    try:
        yield running, LedgerClient(running.url)
    finally:
        await running.stop()


async def refused(running: RunningLedger, client: LedgerClient, call: Awaitable[Any], status: int,
                  error: str, words: str) -> None:
    before = running.ledger.size, await client.checkpoint()
    with pytest.raises(LedgerRefused) as caught:
        await call
    assert (caught.value.status, caught.value.error) == (status, error), caught.value
    assert words in caught.value.message, caught.value.message
    assert (running.ledger.size, await client.checkpoint()) == before, "a refused request stored something"


async def eligible_job(client: LedgerClient) -> tuple[str, int]:
    job_spec = spec(DATA)
    answer = await client.evidence(job_spec, agreeing(job_spec, 3))
    assert answer["eligible"] is True
    return answer["job"], answer["entry"]


def decision(key: Any, job: str, entry: int, supersedes: int | None = None, action: str = "approve",
             datacap: int = 1 << 40, result: str = RESULT) -> dict[str, Any]:
    return entries.sign_decision(key, origin=ORIGIN, job=job, result=result, action=action,
                                 datacap=datacap if action == "approve" else 0, reason="useful", eligibility=entry,
                                 supersedes=supersedes)


async def test_decisions_from_unknown_removed_or_forged_moderators_are_refused(served: Any) -> None:
    running, client = served
    job, entry = await eligible_job(client)
    await refused(running, client, client.decide(decision(STRANGER, job, entry)), 403, "NotAuthorized", "moderator")
    forged = decision(MOD, job, entry)
    forged["statement"] = dict(forged["statement"], datacap=1 << 50)  # MOD's signature over another amount
    await refused(running, client, client.decide(forged), 422, "BadSignature", "signature")
    # MOD is removed by two root keys; MOD's decisions are refused from then on
    proposal = await client.propose(entries.sign_proposal(ROOTS[0], origin=ORIGIN, action="remove",
                                                          moderator=MOD.node_id))
    assert proposal["in_effect"] is False
    pid = proposal["proposal_id"]
    approved = await client.approve(pid, entries.sign_approval(ROOTS[1], pid, origin=ORIGIN))
    assert approved["in_effect"] is True
    await refused(running, client, client.decide(decision(MOD, job, entry)), 403, "NotAuthorized", "moderator")


async def test_replayed_stale_and_ineligible_decisions_are_refused(served: Any) -> None:
    running, client = served
    job, entry = await eligible_job(client)
    first = decision(MOD, job, entry)
    done = await client.decide(first)
    await refused(running, client, client.decide(first), 409, "Replayed", "")
    # a second decision that does not name the first as superseded is stale
    await refused(running, client, client.decide(decision(MOD, job, entry, action="reject")), 409, "Stale", "")
    later = await client.decide(decision(MOD, job, entry, supersedes=done["entry"], action="reject"))
    assert (await client.job(job))["state"] == "rejected" and later["entry"] > done["entry"]
    # a job whose input is not blessed is recorded as not eligible, and cannot be decided
    other = spec(OTHER)
    answer = await client.evidence(other, agreeing(other, 2))
    assert answer["eligible"] is False and "not blessed" in answer["reason"]
    await refused(running, client, client.decide(decision(MOD, job_of(other), answer["entry"])), 422, "NotEligible", "")


@pytest.mark.parametrize("datacap", [0, -1, (1 << 60) + 1, "1TiB", True])
async def test_a_bad_datacap_is_refused(served: Any, datacap: Any) -> None:
    running, client = served
    job, entry = await eligible_job(client)
    bad = decision(MOD, job, entry)
    bad = entries._signed(MOD, entries.DECISION, dict(bad["statement"], datacap=datacap), ORIGIN)
    await refused(running, client, client.decide(bad), 422, "BadDatacap", "datacap")


async def test_evidence_that_does_not_verify_is_refused(served: Any) -> None:
    running, client = served
    job_spec = spec(DATA)
    good = agreeing(job_spec, 2)
    forged = dict(good[1], signature=statement(job_spec, STRANGER)["signature"])
    await refused(running, client, client.evidence(job_spec, [good[0], forged]), 422, "BadSignature", "does not verify")
    replayed = agreeing(spec(OTHER), 2)  # statements of another job
    await refused(running, client, client.evidence(job_spec, replayed), 422, "BadEvidence", "")
    twice = [good[0], statement(job_spec, NODES[0], result=RESULT)]
    await refused(running, client, client.evidence(job_spec, twice + [good[0]]), 422, "BadEvidence", "")


async def test_a_proposal_signed_twice_by_one_key_is_refused(served: Any) -> None:
    running, client = served
    proposal = await client.propose(entries.sign_proposal(ROOTS[0], origin=ORIGIN, action="add",
                                                          moderator=MOD2.node_id))
    pid = proposal["proposal_id"]
    await refused(running, client, client.approve(pid, entries.sign_approval(ROOTS[0], pid, origin=ORIGIN)),
                  409, "SignedTwice", "")
    await refused(running, client, client.approve(pid, entries.sign_approval(STRANGER, pid, origin=ORIGIN)),
                  403, "NotAuthorized", "root key")


async def test_the_same_approval_posted_many_times_at_once_counts_once(tmp_path: Path) -> None:
    # issue 19 point 20: K = 3, so an approval counted twice would put the change in effect
    ledger = governed(tmp_path, threshold=3)
    pid = ledger.propose(entries.sign_proposal(ROOTS[0], origin=ORIGIN, action="add", moderator=MOD2.node_id))[1]
    ledger.close()
    running = await start_ledger(tmp_path / "ledger")
    try:
        size = running.ledger.size
        approval = entries.sign_approval(ROOTS[1], pid, origin=ORIGIN)
        async with aiohttp.ClientSession() as session:
            async def post() -> tuple[int, Any]:
                async with session.post(f"{running.url}/v1/moderators/proposals/{pid}/approvals",
                                        json=approval) as response:
                    return response.status, await response.json()
            answers = await asyncio.gather(*(post() for _ in range(8)))
        statuses = sorted(status for status, _ in answers)
        assert statuses == [201] + [409] * 7, answers
        assert {body["error"] for status, body in answers if status == 409} == {"Replayed"}
        assert [body["in_effect"] for status, body in answers if status == 201] == [False]
        assert running.ledger.size == size + 1 and running.ledger.moderators() == [MOD.node_id]
        assert running.ledger.proposal(pid)["signatures"] == [ROOTS[0].node_id, ROOTS[1].node_id]
        # the third distinct root key is the one that puts it in effect
        client = LedgerClient(running.url)
        assert (await client.approve(pid, entries.sign_approval(ROOTS[2], pid, origin=ORIGIN)))["in_effect"]
        assert running.ledger.moderators() == sorted([MOD.node_id, MOD2.node_id])
    finally:
        await running.stop()


async def test_malformed_and_oversized_bodies_are_refused_as_json(served: Any) -> None:
    running, client = served
    size = running.ledger.size
    async with aiohttp.ClientSession() as session:
        for path, body in [("/v1/decisions", b"{"), ("/v1/decisions", b'{"a": 1, "a": 2}'),
                           ("/v1/evidence", b"[]"), ("/v1/blessings", b'{"batches": []}'),
                           ("/v1/blessings", b" " * (17 << 20)), ("/v1/nowhere", b"{}")]:
            async with session.post(running.url + path, data=body) as response:
                assert 400 <= response.status < 500, (path, response.status)
                answer = await response.json()
                assert set(answer) == {"error", "message", "hint"}, answer
        for query in ("/v1/proof/inclusion?index=x", "/v1/proof/inclusion?index=\u00b2",
                      "/v1/proof/inclusion?index=99999", "/tile/0/x001/x234/067", "/tile/../../etc/passwd",
                      "/tile/entries/999", "/v1/results/not-a-cid"):
            async with session.get(running.url + query) as response:
                assert response.status in (400, 404), (query, response.status)
                assert set(await response.json()) == {"error", "message", "hint"}
    assert running.ledger.size == size


async def test_a_late_agreeing_statement_does_not_undo_an_approval(served: Any) -> None:
    """Anyone can add a validly signed agreeing statement (a node scanned late, or a key of their
    own): the job gets a new eligibility entry, but its approval stands and the notary still says so."""
    running, client = served
    job, entry = await eligible_job(client)  # NODES[0..2] agree
    await client.decide(decision(MOD, job, entry))
    job_spec = spec(DATA)
    more = await client.evidence(job_spec, [statement(job_spec, NODES[3])])
    assert more["new"] is True and more["entry"] > entry and more["eligible"] is True
    assert (await client.job(job))["state"] == "approved"
    assert (await client.queue())["jobs"] == []
    answer = await client.result(RESULT)
    assert answer["approved"] is True and answer["datacap"] == 1 << 40


async def test_proof_of_an_undecided_result_is_a_clear_error(served: Any, tmp_path: Path) -> None:
    import asyncio

    from cod.cli import run_cli

    running, client = served
    await eligible_job(client)
    code = await asyncio.to_thread(run_cli, ["ledger", "proof", RESULT, "--json", "--ledger", running.url])
    assert code == 17  # NotFound: no decision yet, not a traceback


async def test_moderators_see_each_signers_history_and_who_posted(served: Any, tmp_path: Path) -> None:
    # issue 19 point 29: two freshly generated keys make a fabricated result eligible; the job's
    # answer, the queue and `cod moderation show` say the keys are new and who posted the evidence
    import asyncio

    from tests.helpers import run_cod
    from tests.ledger.bkit import RESULT_B, key
    running, client = served
    honest_job = spec(DATA)
    first = await client.evidence(honest_job, agreeing(honest_job, 2))          # NODES[0], NODES[1]
    fake_spec = dict(spec(DATA), args=["--fabricated"])
    sybils = [key(120), key(121)]
    disputed = await client.evidence(fake_spec, [statement(fake_spec, k, RESULT_B) for k in sybils]
                                     + [statement(fake_spec, NODES[0])])
    assert disputed["eligible"] is True and disputed["result"] == RESULT_B  # 2 of 3: a strict majority
    fake_spec = dict(spec(DATA), args=["--fabricated", "2"])
    fake = await client.evidence(fake_spec, [statement(fake_spec, k, RESULT_B) for k in sybils])
    assert fake["eligible"] is True and fake["result"] == RESULT_B and fake["entry"] == disputed["entry"] + 1
    record = await client.job(fake["job"])
    signers = {s["node"]: s for s in record["eligibility"]["signers"]}
    for k in sybils:
        # first seen at the disputed job's entry, in 2 jobs, one of them disputed
        assert signers[k.node_id] == {"node": k.node_id, "result": RESULT_B, "agrees": True,
                                      "first_seen": fake["entry"] - 1, "jobs": 2, "disputed_jobs": 1}
    honest = {s["node"]: s for s in (await client.job(first["job"]))["eligibility"]["signers"]}
    assert honest[NODES[0].node_id] == {"node": NODES[0].node_id, "result": RESULT, "agrees": True,
                                        "first_seen": first["entry"], "jobs": 2, "disputed_jobs": 1}
    assert honest[NODES[1].node_id]["jobs"] == 1 and honest[NODES[1].node_id]["disputed_jobs"] == 0
    assert record["eligibility"]["posters"] == [{"entry": fake["entry"], "poster": "address 127.0.0.1"}]
    queued = {j["job"]: j for j in (await client.queue())["jobs"]}
    assert queued[fake["job"]]["signers"] == record["eligibility"]["signers"]
    shown = await asyncio.to_thread(run_cod, tmp_path, "moderation", "show", fake["job"], "--ledger", running.url)
    assert shown.returncode == 0, shown.stderr
    for k in sybils:
        assert f"signer:      {k.node_id} agrees; first seen at entry {fake['entry'] - 1}, in 2 job(s), 1 disputed" \
            in shown.stdout, shown.stdout
    assert f"posted:      entry {fake['entry']} by address 127.0.0.1" in shown.stdout
    table = await asyncio.to_thread(run_cod, tmp_path, "moderation", "queue", "--ledger", running.url, "--csv")
    assert table.returncode == 0 and "signers" in table.stdout.splitlines()[0], table.stdout


async def test_the_moderation_queue_is_paged_and_the_cli_reads_every_page(served: Any, tmp_path: Path) -> None:
    # issue 19 point 24: 1,200 fake jobs pushed one answer past the CLI's 16 MiB cap; pages stay small
    import asyncio

    from cod.ledger.service import DEFAULT_QUEUE_PAGE, MAX_QUEUE_PAGE
    from tests.helpers import run_cod
    running, client = served
    made = []
    for n in range(DEFAULT_QUEUE_PAGE * 2 + 5):
        job_spec = dict(spec(DATA), args=[f"job {n}"])
        index, judgement, _ = running.ledger.report_evidence(job_spec, agreeing(job_spec, 2))
        made.append((judgement.job, index))
    first = await client.queue()
    assert [(j["job"], j["entry"]) for j in first["jobs"]] == made[:DEFAULT_QUEUE_PAGE]
    assert first["next"] == made[DEFAULT_QUEUE_PAGE - 1][1]
    second = await client.queue(first["next"], 3)
    assert [(j["job"], j["entry"]) for j in second["jobs"]] == made[DEFAULT_QUEUE_PAGE:DEFAULT_QUEUE_PAGE + 3]
    last = await client.queue(made[-3][1])
    assert [j["job"] for j in last["jobs"]] == [m[0] for m in made[-2:]] and last["next"] is None
    assert [(j["job"], j["entry"]) for j in await client.queue_all()] == made
    for bad in (0, MAX_QUEUE_PAGE + 1):
        await refused(running, client, client.queue(None, bad), 400, "BadRequest", "limit")
    table = await asyncio.to_thread(run_cod, tmp_path, "moderation", "queue", "--ledger", running.url, "--csv")
    assert table.returncode == 0, table.stderr
    assert [line.split(",")[1] for line in table.stdout.splitlines()[1:]] == [m[0] for m in made]


async def test_a_second_ledger_on_one_data_dir_is_refused(tmp_path: Path) -> None:
    """A second round of Stage 9 point 36: two `cod ledger serve` on one --data-dir both started (the
    same log key on two ports); the second served a stale tree and refused every append with "UNIQUE
    constraint failed: entries.idx ... check the disk". The second is refused at start, the first
    serves on, and a stopped ledger's lock is gone."""
    blessed_ledger(tmp_path).close()
    first = await start_ledger(tmp_path / "ledger")
    try:
        size, checkpoint = first.ledger.size, await LedgerClient(first.url).checkpoint()
        with pytest.raises(LocalPathError, match="is in use by another cod process"):
            second = await start_ledger(tmp_path / "ledger")
            await second.stop()
        assert (first.ledger.size, await LedgerClient(first.url).checkpoint()) == (size, checkpoint)
    finally:
        await first.stop()
    again = await start_ledger(tmp_path / "ledger")
    await again.stop()


async def test_lone_fakes_posted_first_do_not_lock_out_the_honest_evidence(served: Any) -> None:
    """Issue 19 point 21, second round, over HTTP: 8 fabricated results under one throw-away key each,
    posted before the honest nodes; the honest evidence, posted twice at once, is one new entry (SPEC
    12.5 rule 8) and its keys are shown to the moderator; a 9th lone fake is then refused."""
    from cod.ledger.evidence import MAX_RESULTS

    from .bkit import cid, throw_away
    running, client = served
    job_spec = spec(DATA)
    for r in range(MAX_RESULTS):
        await client.evidence(job_spec, [statement(job_spec, throw_away(r), cid(f"fabricated {r}"))])
    honest = agreeing(job_spec, 3)
    answers = await asyncio.gather(client.evidence(job_spec, honest), client.evidence(job_spec, honest))
    assert sorted(a["new"] for a in answers) == [False, True] and answers[0]["entry"] == answers[1]["entry"]
    signers = (await client.job(answers[0]["job"]))["eligibility"]["signers"]
    assert {n.node_id for n in NODES[:3]} <= {s["node"] for s in signers} and len(signers) == 3 + MAX_RESULTS - 1
    late = [statement(job_spec, throw_away(99), cid("fabricated late"))]
    await refused(running, client, client.evidence(job_spec, late), 422, "EvidenceFull",
                  "does not outrank the weakest kept")
