"""Issue 19 point 19: every statement a ledger's moderators and root key holders sign names the
ledger (its origin, SPEC.md 12.4 "Versions"), so a statement signed for ledger A counts on A only.

The v1 kinds, which name no ledger, stay valid in a log that holds them (a log written before the
v2 kinds replays and verifies to the same state) but are never appended again. The old-format
log below is built by hand from SPEC.md's v1 text (canonical JSON, Ed25519 over the statement),
not with the signing helpers.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from cod.errors import LedgerRefused
from cod.identity import Identity
from cod.ledger import entries
from cod.ledger.audit import audit_dir
from cod.ledger.client import LedgerClient
from cod.ledger.entries import EntryRefused
from cod.ledger.log import Ledger
from cod.ledger.server import start_ledger
from tests.helpers import run_cod
from tests.ledger.bkit import (DATA, MOD, MOD2, ORIGIN, RESULT, ROOTS, STRANGER, agreeing, blessed_ledger, governed,
                               job_of, spec)

OTHER_ORIGIN = "other.example/ledger"


def refused(call: Any, *args: Any) -> EntryRefused:
    with pytest.raises(EntryRefused) as info:
        call(*args)
    return info.value


def assert_wrong_ledger(exc: EntryRefused, signed_for: str, posted_to: str) -> None:
    assert (exc.status, exc.error) == (422, "WrongLedger"), exc.message
    assert repr(signed_for) in exc.message and repr(posted_to) in exc.message, exc.message


def test_governance_signed_for_ledger_a_does_not_govern_ledger_b(tmp_path: Path) -> None:
    a = Ledger.init(tmp_path / "a", [r.node_id for r in ROOTS], 2, origin=ORIGIN)
    b = Ledger.init(tmp_path / "b", [r.node_id for r in ROOTS], 2, origin=OTHER_ORIGIN)
    proposal = entries.sign_proposal(ROOTS[0], origin=ORIGIN, action="add", moderator=STRANGER.node_id)
    _, pid = a.propose(proposal)
    approval = entries.sign_approval(ROOTS[1], pid, origin=ORIGIN)
    a.approve(approval)
    assert a.moderators() == [STRANGER.node_id]
    # anyone posts A's two statements to B (the same root keys govern B): B refuses both
    before = b.size, b.checkpoint()
    assert_wrong_ledger(refused(b.propose, proposal), ORIGIN, OTHER_ORIGIN)
    assert_wrong_ledger(refused(b.approve, approval), ORIGIN, OTHER_ORIGIN)
    assert_wrong_ledger(refused(b.append_signed, [proposal]), ORIGIN, OTHER_ORIGIN)
    assert b.moderators() == [] and (b.size, b.checkpoint()) == before
    # the origin is signed: rewriting it to B's breaks the root key's signature
    moved = dict(proposal, statement=dict(proposal["statement"], origin=OTHER_ORIGIN))
    exc = refused(b.propose, moved)
    assert (exc.status, exc.error) == (422, "BadSignature")
    assert b.moderators() == []


def test_a_decision_and_a_blessing_signed_for_a_are_refused_by_b(tmp_path: Path) -> None:
    # two ledgers with the same history (MOD moderates both, DATA blessed, the same job eligible at the same entry)
    a = blessed_ledger(tmp_path, name="a")
    b = blessed_ledger(tmp_path, origin=OTHER_ORIGIN, name="b")
    s = spec(DATA)
    index_a, _, _ = a.report_evidence(s, agreeing(s, 2))
    index_b, _, _ = b.report_evidence(s, agreeing(s, 2))
    assert index_a == index_b
    decision = entries.sign_decision(MOD, origin=ORIGIN, job=job_of(s), result=RESULT, action="approve",
                                     datacap=1 << 40, reason="for A", eligibility=index_a, supersedes=None)
    a.decide(decision)
    assert a.job(job_of(s))["state"] == "approved"
    assert_wrong_ledger(refused(b.decide, decision), ORIGIN, OTHER_ORIGIN)
    assert b.job(job_of(s))["state"] == "eligible" and b.result(RESULT)["approved"] is False
    bless = entries.sign_bless_batch(MOD, {RESULT: [1]}, origin=ORIGIN)
    a.bless([bless])
    assert_wrong_ledger(refused(b.bless, [bless]), ORIGIN, OTHER_ORIGIN)
    assert RESULT not in b.state.blessed


async def test_the_service_answers_422_wrong_ledger_and_the_cli_signs_for_its_ledger(tmp_path: Path) -> None:
    root_key = tmp_path / "root.key"
    root = Identity.create_key_file(root_key)
    Ledger.init(tmp_path / "ledger", [root.node_id], 1, origin=OTHER_ORIGIN).close()
    running = await start_ledger(tmp_path / "ledger")
    try:
        client = LedgerClient(running.url)
        assert await client.origin() == OTHER_ORIGIN
        size = running.ledger.size
        with pytest.raises(LedgerRefused) as caught:
            await client.propose(entries.sign_proposal(root, origin=ORIGIN, action="add", moderator=MOD2.node_id))
        assert (caught.value.status, caught.value.error) == (422, "WrongLedger")
        assert f"signed for the ledger {ORIGIN!r}" in caught.value.message and running.ledger.size == size
        # what `cod ledger moderator propose` signs names the ledger it asked (GET /v1/info)
        done = await asyncio.to_thread(run_cod, tmp_path, "ledger", "moderator", "propose", "add", MOD2.node_id,
                                       "--key", str(root_key), "--ledger", running.url, "--json")
        assert done.returncode == 0, done.stderr
        leaf = json.loads(running.ledger.entries(size, size + 1)[0])
        assert leaf["type"] == "cod/ledger/proposal/v2" and leaf["statement"]["origin"] == OTHER_ORIGIN
        assert running.ledger.moderators() == [MOD2.node_id]
    finally:
        await running.stop()


# --- logs written before the v2 kinds --------------------------------------------------------

def canonical(value: Any) -> bytes:
    """SPEC.md 12.4: keys sorted by code point, no white space, integers only, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def v1(key: Identity, kind: str, **fields: Any) -> dict[str, Any]:
    """A v1 signed entry as SPEC.md 12.4 wrote it before the origin field: {"type", "statement", "signature"}."""
    statement = {"type": f"cod/ledger/{kind}/v1", **fields}
    signature = key.signing_key.sign(canonical(statement)).signature
    return {"type": statement["type"], "statement": statement, "signature": base64.b64encode(signature).decode()}


