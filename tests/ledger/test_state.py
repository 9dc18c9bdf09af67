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


def test_throw_away_keys_posting_first_cannot_lock_out_the_honest_result(tmp_path: Path) -> None:
    """A second round of point 21: the spec is public (GET /v1/jobs on any node that ran it), so a
    watcher posts before the honest nodes: MAX_RESULTS fabricated results, one throw-away key each
    (8 statements, far under any cap). The honest nodes' statements must still be taken (SPEC 12.5
    rule 8: a group of two or more displaces a lone statement from the derived evidence)."""
    from cod.ledger.evidence import MAX_RESULTS
    from tests.ledger.bkit import cid, key, statement
    ledger = blessed_ledger(tmp_path)
    s = spec(DATA)
    for r in range(MAX_RESULTS):
        ledger.report_evidence(s, [statement(s, key(170 + r), cid(f"fabricated {r}"))])
    size = ledger.size
    honest = agreeing(s, 3)
    _, j, new = ledger.report_evidence(s, honest)
    # 3 of 10 (8 - 1 evicted fakes + 3): no majority, but the honest group is recorded for the moderator
    assert new and ledger.size == size + 1
    assert {st["statement"]["node"] for st in j.statements} >= {n.node_id for n in NODES[:3]}
    assert len(j.statements) == 3 + MAX_RESULTS - 1
    # the evicted group is the weakest: 1 statement, ranked last by CID among equals (hand-derived)
    fakes = sorted(cid(f"fabricated {r}") for r in range(MAX_RESULTS))
    assert fakes[-1] not in {st["statement"]["result"] for st in j.statements}
    assert all(f in {st["statement"]["result"] for st in j.statements} for f in fakes[:-1])


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


def fake_results(ledger: Ledger, s: dict[str, Any], first_key: int, groups: int, size: int, tag: str) -> list[str]:
    """``groups`` fabricated results, each posted under ``size`` throw-away keys of its own."""
    from tests.ledger.bkit import cid, statement, throw_away
    fakes = []
    for r in range(groups):
        fake = cid(f"{tag} {r}")
        ledger.report_evidence(s, [statement(s, throw_away(first_key + r * size + i), fake) for i in range(size)])
        fakes.append(fake)
    return fakes


