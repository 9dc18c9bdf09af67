"""`cod ledger moderator approve` and `cod ledger notary` against a real ledger and a hostile proxy in front of
it: a root key holder signs a proposal it was shown, whose statement hashes to the ID it signs (Stage 9 point
18); a notary refuses an approval that a later entry of the log superseded, whatever the ledger answers (point 22)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from cod.ledger import entries
from cod.ledger.server import start_ledger

from ..helpers import run_cod
from ..hostile_ledger import HostileLedger
from ..ledger.bkit import MOD2, ROOTS, STRANGER, governed


async def test_moderator_approve_shows_the_proposal_and_refuses_one_that_is_not_the_id(tmp_path: Path) -> None:
    ledger = governed(tmp_path, threshold=3)  # ROOTS[0] and ROOTS[1] voted MOD in; K = 3 of 3
    _, pid = ledger.propose(entries.sign_proposal(ROOTS[0], action="add", moderator=MOD2.node_id))
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

