"""`cod ledger serve --witness VKEY=URL`: every new checkpoint goes to a real C2SP tlog-witness,
its cosignature is served with /checkpoint and counted by the audit; a witness that is down
never blocks an append, and is caught up (with a consistency proof) when it is back."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cod.ledger import audit, entries
from cod.ledger.client import LedgerClient
from cod.ledger.note import CosignatureVerifier, split_note
from cod.ledger.server import Witness, start_ledger
from cod.ledger.witness import start_witness

from .bkit import MOD, blessed_ledger, cid

WAIT_S = 20.0


async def _cosigned(client: LedgerClient, name: str, size: int) -> str:
    """The checkpoint once it carries ``name``'s cosignature of ``size`` (waits for the pusher)."""
    for _ in range(int(WAIT_S / 0.05)):
        note = await client.checkpoint()
        if f"\n{size}\n" in note and f"\u2014 {name} " in note:
            return note
        await asyncio.sleep(0.05)
    raise AssertionError(f"no cosignature of size {size} by {name}: {note}")


async def test_checkpoints_are_cosigned_and_the_audit_counts_them(tmp_path: Path) -> None:
    ledger = blessed_ledger(tmp_path)
    vkey = ledger.vkey
    ledger.close()
    witness = await start_witness(tmp_path / "w", [vkey], name="witness.test/w1")
    running = await start_ledger(tmp_path / "ledger", witnesses=[Witness.parse(f"{witness.witness.vkey}={witness.url}")])
    client = LedgerClient(running.url)
    try:
        first = running.ledger.size
        note = await _cosigned(client, "witness.test/w1", first)
        split_note(note.encode())  # a well-formed signed note
        assert (await client.info())["witnesses"] == [witness.witness.vkey]
        await client.bless([entries.sign_bless_batch(MOD, {cid("more fil+ data"): [1]})])
        await _cosigned(client, "witness.test/w1", first + 1)  # consistency proof from `first` accepted

        problems = await asyncio.to_thread(audit.audit_url, running.url, vkey, [witness.witness.vkey], 1)
        assert problems == []
        assert CosignatureVerifier.from_vkey(witness.witness.vkey).name == "witness.test/w1"

        # the witness goes away: appends go on, uncosigned; the audit requiring it says so
        await witness.stop()
        await client.bless([entries.sign_bless_batch(MOD, {cid("even more"): [2]})])
        assert running.ledger.size == first + 2
        problems = await asyncio.to_thread(audit.audit_url, running.url, vkey, [witness.witness.vkey], 1)
        assert problems and any("cosign" in p for p in problems), problems

        # back (same state on disk): caught up with a proof from the size it cosigned last
        witness = await start_witness(tmp_path / "w", [vkey], name="witness.test/w1")
        await running.stop()
        running = await start_ledger(tmp_path / "ledger", witnesses=[Witness.parse(f"{witness.witness.vkey}={witness.url}")])
        client = LedgerClient(running.url)
        await _cosigned(client, "witness.test/w1", first + 2)
    finally:
        await running.stop()
        await witness.stop()