def results_of(ledger: Ledger, job: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for st in ledger.state.eligibility[job].statements:
        counts[st["statement"]["result"]] = counts.get(st["statement"]["result"], 0) + 1
    return counts


def test_fakes_posted_again_after_the_honest_result_cannot_evict_it(tmp_path: Path) -> None:
    from cod.ledger.evidence import MAX_RESULTS
    from tests.ledger.bkit import cid, statement, throw_away
    ledger = blessed_ledger(tmp_path)
    s, job = spec(DATA), job_of(spec(DATA))
    fakes = sorted(fake_results(ledger, s, 300, MAX_RESULTS, 1, "fabricated"))
    ledger.report_evidence(s, agreeing(s, 3))
    before = snapshot(ledger)
    # 8 more fabricated results under fresh keys, one statement each: none is stronger than a kept group
    for r in range(MAX_RESULTS):
        exc = refused(ledger.report_evidence, s, [statement(s, throw_away(400 + r), cid(f"again {r}"))])
        assert (exc.status, exc.error) == (422, "EvidenceFull")
        assert "does not outrank the weakest kept" in exc.message
    # the evicted result again, under its own key: as strong as the weakest kept, and the recorded one wins ties
    evicted = next(k for k in range(MAX_RESULTS) if cid(f"fabricated {k}") == fakes[-1])
    again = [statement(s, throw_away(300 + evicted), fakes[-1])]
    assert refused(ledger.report_evidence, s, again).error == "EvidenceFull"
    assert snapshot(ledger) == before
    # a 2-key fake evicts the weakest 1-key fake (the greatest CID of the 1-statement ones), never the 3 honest
    fake2 = cid("two keys")
    ledger.report_evidence(s, [statement(s, throw_away(500 + i), fake2) for i in range(2)])
    assert results_of(ledger, job) == {RESULT: 3, fake2: 2, **{f: 1 for f in fakes[:-2]}}
    # a node whose result is recorded is still taken (its group is not full)
    _, j, new = ledger.report_evidence(s, [statement(s, NODES[3])])
    assert new and results_of(ledger, job)[RESULT] == 4
    # the evicted key comes back in a stronger group: its job is still counted once for it (12.7 signers)
    back = throw_away(300 + evicted)
    ledger.report_evidence(s, [statement(s, back, fakes[-1]), statement(s, throw_away(510), fakes[-1])])
    assert results_of(ledger, job) == {RESULT: 4, fake2: 2, fakes[-1]: 2, **{f: 1 for f in fakes[:-3]}}
    assert ledger.state.signers[back.node_id].jobs == 1
    # fakes of 4 throw-away keys each, after the honest result: they displace the lone fakes, never a group of two
    lone = fakes[:-3]
    for r in range(MAX_RESULTS):
        four = [statement(s, throw_away(700 + 4 * r + i), cid(f"four {r}")) for i in range(4)]
        if r < len(lone):
            ledger.report_evidence(s, four)
        else:
            assert refused(ledger.report_evidence, s, four).error == "EvidenceFull"
    assert results_of(ledger, job) == {RESULT: 4, fake2: 2, fakes[-1]: 2,
                                       **{cid(f"four {r}"): 4 for r in range(len(lone))}}
    # the evicted statements stay in the log's earlier leaves; the replay derives the same state
    record = ledger.state.eligibility[job]
    ledger.close()
    assert Ledger.open(tmp_path / "ledger").state.eligibility[job] == record


def test_keys_a_moderator_approved_outrank_any_number_of_throw_away_keys(tmp_path: Path) -> None:
    # fakes with many throw-away keys each (8 x 8, a full job) posted first: honest nodes a moderator
    # approved before are kept; unapproved honest nodes are not (what rule 8 cannot stop, SPEC 12.5)
    from cod.jobspec import Input, JobSpec
    from cod.ledger.audit import audit_dir
    from cod.ledger.evidence import MAX_PER_RESULT, MAX_RESULTS
    from tests.ledger.bkit import MODULE, cid, statement, throw_away
    ledger = blessed_ledger(tmp_path)
    job1, elig = eligible_job(ledger)                       # NODES[0], NODES[1] agree
    ledger.decide(approve(job1, elig))
    assert set(ledger.state.vouched) == {NODES[0].node_id, NODES[1].node_id}
    s = JobSpec(module=MODULE, inputs=(Input(cid=DATA, path="/inputs/0"),), env=(("RUN", "2"),)).to_dict()
    job = job_of(s)
    fakes = sorted(fake_results(ledger, s, 600, MAX_RESULTS, MAX_PER_RESULT, "full"))
    assert len(ledger.state.eligibility[job].statements) == MAX_RESULTS * MAX_PER_RESULT
    # unapproved honest keys, 3 of them, are weaker than 8 throw-away keys: refused, nothing changes
    before = snapshot(ledger)
    exc = refused(ledger.report_evidence, s, [statement(s, NODES[2]), statement(s, NODES[3])])
    assert exc.error == "EvidenceFull" and snapshot(ledger) == before
    # with two approved keys the honest result is kept; the full fake with the greatest CID is evicted
    _, _, new = ledger.report_evidence(s, agreeing(s, 3))
    assert new and results_of(ledger, job) == {RESULT: 3, **{f: MAX_PER_RESULT for f in fakes[:-1]}}
    # 8 more full fakes under fresh keys cannot push it out
    before = snapshot(ledger)
    for r in range(MAX_RESULTS):
        more = [statement(s, throw_away(900 + r * MAX_PER_RESULT + i), cid(f"more {r}")) for i in range(MAX_PER_RESULT)]
        exc = refused(ledger.report_evidence, s, more)
        assert exc.error == "EvidenceFull"
    assert snapshot(ledger) == before
    # the replay and the audit apply the same rule (vouching derives from the log)
    ledger.close()
    assert audit_dir(tmp_path / "ledger") == []
    reopened = Ledger.open(tmp_path / "ledger")
    assert results_of(reopened, job) == {RESULT: 3, **{f: MAX_PER_RESULT for f in fakes[:-1]}}


def test_an_entry_that_evicts_what_rule_8_keeps_is_refused(tmp_path: Path) -> None:
    from cod.ledger.evidence import MAX_RESULTS, judge
    from cod.ledger.state import eligibility_entry
    ledger = blessed_ledger(tmp_path)
    s, job = spec(DATA), job_of(spec(DATA))
    fake_results(ledger, s, 300, MAX_RESULTS, 1, "fabricated")
    recorded = list(ledger.state.eligibility[job].statements)
    honest = agreeing(s, 3)
    # a forged entry that drops a fake the rule keeps (the smallest CID) instead of the one it evicts
    wrong = sorted(recorded, key=lambda st: st["statement"]["result"])[1:] + honest
    j = judge(s, wrong, ledger.state.blessed_by)
    leaf = entries.leaf_bytes(eligibility_entry(j))
    before = snapshot(ledger)
    exc = refused(ledger.state.apply, ledger.size, leaf)
    assert exc.error == "BadEvidence" and "that rule 8 of SPEC.md 12.5 does not evict" in exc.message
    assert snapshot(ledger) == before
    # the entry the rule gives is valid
    right = sorted(recorded, key=lambda st: st["statement"]["result"])[:-1] + honest
    _, got, _ = ledger.report_evidence(s, honest)
    assert sorted(map(str, got.statements)) == sorted(map(str, judge(s, right, ledger.state.blessed_by).statements))


def test_the_same_evidence_twice_at_once_is_one_entry(tmp_path: Path) -> None:
    import threading

    from cod.ledger.evidence import MAX_RESULTS
    ledger = blessed_ledger(tmp_path)
    s = spec(DATA)
    fake_results(ledger, s, 300, MAX_RESULTS, 1, "fabricated")
    size = ledger.size
    honest = agreeing(s, 3)
    barrier = threading.Barrier(2)
    out: list[Any] = []

    def post() -> None:
        barrier.wait()
        out.append(ledger.report_evidence(s, honest))

    threads = [threading.Thread(target=post) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(new for _, _, new in out) == [False, True] and out[0][0] == out[1][0] == size
    assert ledger.size == size + 1


def test_a_post_is_taken_whole_or_refused_when_rule_8_would_drop_part_of_it(tmp_path: Path) -> None:
    from cod.jobspec import Input, JobSpec
    from cod.ledger.evidence import MAX_RESULTS
    from tests.ledger.bkit import MODULE, statement, throw_away
    ledger = blessed_ledger(tmp_path)
    job1, elig = eligible_job(ledger)
    ledger.decide(approve(job1, elig))                      # NODES[0], NODES[1] approved
    s = JobSpec(module=MODULE, inputs=(Input(cid=DATA, path="/inputs/0"),), env=(("RUN", "3"),)).to_dict()
    job = job_of(s)
    big = fake_results(ledger, s, 1000, MAX_RESULTS - 1, 4, "four")
    (small,) = fake_results(ledger, s, 1100, 1, 2, "two")
    # the approved result displaces the weakest group (2 statements, 3 with the post's own): the post's
    # statement for it would be dropped, so the whole post is refused
    before = snapshot(ledger)
    exc = refused(ledger.report_evidence, s, agreeing(s, 2) + [statement(s, throw_away(1200), small)])
    assert exc.error == "EvidenceFull" and f"result {small} (3 statement(s), 0 of keys" in exc.message
    assert snapshot(ledger) == before
    _, _, new = ledger.report_evidence(s, agreeing(s, 2))
    assert new and results_of(ledger, job) == {RESULT: 2, **{f: 4 for f in big}}
