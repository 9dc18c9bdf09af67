"""`cod ledger serve --witness VKEY=URL`: every new checkpoint goes to a real C2SP tlog-witness,
its cosignature is served with /checkpoint and counted by the audit; a witness that is down
never blocks an append, and is caught up (with a consistency proof) when it is back."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cod.ledger import audit, entries
from cod.ledger.client import LedgerClient
from cod.ledger.log import Ledger
from cod.ledger.note import CosignatureVerifier, split_note
from cod.ledger.server import Pusher, Witness, start_ledger
from cod.ledger.witness import start_witness

from .bkit import MOD, ORIGIN, blessed_ledger, cid

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
        await client.bless([entries.sign_bless_batch(MOD, {cid("more fil+ data"): [1]}, origin=ORIGIN)])
        await _cosigned(client, "witness.test/w1", first + 1)  # consistency proof from `first` accepted

        problems = await asyncio.to_thread(audit.audit_url, running.url, vkey, [witness.witness.vkey], 1)
        assert problems == []
        assert CosignatureVerifier.from_vkey(witness.witness.vkey).name == "witness.test/w1"

        # the witness goes away: appends go on, uncosigned; the audit requiring it says so
        await witness.stop()
        await client.bless([entries.sign_bless_batch(MOD, {cid("even more"): [2]}, origin=ORIGIN)])
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


async def test_a_push_during_a_group_commit_cosigns_the_groups_checkpoint(tmp_path: Path) -> None:
    """Two requests committed in one group: a push that starts while the second is being applied
    (the first's size has no checkpoint of its own) cosigns the group's checkpoint, not NotFound."""
    ledger = blessed_ledger(tmp_path)
    vkey = ledger.vkey
    ledger.close()
    witness = await start_witness(tmp_path / "w", [vkey], name="witness.test/w1")
    ledger = Ledger.open(tmp_path / "ledger")
    start = ledger.size
    mid, go = threading.Event(), threading.Event()
    apply = ledger.state.apply
    calls: list[int] = []

    def slow_apply(index: int, *args: Any, **kwargs: Any) -> Any:
        out = apply(index, *args, **kwargs)
        calls.append(index)
        if len(calls) == 1:  # the first request applied, the second not yet: size is start + 1
            mid.set()
            go.wait(WAIT_S)
        return out

    ledger.state.apply = slow_apply  # type: ignore[method-assign]
    pusher = Pusher(ledger, [Witness.parse(f"{witness.witness.vkey}={witness.url}")])
    try:
        ledger._lock.acquire()  # both requests queue behind it, then commit as one group
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(ledger.bless,
                                   [entries.sign_bless_batch(MOD, {cid(f"group {n}"): [n]}, origin=ORIGIN)])
                       for n in range(2)]
            while len(ledger._queue) < 2:
                await asyncio.sleep(0.01)
            ledger._lock.release()
            assert await asyncio.to_thread(mid.wait, WAIT_S)
            assert ledger.size == start + 1  # mid group-commit: no checkpoint of this size
            async with aiohttp.ClientSession() as session:
                push = asyncio.create_task(pusher.push(session, pusher.witnesses[0]))
                await asyncio.sleep(0)  # the push starts: it reads what it will push
                go.set()
                await push
            for future in futures:
                future.result()
        assert ledger.size == start + 2
        assert pusher.witnesses[0].size == start + 2, pusher.witnesses[0].error
        assert "\u2014 witness.test/w1 " in ledger.checkpoint(start + 2)
    finally:
        go.set()
        ledger.close()
        await witness.stop()


async def test_the_pusher_survives_an_unexpected_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error the pusher did not expect (here: the store fails once) is logged and retried; cosigning goes on."""
    ledger = blessed_ledger(tmp_path)
    vkey = ledger.vkey
    ledger.close()
    witness = await start_witness(tmp_path / "w", [vkey], name="witness.test/w1")
    real = Ledger.checkpoint
    failures = [OSError("disk I/O error")]

    def flaky(self: Ledger, size: int | None = None) -> str:
        if failures:
            raise failures.pop()
        return real(self, size)

    monkeypatch.setattr(Ledger, "checkpoint", flaky)
    wired = Witness.parse(f"{witness.witness.vkey}={witness.url}")
    running = await start_ledger(tmp_path / "ledger", witnesses=[wired])
    client = LedgerClient(running.url)
    try:
        await client.bless([entries.sign_bless_batch(MOD, {cid("after the error"): [5]}, origin=ORIGIN)])
        assert not failures  # the pusher met the error
        await _cosigned(client, "witness.test/w1", running.ledger.size)
    finally:
        await running.stop()
        await witness.stop()
