"""Starting the ledger service: in this process on loopback (tests, the demo) or as `cod ledger serve`.

Beside the HTTP service run two kinds of background task, neither of which can block an append:
the witness pusher (each new checkpoint goes to every configured C2SP tlog-witness; its
cosignature is checked and stored, and served with /checkpoint) and the node scanners
(scan.py). A witness that is down is asked again at the next append or after RETRY_S.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from ..dirlock import DirLock
from ..errors import CodError, LedgerRefused, UsageError
from ..web.server import MAX_PORT, listen, until_interrupted
from . import merkle
from .log import Ledger
from .note import CosignatureVerifier, NoteError
from .rates import Clock, Limiter, WriteLimits
from .frauds import Auditor, FraudDesk, FraudOptions
from .scan import Scanner
from .service import WITNESSES, app
from .witness import WitnessSizeConflict, add_checkpoint

log = logging.getLogger("cod.ledger")

RETRY_S = 30.0
"""A witness that refused or could not be reached is asked again after this long (or at the next append)."""
MIN_BACKOFF_S = 1.0
"""After an unexpected error the pusher waits this long, doubling up to RETRY_S, before trying again."""
MAX_CONFLICT_ROUNDS = 2
"""A 409 (the witness knows another size) is answered with a proof from that size, this many times."""


@dataclass
class Witness:
    """A witness the ledger asks to cosign: its cosignature vkey and URL; ``size`` is what it has signed."""

    verifier: CosignatureVerifier
    url: str
    size: int = 0
    error: str | None = None

    @classmethod
    def parse(cls, text: str) -> "Witness":
        """``VKEY=URL`` as `cod ledger serve --witness` takes it; UsageError if malformed."""
        vkey, sep, url = text.rpartition("=")
        if not sep or not url.startswith(("http://", "https://")):
            raise UsageError(f"--witness {text[:200]!r} is not VKEY=URL",
                             "give the witness's cosignature vkey (cod ledger witness prints it), '=', its URL")
        try:
            return cls(CosignatureVerifier.from_vkey(vkey), url)
        except NoteError as exc:
            raise UsageError(f"--witness: {vkey[:200]!r} is not a cosignature vkey: {exc}",
                             "cod ledger witness prints its vkey on its first line") from None


@dataclass
class Pusher:
    """Sends every new checkpoint to the witnesses; one push at a time, the latest checkpoint wins."""

    ledger: Ledger
    witnesses: list[Witness]
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        """Push until cancelled; an error is logged and retried (backing off), never ends the task."""
        backoff = 0.0
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    await asyncio.wait_for(self.wake.wait(), backoff or RETRY_S)
                except asyncio.TimeoutError:
                    pass
                self.wake.clear()
                failed = False
                for witness in self.witnesses:
                    if witness.size == self.ledger.size:
                        continue
                    try:
                        await self.push(session, witness)
                    except Exception as exc:  # noqa: BLE001 - logged and retried: cosigning must not stop for good
                        failed = True
                        witness.error = f"{type(exc).__name__}: {exc}"
                        log.error("witness %s: push failed: %s (retrying)", witness.url, witness.error)
                backoff = min(RETRY_S, max(MIN_BACKOFF_S, 2 * backoff)) if failed else 0.0

    async def push(self, session: aiohttp.ClientSession, witness: Witness) -> None:
        size, note = await asyncio.to_thread(self.ledger.latest_checkpoint)
        old = witness.size
        for _ in range(MAX_CONFLICT_ROUNDS + 1):
            try:
                proof = await asyncio.to_thread(self._proof, size, old)
                lines = await add_checkpoint(session, witness.url, old, proof, note, witness=witness.verifier)
            except WitnessSizeConflict as exc:
                if exc.size > size:  # the witness has seen a bigger tree of this origin: a fork elsewhere
                    witness.error = f"the witness has cosigned size {exc.size}, beyond this ledger's {size}"
                    log.error("witness %s: %s", witness.url, witness.error)
                    return
                old = exc.size
                continue
            except (LedgerRefused, CodError) as exc:
                witness.error = exc.message
                log.warning("witness %s did not cosign size %d: %s", witness.url, size, exc.message)
                return
            for line in lines:
                await asyncio.to_thread(self.ledger.add_cosignature, size, witness.verifier.name, line)
            witness.size, witness.error = size, None
            return

    def _proof(self, size: int, old: int) -> list[bytes]:
        if old == 0 or old == size:
            return []
        return merkle.prove_tree(size, old, self.ledger.read_hashes)


@dataclass
class RunningLedger:
    ledger: Ledger
    runner: web.AppRunner
    url: str
    tasks: list[asyncio.Task[None]]
    lock: DirLock | None = None  # the data dir's, held while serving: one ledger process per data dir
    auditor: Auditor | None = None

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.runner.cleanup()
        self.ledger.close()
        if self.lock is not None:
            self.lock.release()


async def start_ledger(data_dir: Path, host: str = "127.0.0.1", port: int = 0, *,
                       witnesses: list[Witness] | None = None, scan_nodes: list[str] | None = None,
                       scan_interval: float = 30.0, limits: WriteLimits | None = None,
                       clock: Clock = time.monotonic, fraud: FraudOptions | None = None) -> RunningLedger:
    """Open the ledger in ``data_dir`` and serve it; port 0 picks a free one. ``limits`` are the
    write rate limits (default WriteLimits()), ``clock`` their monotonic clock (tests drive it);
    ``fraud``: how posted fraud proofs are checked and what share of eligible entries is audited.

    Raises LedgerRefused/LocalPathError/AuditFailed when the data dir is not a ledger, and
    LedgerRefused when the address cannot be bound; nothing is left running then.
    """
    if not 0 <= port <= MAX_PORT:
        raise UsageError(f"port {port} is out of range", f"use a port from 0 to {MAX_PORT} (0: any free port)")
    # two processes on one data dir would sign with one log key on two ports, the second from a stale tree
    lock = DirLock.take(data_dir, "ledger data directory", "--data-dir") if data_dir.is_dir() else None
    try:
        ledger = await asyncio.to_thread(Ledger.open, data_dir)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    pusher = Pusher(ledger, list(witnesses or []))
    options = fraud or FraudOptions(nodes=tuple(scan_nodes or ()))
    desk = FraudDesk(ledger, options)
    ledger.audit_rate = options.audit_rate
    auditor = Auditor(ledger, desk, on_append=pusher.wake.set) if options.audit_rate else None

    def appended() -> None:
        pusher.wake.set()
        if auditor is not None:
            auditor.wake.set()

    application = app(ledger, on_append=appended, limiter=Limiter(limits, clock), desk=desk)
    application[WITNESSES] = [w.verifier.vkey for w in pusher.witnesses]
    try:
        served = await listen(application, host, port)
    except OSError as exc:
        ledger.close()
        if lock is not None:
            lock.release()
        raise LedgerRefused(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                            "pick another --port (0: any free port) or --host, or stop what holds it",
                            status=0, error="CannotListen") from None
    except CodError:  # a COD_HTTP_* limit that is not a number
        ledger.close()
        if lock is not None:
            lock.release()
        raise
    tasks: list[asyncio.Task[None]] = []
    if pusher.witnesses:
        pusher.wake.set()
        tasks.append(asyncio.create_task(pusher.run()))
    for url in scan_nodes or []:
        tasks.append(asyncio.create_task(Scanner(ledger, url, data_dir, scan_interval, on_append=appended).run()))
    if auditor is not None:
        tasks.append(asyncio.create_task(auditor.run()))
    return RunningLedger(ledger, served.runner, served.url, tasks, lock, auditor)


async def serve_forever(data_dir: Path, host: str, port: int, **options: Any) -> None:
    running = await start_ledger(data_dir, host, port, **options)
    print(f"cod ledger {running.ledger.origin} serving on {running.url}", flush=True)
    await until_interrupted()
    await running.stop()


__all__ = ["RunningLedger", "Witness", "serve_forever", "start_ledger"]
