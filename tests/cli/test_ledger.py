"""`cod ledger moderator approve` and `cod ledger notary` against a real ledger and a hostile proxy in front of
it: a root key holder signs a proposal it was shown, whose statement hashes to the ID it signs (Stage 9 point
18); a notary refuses an approval that a later entry of the log superseded, whatever the ledger answers (point 22)."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import nacl.signing

from cod.ledger import entries, tiles
from cod.ledger.note import CosignatureSigner
from cod.ledger.server import start_ledger
from verifier.demo_ledger import check_notary_answer

from ..helpers import run_cod
from ..hostile_ledger import HostileLedger
from ..ledger.bkit import MOD, MOD2, ORIGIN, RESULT, ROOTS, STRANGER, governed
from .conftest import Served


async def test_moderator_approve_shows_the_proposal_and_refuses_one_that_is_not_the_id(tmp_path: Path) -> None:
    ledger = governed(tmp_path, threshold=3)  # ROOTS[0] and ROOTS[1] voted MOD in; K = 3 of 3
    _, pid = ledger.propose(entries.sign_proposal(ROOTS[0], origin=ORIGIN, action="add", moderator=MOD2.node_id))
    ledger.close()
    key = tmp_path / "root2.key"
    key.write_bytes(ROOTS[1].signing_key.encode())
    key.chmod(0o600)
    running = await start_ledger(tmp_path / "ledger")

    def lie(path: str, status: int, body: bytes) -> bytes:  # the same ID, another moderator shown
        if path != "/v1/moderators":
            return body
        answer = json.loads(body)
        for p in answer["proposals"]:
            p["statement"] = dict(p["statement"], moderator=STRANGER.node_id)
            p["moderator"] = STRANGER.node_id
        return json.dumps(answer).encode()

    try:
        size = running.ledger.size
        async with HostileLedger(running.url, lie) as proxy:
            done = await asyncio.to_thread(run_cod, tmp_path, "ledger", "moderator", "approve", pid, "--key",
                                           str(key), "--ledger", proxy.url)
        assert done.returncode == 24, (done.stdout, done.stderr)
        assert f"does not hash to {pid}" in done.stderr and "nothing was signed" in done.stderr
        assert proxy.posts == [] and running.ledger.size == size
        done = await asyncio.to_thread(run_cod, tmp_path, "ledger", "moderator", "approve", pid, "--key", str(key),
                                       "--ledger", running.url)
        assert done.returncode == 0, done.stderr
        assert f"add moderator {MOD2.node_id}, proposed by {ROOTS[0].node_id}" in done.stderr
        (proposal,) = [p for p in running.ledger.proposals() if p["proposal_id"] == pid]
        assert proposal["signatures"] == [ROOTS[0].node_id, ROOTS[1].node_id]
        assert entries.proposal_id_of(proposal["statement"]) == pid
    finally:
        await running.stop()


# -- Stage 9 point 22: the notary's check shows that no later decision or eligibility entry undid an approval --

def _decide(served: Served, action: str, supersedes: int | None = None) -> int:
    e = served.running.ledger.job(served.a)["eligibility"]
    signed = entries.sign_decision(MOD, origin=ORIGIN, job=served.a, result=RESULT, action=action,
                                   datacap=(1 << 40) if action == "approve" else 0, reason="useful",
                                   eligibility=e["entry"], supersedes=supersedes)
    return int(served.running.ledger.decide(signed))


async def test_notary_refuses_an_approval_a_later_reject_superseded(served: Served) -> None:
    approval = _decide(served, "approve")
    url = served.running.url
    done = await served.cod("ledger", "notary", RESULT, "--ledger", url, "--json")
    assert done.returncode == 0, done.stderr
    standing = json.loads(done.stdout)
    assert (standing["approved"], standing["job"], standing["datacap"], standing["entry"]) == (
        True, served.a, 1 << 40, approval)
    assert standing["tree_size"] == served.running.ledger.size
    # a log of fewer than 256 entries: one partial bundle, no hash tile above it
    assert (standing["fetched"]["bundles"], standing["fetched"]["tiles"]) == (1, 0)
    reject = _decide(served, "reject", supersedes=approval)
    assert served.running.ledger.result(RESULT)["approved"] is False
    # an inclusion proof alone (what a notary checked before) still accepts the superseded approval
    check_notary_answer({"proof": served.running.ledger.inclusion(approval)}, served.vkey)
    old = await served.cod("ledger", "notary", RESULT, "--entry", str(approval), "--ledger", url)
    assert old.returncode == 24, (old.stdout, old.stderr)
    assert f"superseded by the decision at entry {reject}: reject of job {served.a}" in old.stderr
    assert "Traceback" not in old.stderr
    latest = await served.cod("ledger", "notary", RESULT, "--ledger", url)
    assert latest.returncode == 24 and f"the decision at entry {reject} is reject" in latest.stderr, latest.stderr


async def test_notary_catches_a_ledger_that_hides_the_later_reject(served: Served) -> None:
    approval = _decide(served, "approve")
    old_answer = json.dumps(served.running.ledger.result(RESULT)).encode()  # approved, with its proof
    approval_leaf = served.running.ledger.inclusion(approval)["leaf"]
    reject = _decide(served, "reject", supersedes=approval)

    def hide_in_answer(path: str, status: int, body: bytes) -> bytes:  # answers as before the reject
        return old_answer if path == f"/v1/results/{RESULT}" else body

    def hide_in_tiles(path: str, status: int, body: bytes) -> bytes:  # ... and puts another leaf in its place
        if path.startswith("/tile/entries/"):
            leaves = tiles.unbundle(body)
            leaves[reject] = base64.b64decode(approval_leaf)
            return tiles.bundle(leaves)
        return hide_in_answer(path, status, body)

    for patch, words in ((hide_in_answer, f"superseded by the decision at entry {reject}: reject"),
                         (hide_in_tiles, "do not hash to the root the log signed")):
        async with HostileLedger(served.running.url, patch) as proxy:
            done = await served.cod("ledger", "notary", RESULT, "--ledger", proxy.url, "--vkey", served.vkey)
        assert done.returncode == 24 and words in done.stderr, (patch, done.stdout, done.stderr)


async def test_notary_can_require_cosignatures_of_named_witnesses(served: Served) -> None:
    _decide(served, "approve")
    witness = CosignatureSigner("witness.example", nacl.signing.SigningKey(bytes([8]) * 32)).vkey
    url = served.running.url
    done = await served.cod("ledger", "notary", RESULT, "--ledger", url, "--witness", witness,
                            "--min-cosignatures", "1")
    assert done.returncode == 24 and "0 valid cosignature(s)" in done.stderr, done.stderr  # no witness cosigned it
    done = await served.cod("ledger", "notary", RESULT, "--ledger", url, "--witness", witness,
                            "--min-cosignatures", "2")
    assert done.returncode == 2 and "more than the 1 --witness" in done.stderr, done.stderr
    done = await served.cod("ledger", "notary", RESULT, "--ledger", url, "--witness", served.vkey)
    assert done.returncode == 2 and "not a witness's cosignature vkey" in done.stderr, done.stderr


async def test_governance_signs_for_the_pinned_ledger_not_for_the_origin_a_proxy_answers(tmp_path: Path) -> None:
    """Points 18/19: a proxy in front of ledger A answers /v1/info with ledger B's origin and key, so a
    root key holder of both would sign a proposal valid on B. With A's key pinned, nothing is signed."""
    a = governed(tmp_path, name="a")
    b = governed(tmp_path, origin="other.example/ledger", name="b")
    a_vkey, b_info = a.vkey, b.info()
    a.close()
    b.close()
    key = tmp_path / "root1.key"
    key.write_bytes(ROOTS[0].signing_key.encode())
    key.chmod(0o600)
    running = await start_ledger(tmp_path / "a")

    def other(path: str, status: int, body: bytes) -> bytes:
        if path != "/v1/info":
            return body
        return json.dumps(dict(json.loads(body), origin=b_info["origin"], vkey=b_info["vkey"])).encode()

    try:
        size = running.ledger.size
        async with HostileLedger(running.url, other) as proxy:
            done = await asyncio.to_thread(run_cod, tmp_path, "ledger", "moderator", "propose", "add",
                                           MOD2.node_id, "--key", str(key), "--ledger", proxy.url,
                                           COD_LEDGER_VKEY=a_vkey)
        assert done.returncode == 24, (done.stdout, done.stderr)
        assert "nothing was signed" in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert proxy.posts == [] and running.ledger.size == size
    finally:
        await running.stop()


