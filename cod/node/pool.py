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
import os
import sys
from pathlib import Path
from typing import Any

from .. import telemetry

GRACE_SECONDS = 5.0


class Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.dead = False
        self.overran = False

    @classmethod
    async def start(cls, cache_dir: str) -> "Worker":
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cod.node.worker", cache_dir, str(os.getpid()), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, limit=1 << 20)
        worker = cls(process)
        assert process.stdout is not None
        ready = await process.stdout.readline()
        if not ready:
            raise RuntimeError("executor worker failed to start")
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
    def __init__(self, workers: int, cache_dir: Path) -> None:
        self.size = workers
        self.cache_dir = str(cache_dir)
        self._idle: asyncio.Queue[Worker] = asyncio.Queue()
        self._all: list[Worker] = []
        self.closing = False

    async def warm(self) -> None:
        workers = await asyncio.gather(*(Worker.start(self.cache_dir) for _ in range(self.size)))
        for worker in workers:
            self._all.append(worker)
            self._idle.put_nowait(worker)

    async def run(self, spec_json: str, module: Path, sources: dict[str, str], out_dir: Path,
                  timeout_s: float, modules: dict[str, str] | None = None, timed: bool = False,
                  guest_telemetry: bool = False) -> dict[str, Any]:
        """``modules``: the blob path of each module the job's module imports by CID, by CID.
        ``timed``: the worker reports when its run began and ended, made a span here (tracing);
        the answer returned never carries those times. ``guest_telemetry``: the answer carries
        the guest's telemetry (cod.wasm.observe) under ``guest_telemetry``."""
        with telemetry.span("node.queue"):
            worker = await self._idle.get()
        request: dict[str, Any] = {"spec": spec_json, "module": str(module), "sources": sources,
                                   "out": str(out_dir), "modules": modules or {}, "telemetry": guest_telemetry}
        if timed:
            request["timed"] = True
        try:
            answer = await worker.ask(request, timeout_s + GRACE_SECONDS)
        except BaseException:
            worker.kill()
            raise
        finally:
            if worker.alive:
                self._idle.put_nowait(worker)
            elif not self.closing:
                await worker.process.wait()
                self._all.remove(worker)
                replacement = await Worker.start(self.cache_dir)
                self._all.append(replacement)
                self._idle.put_nowait(replacement)
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
        for worker in self._all:
            worker.kill()
        for worker in list(self._all):
            await worker.process.wait()
            transport = getattr(worker.process, "_transport", None)
            if transport is not None:
                transport.close()  # else it is closed by the garbage collector, after the loop