def v1_proposal(root: Identity, action: str, moderator: Identity, nonce: str) -> tuple[dict[str, Any], str]:
    signed = v1(root, "proposal", action=action, moderator=moderator.node_id, proposer=root.node_id, nonce=nonce)
    return signed, hashlib.sha256(canonical(signed["statement"])).hexdigest()


def v1_approval(root: Identity, pid: str) -> dict[str, Any]:
    return v1(root, "approval", proposal=pid, approver=root.node_id)


def append_as_stored(ledger: Ledger, *signed: dict[str, Any]) -> None:
    """Write leaves the way a ledger of before the v2 kinds did: applied as a replay applies them
    (the rules of the log's own kinds), stored with their hashes, derived rows and checkpoint."""
    state = ledger.state
    apply = state.apply

    def as_replayed(*args: Any, **kw: Any) -> Any:
        return apply(*args, **dict(kw, appending=False))

    state.apply = as_replayed  # type: ignore[method-assign]
    try:
        ledger._append([canonical(s) for s in signed])
    finally:
        del state.apply


def old_format_log(tmp: Path) -> tuple[Path, dict[str, Any]]:
    """A ledger whose governance, blessing and decision leaves are all v1, including the sequence
    point 20 closes (a stale v1 proposal approved after its moderator's add and removal), which the
    v1 rules of SPEC.md 12.6 accepted: its replay must keep that outcome."""
    ledger = Ledger.init(tmp / "ledger", [r.node_id for r in ROOTS], 2, origin=ORIGIN)
    p_mod, pid_mod = v1_proposal(ROOTS[0], "add", MOD, "01" * 16)
    append_as_stored(ledger, p_mod, v1_approval(ROOTS[1], pid_mod))
    old, pid_old = v1_proposal(ROOTS[0], "add", MOD2, "02" * 16)
    add, pid_add = v1_proposal(ROOTS[1], "add", MOD2, "03" * 16)
    remove, pid_remove = v1_proposal(ROOTS[1], "remove", MOD2, "04" * 16)
    append_as_stored(ledger, old, add, v1_approval(ROOTS[2], pid_add), remove, v1_approval(ROOTS[2], pid_remove))
    assert ledger.moderators() == [MOD.node_id]
    append_as_stored(ledger, v1_approval(ROOTS[1], pid_old))   # v1: MOD2 applies again, so it is added
    append_as_stored(ledger, v1(MOD, "bless", signer=MOD.node_id, nonce="05" * 16, source="list",
                                inputs=[{"cid": DATA, "deals": [3, 7]}]))
    s = spec(DATA)
    index, judgement, _ = ledger.report_evidence(s, agreeing(s, 2))
    assert judgement.eligible
    decision = v1(MOD, "decision", job=job_of(s), result=RESULT, action="approve", datacap=1 << 40, reason="v1",
                  moderator=MOD.node_id, eligibility=index, supersedes=None)
    append_as_stored(ledger, decision)
    facts = {"size": ledger.size, "checkpoint": ledger.checkpoint(), "moderators": sorted([MOD.node_id, MOD2.node_id]),
             "job": job_of(s), "pid_mod": pid_mod, "eligibility": index}
    ledger.close()
    return tmp / "ledger", facts