async def test_moderator_approve_of_a_stale_proposal_signs_nothing_and_says_propose_it_again(tmp_path: Path) -> None:
    # Stage 9 second round: the CLI showed "signing as root key holder ..." and signed an approval of a proposal the
    # ledger lists as stale (point 20), which the ledger then refused
    ledger = governed(tmp_path)  # MOD a moderator, K = 2 of 3
    _, old = ledger.propose(entries.sign_proposal(ROOTS[0], origin=ORIGIN, action="remove", moderator=MOD.node_id))
    _, pid = ledger.propose(entries.sign_proposal(ROOTS[1], origin=ORIGIN, action="remove", moderator=MOD.node_id))
    assert ledger.approve(entries.sign_approval(ROOTS[2], pid, origin=ORIGIN))[1]  # MOD removed: `old` is stale
    ledger.close()
    key = tmp_path / "root3.key"
    key.write_bytes(ROOTS[2].signing_key.encode())
    key.chmod(0o600)
    running = await start_ledger(tmp_path / "ledger")
    try:
        size = running.ledger.size
        done = await asyncio.to_thread(run_cod, tmp_path, "ledger", "moderator", "approve", old, "--key", str(key),
                                       "--ledger", running.url)
        assert done.returncode == 2 and "stale" in done.stderr and "propose it again" in done.stderr, done.stderr
        assert "signing as" not in done.stderr and running.ledger.size == size
    finally:
        await running.stop()
