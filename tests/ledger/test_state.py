"""The state machine: governance (K of the root keys), decisions, replays, refusals that change nothing."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from cod.ledger import entries
from cod.ledger.entries import EntryRefused
from cod.ledger.log import Ledger
from cod.ledger.state import LedgerState
from tests.ledger.bkit import (DATA, MOD, MOD2, NODES, ORIGIN, OTHER, RESULT, ROOTS, STRANGER, agreeing, blessed_ledger,
                               governed, job_of, spec)


def refused(call: Any, *args: Any) -> EntryRefused:
    with pytest.raises(EntryRefused) as info:
        call(*args)
    return info.value


def snapshot(ledger: Ledger) -> tuple[Any, ...]:
    s = ledger.state
    return (ledger.size, ledger.checkpoint(), dict(s.moderators), dict(s.blessed), dict(s.eligibility),
            dict(s.decisions), dict(s.proposals), len(s.seen))


def test_moderator_added_at_the_kth_signature(tmp_path: Path) -> None:
    ledger = Ledger.init(tmp_path / "l", [r.node_id for r in ROOTS], 3, origin=ORIGIN)
    index, pid = ledger.propose(entries.sign_proposal(ROOTS[1], origin=ORIGIN, action="add", moderator=MOD.node_id))
    assert ledger.proposal(pid)["signatures"] == [ROOTS[1].node_id] and not ledger.proposal(pid)["in_effect"]
    assert ledger.approve(entries.sign_approval(ROOTS[0], pid, origin=ORIGIN))[1] is False
    assert ledger.moderators() == []
    at, in_effect = ledger.approve(entries.sign_approval(ROOTS[2], pid, origin=ORIGIN))
    assert in_effect and ledger.moderators() == [MOD.node_id]
    assert ledger.proposal(pid)["effective_entry"] == at
    exc = refused(ledger.approve, entries.sign_approval(ROOTS[0], pid, origin=ORIGIN))   # the same bytes again
    assert (exc.status, exc.error) == (409, "Replayed")
    exc = refused(ledger.approve, entries.sign_approval(ROOTS[1], pid, origin=ORIGIN))  # the proposer, after the effect
    assert (exc.status, exc.error) == (409, "AlreadyInEffect")


def test_signed_twice_unknown_and_not_root(tmp_path: Path) -> None:
    ledger = Ledger.init(tmp_path / "l", [r.node_id for r in ROOTS], 2, origin=ORIGIN)
    _, pid = ledger.propose(entries.sign_proposal(ROOTS[0], origin=ORIGIN, action="add", moderator=MOD.node_id))
    before = snapshot(ledger)
    exc = refused(ledger.approve, entries.sign_approval(ROOTS[0], pid, origin=ORIGIN))   # the proposer again
    assert (exc.status, exc.error) == (409, "SignedTwice")
    exc = refused(ledger.approve, entries.sign_approval(STRANGER, pid, origin=ORIGIN))
    assert (exc.status, exc.error) == (403, "NotAuthorized")
    exc = refused(ledger.approve, entries.sign_approval(ROOTS[1], "ab" * 32, origin=ORIGIN))
    assert (exc.status, exc.error) == (404, "NotFound")
    exc = refused(ledger.propose, entries.sign_proposal(MOD, origin=ORIGIN, action="add", moderator=MOD.node_id))
    assert (exc.status, exc.error) == (403, "NotAuthorized")
    assert snapshot(ledger) == before


def test_replayed_proposal_and_no_op_changes(tmp_path: Path) -> None:
    ledger = governed(tmp_path)
    signed = entries.sign_proposal(ROOTS[0], origin=ORIGIN, action="add", moderator=MOD2.node_id)
    ledger.propose(signed)
    exc = refused(ledger.propose, signed)
    assert (exc.status, exc.error) == (409, "Replayed")
    exc = refused(ledger.propose, entries.sign_proposal(ROOTS[0], origin=ORIGIN, action="add", moderator=MOD.node_id))
    assert (exc.status, exc.error) == (409, "AlreadyInEffect")
    exc = refused(ledger.propose, entries.sign_proposal(ROOTS[0], origin=ORIGIN, action="remove",
                                                        moderator=STRANGER.node_id))
    assert (exc.status, exc.error) == (409, "AlreadyInEffect")


def test_two_proposals_for_one_change_the_second_goes_stale(tmp_path: Path) -> None:
    ledger = governed(tmp_path)
    _, p1 = ledger.propose(entries.sign_proposal(ROOTS[0], origin=ORIGIN, action="add", moderator=MOD2.node_id))
    _, p2 = ledger.propose(entries.sign_proposal(ROOTS[1], origin=ORIGIN, action="add", moderator=MOD2.node_id))
    assert ledger.approve(entries.sign_approval(ROOTS[2], p1, origin=ORIGIN))[1]
    exc = refused(ledger.approve, entries.sign_approval(ROOTS[0], p2, origin=ORIGIN))
    assert (exc.status, exc.error) == (409, "Stale")


def propose(ledger: Ledger, root: Any, action: str, who: Any) -> str:
    return ledger.propose(entries.sign_proposal(root, origin=ORIGIN, action=action, moderator=who.node_id))[1]


def approve_change(ledger: Ledger, root: Any, pid: str) -> tuple[int, bool]:
    return ledger.approve(entries.sign_approval(root, pid, origin=ORIGIN))


def test_a_stale_proposal_cannot_re_add_a_removed_moderator(tmp_path: Path) -> None:
    # issue 19 point 20, the exact sequence: K = 2 of 3; an "add M" stays pending through M's add and removal
    ledger = Ledger.init(tmp_path / "ledger", [r.node_id for r in ROOTS], 2, origin=ORIGIN)
    old = propose(ledger, ROOTS[0], "add", MOD2)                       # leaf 1, 1 of 2 signatures
    added = propose(ledger, ROOTS[1], "add", MOD2)                     # leaf 2
    assert approve_change(ledger, ROOTS[2], added) == (3, True)        # MOD2 added at leaf 3
    removed = propose(ledger, ROOTS[1], "remove", MOD2)                # leaf 4
    assert approve_change(ledger, ROOTS[2], removed) == (5, True)      # MOD2 removed at leaf 5
    assert ledger.moderators() == []
    before = snapshot(ledger)
    exc = refused(approve_change, ledger, ROOTS[1], old)               # one more signature, later
    assert (exc.status, exc.error) == (409, "Stale"), exc.message
    assert f"{MOD2.node_id} was removed at entry 5, after the proposal (entry 1)" in exc.message
    assert snapshot(ledger) == before and ledger.moderators() == []
    assert ledger.proposal(old)["stale"] is True and ledger.proposal(removed)["stale"] is False
    exc = refused(approve_change, ledger, ROOTS[2], old)
    assert exc.error == "Stale"
    # a proposal made after the change counts as before: the root keys can still re-add MOD2, with K signatures
    again = propose(ledger, ROOTS[0], "add", MOD2)
    assert approve_change(ledger, ROOTS[1], again)[1] and ledger.moderators() == [MOD2.node_id]
    # the replay (a restart) and the audit apply the same rule to the log
    ledger.close()
    reopened = Ledger.open(tmp_path / "ledger")
    assert reopened.moderators() == [MOD2.node_id]
    assert refused(approve_change, reopened, ROOTS[1], old).error == "Stale"


def test_a_stale_removal_cannot_remove_a_re_added_moderator(tmp_path: Path) -> None:
    ledger = governed(tmp_path)                                         # MOD a moderator, K = 2 of 3
    old = propose(ledger, ROOTS[0], "remove", MOD)
    approve_change(ledger, ROOTS[2], propose(ledger, ROOTS[1], "remove", MOD))
    approve_change(ledger, ROOTS[2], propose(ledger, ROOTS[1], "add", MOD))
    assert ledger.moderators() == [MOD.node_id]
    exc = refused(approve_change, ledger, ROOTS[1], old)
    assert (exc.status, exc.error) == (409, "Stale") and "was added at entry" in exc.message
    assert ledger.moderators() == [MOD.node_id]


def test_a_change_of_another_moderator_leaves_a_proposal_open(tmp_path: Path) -> None:
    ledger = governed(tmp_path)
    pending = propose(ledger, ROOTS[0], "add", MOD2)
    approve_change(ledger, ROOTS[2], propose(ledger, ROOTS[1], "remove", MOD))
    assert ledger.proposal(pending)["stale"] is False
    assert approve_change(ledger, ROOTS[1], pending)[1] and ledger.moderators() == [MOD2.node_id]


def test_removed_moderator_cannot_sign(tmp_path: Path) -> None:
    ledger = blessed_ledger(tmp_path)
    _, pid = ledger.propose(entries.sign_proposal(ROOTS[2], origin=ORIGIN, action="remove", moderator=MOD.node_id))
    ledger.approve(entries.sign_approval(ROOTS[0], pid, origin=ORIGIN))
    assert ledger.moderators() == []
    exc = refused(ledger.bless, [entries.sign_bless_batch(MOD, {OTHER: []}, origin=ORIGIN)])
    assert (exc.status, exc.error) == (403, "NotAuthorized")
    assert OTHER not in ledger.state.blessed


def eligible_job(ledger: Ledger) -> tuple[str, int]:
    s = spec(DATA)
    index, judgement, new = ledger.report_evidence(s, agreeing(s, 2))
    assert judgement.eligible and new
    return job_of(s), index


def approve(job: str, eligibility: int, supersedes: int | None = None, who: Any = MOD, **over: Any) -> dict[str, Any]:
    fields = dict(job=job, result=RESULT, action="approve", datacap=1 << 40, reason="useful",
                  eligibility=eligibility, supersedes=supersedes)
    fields.update(over)
    return entries.sign_decision(who, origin=ORIGIN, **fields)


def test_decisions_supersede_by_new_entries_never_edits(tmp_path: Path) -> None:
    ledger = blessed_ledger(tmp_path)
    job, elig = eligible_job(ledger)
    first = ledger.decide(approve(job, elig))
    assert ledger.job(job)["state"] == "approved"
    stale = refused(ledger.decide, approve(job, elig, reason="again"))          # supersedes null, but one exists
    assert (stale.status, stale.error) == (409, "Stale")
    second = ledger.decide(approve(job, elig, supersedes=first, action="reject", datacap=0, reason="bad data"))
    assert ledger.job(job)["state"] == "rejected"
    assert [d["entry"] for d in ledger.job(job)["decisions"]] == [first, second]
    replay = refused(ledger.decide, approve(job, elig))
    assert (replay.status, replay.error) == (409, "Replayed")
    stale = refused(ledger.decide, approve(job, elig, supersedes=first, reason="late"))
    assert stale.error == "Stale"


def test_decision_refusals(tmp_path: Path) -> None:
    ledger = blessed_ledger(tmp_path)
    job, elig = eligible_job(ledger)
    before = snapshot(ledger)
    cases = [
        (approve(job, elig, who=STRANGER), 403, "NotAuthorized"),
        (approve(job, elig, who=ROOTS[0]), 403, "NotAuthorized"),
        (approve(job, elig - 1), 409, "Stale"),
        (approve(job, elig, result=OTHER), 422, "NotEligible"),
        (approve(job_of(spec(OTHER)), elig), 404, "NotFound"),
        (approve(job, elig, datacap=0), 422, "BadDatacap"),
    ]
    for signed, status, error in cases:
        exc = refused(ledger.decide, signed)
        assert (exc.status, exc.error) == (status, error), exc.message
    forged = approve(job, elig)
    forged["statement"]["datacap"] = 1 << 50
    exc = refused(ledger.decide, forged)
    assert (exc.status, exc.error) == (422, "BadSignature")
    assert snapshot(ledger) == before


def test_decision_on_an_ineligible_job(tmp_path: Path) -> None:
    ledger = blessed_ledger(tmp_path)
    s = spec(OTHER)
    index, judgement, _ = ledger.report_evidence(s, agreeing(s))
    assert not judgement.eligible
    exc = refused(ledger.decide, approve(job_of(s), index))
    assert (exc.status, exc.error) == (422, "NotEligible")


def test_evidence_grows_and_identical_evidence_is_no_new_entry(tmp_path: Path) -> None:
    ledger = blessed_ledger(tmp_path)
    s = spec(DATA)
    sts = agreeing(s, 3)
    i1, _, new1 = ledger.report_evidence(s, sts[:2])
    i2, j2, new2 = ledger.report_evidence(s, sts[:2])
    assert new1 and not new2 and i1 == i2
    i3, j3, new3 = ledger.report_evidence(s, [sts[2]])     # merged with the two recorded
    assert new3 and i3 > i1 and len(j3.statements) == 3 and len(j3.nodes) == 3
    i4, _, new4 = ledger.report_evidence(s, [sts[0]])
    assert not new4 and i4 == i3


def test_evidence_judged_again_after_a_blessing(tmp_path: Path) -> None:
    ledger = blessed_ledger(tmp_path)
    s = spec(DATA, OTHER)
    _, j, _ = ledger.report_evidence(s, agreeing(s))
    assert not j.eligible
    ledger.bless([entries.sign_bless_batch(MOD, {OTHER: [1]}, origin=ORIGIN)])
    index, j, new = ledger.report_evidence(s, agreeing(s))
    assert j.eligible and new and ledger.queue()[0]["entry"] == index


def test_refused_leaf_changes_nothing_and_rollback_undoes_a_batch(tmp_path: Path) -> None:
    ledger = blessed_ledger(tmp_path)
    before = snapshot(ledger)
    good = entries.sign_bless_batch(MOD, {OTHER: [1]}, origin=ORIGIN)
    bad = entries.sign_bless_batch(STRANGER, {NODES_CID: [1]}, origin=ORIGIN)
    exc = refused(ledger.bless, [good, bad])
    assert exc.error == "NotAuthorized"
    assert snapshot(ledger) == before and OTHER not in ledger.state.blessed
    dup = refused(ledger.bless, [good, copy.deepcopy(good)])   # the same leaf twice in one request
    assert dup.error == "Replayed" and snapshot(ledger) == before
    ledger.bless([good])
    assert ledger.state.blessed[OTHER] == before[0]


NODES_CID = spec(DATA)["module"]


def test_genesis_only_at_leaf_zero() -> None:
    state = LedgerState()
    leaf = entries.leaf_bytes(entries.parse_signed(entries.sign_refusal(NODES[0], job=DATA, policy="fil-plus-only",
                                                                        inputs=[], reason="r")))
    exc = refused(state.apply, 0, leaf)
    assert "genesis" in exc.message and state.size == 0


def test_evidence_too_big_for_a_leaf_is_413_and_stores_nothing(tmp_path: Path) -> None:
    from cod.jobspec import Input, JobSpec
    from tests.ledger.bkit import MODULE, statement
    ledger = blessed_ledger(tmp_path)
    big = JobSpec(module=MODULE, inputs=(Input(cid=DATA),), env=tuple((f"V{i}", "x" * 1000) for i in range(70))).to_dict()
    before = snapshot(ledger)
    exc = refused(ledger.report_evidence, big, [statement(big, NODES[0]), statement(big, NODES[1])])
    assert (exc.status, exc.error) == (413, "TooLarge")
    assert snapshot(ledger) == before


@pytest.mark.parametrize("payload", [None, [], "x", 5, {"type": "cod/ledger/genesis/v1"},
                                     {"type": "cod/ledger/eligibility/v1", "statement": {}, "signature": ""}])
def test_append_signed_refuses_what_is_not_a_signed_entry(tmp_path: Path, payload: Any) -> None:
    ledger = governed(tmp_path)
    exc = refused(ledger.append_signed, [payload])
    assert (exc.status, exc.error) == (400, "BadEntry")
    assert ledger.size == 3


def test_a_forged_statement_added_to_recorded_evidence_is_refused(tmp_path: Path) -> None:
    ledger = blessed_ledger(tmp_path)
    s = spec(DATA)
    sts = agreeing(s, 3)
    ledger.report_evidence(s, sts[:2])
    before = snapshot(ledger)
    forged = copy.deepcopy(sts[2])
    forged["statement"]["fuel_used"] += 1
    exc = refused(ledger.report_evidence, s, [forged])
    assert (exc.status, exc.error) == (422, "BadSignature")
    exc = refused(ledger.report_evidence, s, [sts[0], forged])
    assert exc.error == "BadSignature" and snapshot(ledger) == before


@pytest.mark.xfail(strict=True, reason="stage 9 second round: throw-away keys that post first, one statement for each "
                   "of MAX_RESULTS fabricated results, lock the job: the honest nodes' result is refused for good")
def test_throw_away_keys_posting_first_cannot_lock_out_the_honest_result(tmp_path: Path) -> None:
    """A second round of point 21: the spec is public (GET /v1/jobs on any node that ran it), so a
    watcher posts before the honest nodes: MAX_RESULTS fabricated results, one throw-away key each
    (8 statements, far under any cap). The honest nodes' statements for the real result are then
    refused (EvidenceFull: "would name 9 results") however often they are posted."""
    from cod.ledger.evidence import MAX_RESULTS
    from tests.ledger.bkit import cid, key, statement
    ledger = blessed_ledger(tmp_path)
    s = spec(DATA)
    for r in range(MAX_RESULTS):
        ledger.report_evidence(s, [statement(s, key(170 + r), cid(f"fabricated {r}"))])
    honest = agreeing(s, 3)
    _, j, new = ledger.report_evidence(s, honest)
    assert new and j.eligible and j.result == RESULT


def test_throw_away_keys_cannot_lock_a_job_against_honest_evidence(tmp_path: Path) -> None:
    # issue 19 point 21: 2 honest statements, then throw-away keys fill the job; the honest third
    # node's statement must still be taken, and no single result may hold more than MAX_PER_RESULT
    from cod.ledger.evidence import MAX_PER_RESULT, MAX_RESULTS
    from tests.ledger.bkit import RESULT_B, cid, key, statement
    ledger = blessed_ledger(tmp_path)
    s = spec(DATA)
    honest = agreeing(s, 3)
    ledger.report_evidence(s, honest[:2])
    sybils = [statement(s, key(100 + n), RESULT_B) for n in range(62)]
    before = snapshot(ledger)
    exc = refused(ledger.report_evidence, s, sybils)
    assert exc.status == 422 and exc.error == "EvidenceFull" and snapshot(ledger) == before
    _, j, _ = ledger.report_evidence(s, sybils[:MAX_PER_RESULT])
    assert j.eligible and j.result == RESULT_B  # Sybils can win a vote (SPEC 12.5); they cannot lock the job
    assert refused(ledger.report_evidence, s, sybils[MAX_PER_RESULT:MAX_PER_RESULT + 1]).error == "EvidenceFull"
    # every other result slot filled with throw-away keys too
    n = 200
    for r in range(MAX_RESULTS - 2):
        fake = cid(f"fabricated {r}")
        ledger.report_evidence(s, [statement(s, key(n + i), fake) for i in range(MAX_PER_RESULT)])
        n += MAX_PER_RESULT
    index, j, new = ledger.report_evidence(s, [honest[2]])
    assert new and honest[2] in list(j.statements)
    assert len(j.statements) == 3 + MAX_PER_RESULT * (MAX_RESULTS - 1)
