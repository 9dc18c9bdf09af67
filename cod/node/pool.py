"""Executor processes: a node runs every job in a worker process of its own pool.

A trap, an exhausted memory or a crash inside wasmtime kills at most a worker; the job is
reported failed (ExecutorCrashed), a new worker takes its place, and the node serves on.
A worker that outlives the job's wall-clock timeout (plus a grace period) is killed: this
is how a node enforces ``limits.timeout_ms`` (workers run without epoch interruption, which
would slow every guest), and not even a wedged engine can hang the node. The job then
fails as indeterminate (``timeout``), as an in-process run does. Workers are plain subprocesses
(`python -m cod.node.worker`) speaking one JSON line per request and per answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from .. import telemetry

GRACE_SECONDS = 5.0
RETRY_SECONDS = 1.0  # between attempts to start a replacement worker

log = logging.getLogger("cod.node")


class Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.dead = False
        self.overran = False
        self.gone = asyncio.Event()  # set once the process has ended and been reaped

    @classmethod
    async def start(cls, cache_dir: str) -> "Worker":
        """A started worker; raises RuntimeError (or OSError) when it cannot start. A start that is
        cancelled or fails leaves no process behind."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cod.node.worker", cache_dir, str(os.getpid()), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, limit=1 << 20)
        worker = cls(process)
        assert process.stdout is not None
        try:
            ready = await process.stdout.readline()
            if not ready:
                raise RuntimeError("executor worker failed to start")
        except BaseException:
            worker.kill()
            await asyncio.shield(worker.reap())
            raise
        return worker

    async def ask(self, request: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """The worker's answer, or None when it died or overran ``timeout`` (then it is killed)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            await self.process.stdin.drain()
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        except asyncio.TimeoutError:
            self.overran = True
            line = b""
        except (ConnectionError, BrokenPipeError):
            line = b""
        if not line:
            self.kill()
            return None
        try:
            answer: dict[str, Any] = json.loads(line)
        except ValueError:
            self.kill()  # an executor that answers nonsense is not trusted with another job
            return None
        return answer

    async def reap(self) -> None:
        """Wait for the (killed) process to end, and close its pipes."""
        await self.process.wait()
        transport = getattr(self.process, "_transport", None)
        if transport is not None:
            transport.close()  # else it is closed by the garbage collector, after the loop
        self.gone.set()

    def kill(self) -> None:
        self.dead = True  # returncode is only set once the child is reaped
        if self.process.returncode is None:
            self.process.kill()

    @property
    def alive(self) -> bool:
        return not self.dead and self.process.returncode is None


def _record(timings: Any) -> None:
    """Spans for the phases a worker timed: {name: [start_ns, end_ns]} on the wall clock."""
    if not isinstance(timings, dict):
        return
    for name, pair in sorted(timings.items()):
        if (isinstance(name, str) and isinstance(pair, list) and len(pair) == 2
                and all(isinstance(t, int) and not isinstance(t, bool) for t in pair)):
            telemetry.record(f"node.{name}", pair[0], pair[1])


class Pool:
    """``size`` workers. A worker that dies (crash, overrun, cancelled job) is replaced by a task of
    the pool's own, so nothing done to the job that held it (a second cancel, a stopping request)
    can interrupt the replacement. A replacement that cannot start is tried again every
    RETRY_SECONDS; meanwhile ``start_error`` says why (GET /v1/health reports it)."""

    def __init__(self, workers: int, cache_dir: Path) -> None:
        self.size = workers
        self.cache_dir = str(cache_dir)
        self._idle: asyncio.Queue[Worker] = asyncio.Queue()
        self._all: list[Worker] = []
        self._replacing: set[asyncio.Task[None]] = set()
        self.start_error: str | None = None
        self.closing = False

    async def warm(self) -> None:
        workers = await asyncio.gather(*(Worker.start(self.cache_dir) for _ in range(self.size)),
                                       return_exceptions=True)
        started = [w for w in workers if isinstance(w, Worker)]
        failed = [w for w in workers if not isinstance(w, Worker)]
        if failed:
            for worker in started:
                worker.kill()
                await worker.reap()
            raise failed[0]
        for worker in started:
            self._all.append(worker)
            self._idle.put_nowait(worker)

    def alive_workers(self) -> int:
        return sum(1 for w in self._all if w.alive)

    def idle_workers(self) -> int:
        return self._idle.qsize()

    def starting(self) -> int:
        """Replacements under way that have not failed yet."""
        return len(self._replacing) if self.start_error is None else 0

    def kill_all(self) -> None:
        """Kill every idle worker and replace it (what a crash of each would do)."""
        while not self._idle.empty():
            worker = self._idle.get_nowait()
            worker.kill()
            self._replace(worker)

    def _replace(self, dead: Worker) -> None:
        task = asyncio.create_task(self._replacement(dead))
        self._replacing.add(task)
        task.add_done_callback(self._replacing.discard)

    async def _replacement(self, dead: Worker) -> None:
        await dead.reap()
        if dead in self._all:
            self._all.remove(dead)
        while not self.closing:
            try:
                worker = await Worker.start(self.cache_dir)
            except (OSError, RuntimeError) as exc:
                self.start_error = f"an executor process cannot start: {exc}"[:300]
                log.error("%s; trying again in %s s", self.start_error, RETRY_SECONDS)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            self._all.append(worker)
            self._idle.put_nowait(worker)
            self.start_error = None  # another replacement that still fails says so again at its next try
            return

    async def run(self, spec_json: str, module: Path, sources: dict[str, str], out_dir: Path,
                  timeout_s: float, modules: dict[str, str] | None = None, timed: bool = False,
                  guest_telemetry: bool = False, fault: dict[str, Any] | None = None) -> dict[str, Any]:
        """``modules``: the blob path of each module the job's module imports by CID, by CID.
        ``timed``: the worker reports when its run began and ended, made a span here (tracing);
        the answer returned never carries those times. ``guest_telemetry``: the answer carries
        the guest's telemetry (cod.wasm.observe) under ``guest_telemetry``. ``fault`` (a devstack
        liar's, :meth:`cod.wasm.fault.Fault.to_json`): the run is faulted, and the answer says
        how under ``fault``."""
        with telemetry.span("node.queue"):
            worker = await self._idle.get()
        request: dict[str, Any] = {"spec": spec_json, "module": str(module), "sources": sources,
                                   "out": str(out_dir), "modules": modules or {}, "telemetry": guest_telemetry}
        if timed:
            request["timed"] = True
        if fault is not None:
            request["fault"] = fault
        try:
            answer = await worker.ask(request, timeout_s + GRACE_SECONDS)
        except BaseException:
            worker.kill()
            raise
        finally:  # the replacement is the pool's task: a second cancel of the job cannot stop it
            if worker.alive:
                self._idle.put_nowait(worker)
            elif not self.closing:
                self._replace(worker)
                await asyncio.shield(worker.gone.wait())  # the job ends once its executor is gone
        if answer is None and worker.overran:
            return {"error": "Indeterminate", "code": 7,
                    "message": f"indeterminate outcome (timeout): the job ran past its wall-clock timeout "
                               f"(limits.timeout_ms = {round(timeout_s * 1000)}); no result was kept",
                    "hint": "raise limits.timeout_ms, or lower limits.fuel so the job ends by itself"}
        if answer is not None:
            _record(answer.pop("timings", None))
        if answer is None:
            return {"error": "ExecutorCrashed", "code": 18, "message": "the executor process died during the job",
                    "hint": "the node is still up; the job may be retried"}
        return answer

    def worker_pids(self) -> list[int]:
        return [w.process.pid for w in self._all if w.alive]

    async def close(self) -> None:
        self.closing = True
        replacing = list(self._replacing)
        for task in replacing:
            task.cancel()
        await asyncio.gather(*replacing, return_exceptions=True)
        for worker in self._all:
            worker.kill()
        for worker in list(self._all):
            await worker.reap()