def test_an_old_format_log_replays_and_verifies_to_the_same_state(tmp_path: Path) -> None:
    data_dir, facts = old_format_log(tmp_path)
    assert audit_dir(data_dir) == []                     # every v1 signature checked, every v1 rule replayed
    done = run_cod(tmp_path, "ledger", "verify", "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    ledger = Ledger.open(data_dir)
    assert (ledger.size, ledger.checkpoint()) == (facts["size"], facts["checkpoint"])
    assert ledger.moderators() == facts["moderators"]
    assert ledger.state.blessed == {DATA: 9}   # leaf 9: genesis, 8 governance leaves, the batch
    answer = ledger.result(RESULT)
    assert answer["approved"] is True and answer["datacap"] == 1 << 40 and answer["job"] == facts["job"]
    ledger.close()


def test_a_new_post_of_an_old_kind_is_refused(tmp_path: Path) -> None:
    data_dir, facts = old_format_log(tmp_path)
    ledger = Ledger.open(data_dir)
    before = ledger.size, ledger.checkpoint()
    pending, pid = v1_proposal(ROOTS[0], "add", STRANGER, "06" * 16)
    for call, signed in [(ledger.propose, pending), (ledger.append_signed, [pending]),
                         (ledger.approve, v1_approval(ROOTS[2], facts["pid_mod"])),
                         (ledger.bless, [v1(MOD, "bless", signer=MOD.node_id, nonce="07" * 16, source="list",
                                            inputs=[{"cid": RESULT, "deals": []}])]),
                         (ledger.decide, v1(MOD, "decision", job=facts["job"], result=RESULT, action="reject",
                                            datacap=0, reason="v1 again", moderator=MOD.node_id,
                                            eligibility=facts["eligibility"], supersedes=facts["size"] - 1))]:
        exc = refused(call, signed)
        assert (exc.status, exc.error) == (422, "OldKind"), exc.message
        assert "name no ledger" in exc.message and f"this ledger's ({ORIGIN})" in exc.hint
    # a leaf of the log posted again is an old kind too (not a replay that a client would retry)
    exc = refused(ledger.approve, v1_approval(ROOTS[1], facts["pid_mod"]))
    assert exc.error == "OldKind"
    assert (ledger.size, ledger.checkpoint()) == before and STRANGER.node_id not in ledger.moderators()
    # v2 statements are taken on the same log: MOD (added by v1 entries) decides again
    ledger.decide(entries.sign_decision(MOD, origin=ORIGIN, job=facts["job"], result=RESULT, action="reject",
                                        datacap=0, reason="v2", eligibility=facts["eligibility"],
                                        supersedes=facts["size"] - 1))
    assert ledger.job(facts["job"])["state"] == "rejected"
    ledger.close()
    assert audit_dir(data_dir) == []


def test_a_pending_v1_proposal_cannot_be_approved_by_a_v2_approval(tmp_path: Path) -> None:
    ledger = Ledger.init(tmp_path / "ledger", [r.node_id for r in ROOTS], 2, origin=ORIGIN)
    pending, pid = v1_proposal(ROOTS[0], "add", STRANGER, "08" * 16)
    append_as_stored(ledger, pending)
    exc = refused(ledger.approve, entries.sign_approval(ROOTS[1], pid, origin=ORIGIN))
    assert (exc.status, exc.error) == (409, "Stale") and "names no ledger" in exc.message
    assert ledger.moderators() == []


def test_the_audit_names_a_statement_of_another_ledger_written_into_the_log(tmp_path: Path) -> None:
    """An insider with the log key writes B's statement into A, bypassing the checks: the audit catches it."""
    ledger = governed(tmp_path)
    foreign = entries.parse_signed(entries.sign_proposal(ROOTS[0], origin=OTHER_ORIGIN, action="add",
                                                         moderator=STRANGER.node_id))
    state = ledger.state

    def lax(i: int, leaf: bytes, **kw: Any) -> list[Any]:
        state.skip(leaf)
        return []

    state.apply = lax  # type: ignore[method-assign]
    at = ledger._append([entries.leaf_bytes(foreign)], [foreign])[0]
    ledger.close()
    found = "\n".join(audit_dir(tmp_path / "ledger"))
    assert f"entry {at} is not valid: the {entries.PROPOSAL} statement was signed for the ledger " \
           f"{OTHER_ORIGIN!r}, not for this one ({ORIGIN!r})" in found
