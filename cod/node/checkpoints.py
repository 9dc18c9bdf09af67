"""Execution checkpoints of a job a node ran, on demand, for a dispute (SPEC 11.7).

A node never checkpoints a job it runs: only when a requester challenges one (POST
/v1/jobs/{job_cid}/checkpoints) does it run the job again under the checkpoint transform
(:mod:`cod.checkpoint`), in a process of its own, bounded in time, one trace of a job at a
time and at most :data:`MAX_TRACES` at once, and sign the listing. Answers are cached by
(job, interval); a snapshot (GET .../checkpoints/{index}/snapshot) is kept by a second
trace that keeps that one state, also cached.

The signed answer (``cod/checkpoints/v1``): its canonical bytes are the canonical JSON of the
object below, the signature Ed25519 over them by the node key, base64 on the wire, as for a
result statement (cod.statement)::

    {"checkpoints": [[0, 65536, "hex"], ...], "final": {"exit_code": 0, "fuel": 818, "hash": "hex",
     "trap": null}, "interval": 65536, "job": "baga...", "node": "12D3KooW...", "profile": "wasmtime-...",
     "result": "bafy...", "transform": "cod-checkpoint-1+binaryen-108", "type": "cod/checkpoints/v1"}

``result`` is the result CID the node claims (its signed statement's); ``final`` the state its
trace ended in.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import importlib
import multiprocessing
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BadSignature, CheckpointBusy, CheckpointRefused, CheckpointUnsupported
from ..identity import Identity, verify
from ..jobspec import canonical_json
from ..limits import MAX_CHECKPOINTS, MIN_CHECKPOINT_INTERVAL

CHECKPOINTS_TYPE = "cod/checkpoints/v1"
MAX_TRACES = 1
"""Traces one node runs at once (each a whole instrumented run of a job)."""
TRACE_TIMEOUT_FACTOR = 8
"""A trace may take this many times the job's own timeout (an instrumented run is slower) ..."""
TRACE_TIMEOUT_MARGIN_S = 60.0
"""... plus this, before its process is killed and the query answered CheckpointRefused."""
MAX_CACHED = 64
"""Answers and snapshots a node keeps (the oldest go first)."""
HASH_HEX = 64


@dataclass(frozen=True)
class Listing:
    """A node's signed checkpoint listing of one job (the body above)."""

    job: str
    node: str
    profile: str
    transform: str
    interval: int
    checkpoints: tuple[tuple[int, int, str], ...]
    final_fuel: int
    final_hash: str
    exit_code: int
    trap: str | None
    result: str

    def body(self) -> dict[str, Any]:
        return {"type": CHECKPOINTS_TYPE, "job": self.job, "node": self.node, "profile": self.profile,
                "transform": self.transform, "interval": self.interval,
                "checkpoints": [list(c) for c in self.checkpoints],
                "final": {"fuel": self.final_fuel, "hash": self.final_hash, "exit_code": self.exit_code,
                          "trap": self.trap},
                "result": self.result}

    def canonical_bytes(self) -> bytes:
        return canonical_json(self.body())

    def sign(self, identity: Identity) -> dict[str, Any]:
        return {"checkpoints": self.body(), "signature": base64.b64encode(identity.sign(self.canonical_bytes())).decode()}


def _hash(value: Any) -> str:
    if not (isinstance(value, str) and len(value) == HASH_HEX and all(c in "0123456789abcdef" for c in value)):
        raise ValueError(f"{str(value)[:80]!r} is not a lowercase hex SHA-256")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{str(value)[:40]!r} is not a non-negative integer")
    return value


def parse(answer: Any, job: str, node: str, interval: int) -> Listing:
    """A signed listing from the wire, checked: its signature by ``node``, that it answers ``job``
    at ``interval``, and that its checkpoints are well formed (indices 0, 1, ..., fuel rising,
    at most MAX_CHECKPOINTS). Anything else is BadSignature saying what."""
    try:
        body = answer["checkpoints"]
        signature = base64.b64decode(answer["signature"], validate=True)
        if set(body) != {"type", "job", "node", "profile", "transform", "interval", "checkpoints", "final", "result"}:
            raise ValueError(f"fields {sorted(body)}")
        final = body["final"]
        if set(final) != {"fuel", "hash", "exit_code", "trap"}:
            raise ValueError(f"final fields {sorted(final)}")
        rows = body["checkpoints"]
        if not isinstance(rows, list) or len(rows) > MAX_CHECKPOINTS:
            raise ValueError("checkpoints is not a list of at most MAX_CHECKPOINTS")
        points = []
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != 3 or _int(row[0]) != i:
                raise ValueError(f"checkpoint {i} is not [{i}, fuel, hash]")
            points.append((i, _int(row[1]), _hash(row[2])))
        if any(b[1] <= a[1] for a, b in zip(points, points[1:])):
            raise ValueError("checkpoint fuel does not rise")
        trap = final["trap"]
        if trap is not None and not isinstance(trap, str):
            raise ValueError("final.trap is not a string or null")
        exit_code = final["exit_code"]
        if isinstance(exit_code, bool) or not isinstance(exit_code, int):
            raise ValueError("final.exit_code is not an integer")
        texts = [body[k] for k in ("type", "job", "node", "profile", "transform", "result")]
        if not all(isinstance(t, str) for t in texts):
            raise ValueError("a text field is not a string")
        listing = Listing(body["job"], body["node"], body["profile"], body["transform"], _int(body["interval"]),
                          tuple(points), _int(final["fuel"]), _hash(final["hash"]), exit_code, trap, body["result"])
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise BadSignature(f"malformed checkpoint answer: {exc}") from None
    if body["type"] != CHECKPOINTS_TYPE:
        raise BadSignature(f"checkpoint answer type {body['type']!r} is not {CHECKPOINTS_TYPE}")
    if listing.job != job or listing.node != node or listing.interval != interval:
        raise BadSignature(f"the checkpoint answer is for job {listing.job} by {listing.node} at interval "
                           f"{listing.interval}, not job {job} by {node} at {interval}")
    if points and points[-1][1] > listing.final_fuel:
        raise BadSignature("a checkpoint lies past the final fuel")
    verify(node, listing.canonical_bytes(), signature)
    return listing


def check_interval(interval: Any, fuel_used: int) -> int:
    """The interval a query asks, or CheckpointRefused: an integer of at least MIN_CHECKPOINT_INTERVAL
    giving at most MAX_CHECKPOINTS checkpoints of a run of ``fuel_used``."""
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < MIN_CHECKPOINT_INTERVAL:
        raise CheckpointRefused(f"interval {str(interval)[:40]} is not an integer of at least "
                                f"{MIN_CHECKPOINT_INTERVAL}", "ask with {\"interval\": F}, F >= 65536")
    if fuel_used // interval > MAX_CHECKPOINTS:
        raise CheckpointRefused(f"interval {interval} gives over {MAX_CHECKPOINTS} checkpoints of a run of "
                                f"{fuel_used} fuel", f"ask an interval of at least {-(-fuel_used // MAX_CHECKPOINTS)}")
    return interval


def _trace_process(request: dict[str, Any], conn: Any) -> None:
    """In a process of its own: one trace (cod.checkpoint.trace), answered on ``conn``."""
    try:
        from ..jobspec import JobSpec
        from ..wasm.engine import Engine

        spec = JobSpec.from_json(request["spec"])
        modules = {cid: Path(p).read_bytes() for cid, p in request["modules"].items()}
        engine = Engine(request["cache_dir"], wall_clock=False)
        keep = request.get("keep")
        traced = importlib.import_module("cod.checkpoint").trace(spec, Path(request["module"]).read_bytes(), request["sources"], engine,
                                  request["interval"], modules=modules or None, fault=request.get("fault"),
                                  keep=keep)
        kept = getattr(traced, "snapshots", None) or getattr(traced, "kept", None) or {}
        snapshot = None
        if keep:
            data = kept.get(keep[0]) if isinstance(kept, dict) else None
            if data is not None:
                snapshot = request["snapshot_path"]
                Path(snapshot).write_bytes(data)
        conn.send({"checkpoints": [list(c) for c in traced.checkpoints], "exit_code": traced.exit_code,
                   "trap": traced.trap, "fuel_used": traced.fuel_used, "final": _final_hash(traced),
                   "result_cid": traced.result_cid, "snapshot": snapshot})
    except Exception as exc:  # whatever stops it is the answer: the node serves on
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {str(exc)[:300]}"
        conn.send({"error": message})
    finally:
        conn.close()


def _final_hash(traced: Any) -> str:
    for name in ("final_hash", "final", "state_hash"):
        value = getattr(traced, name, None)
        if isinstance(value, str):
            return value
    raise ValueError("the trace has no final state hash")


class Checkpointer:
    """The node's checkpoint service: traces on demand, bounded, cached."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self._answers: dict[tuple[str, int], dict[str, Any]] = {}
        self._snapshots: dict[tuple[str, int, int], Path] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._slots = asyncio.Semaphore(MAX_TRACES)
        self._dir = Path(tempfile.mkdtemp(prefix="cod-checkpoints-"))
        self.traces = 0  # traces run (a test checks the cache)
        self._why: tuple[str | None] | None = None

    def unavailable(self) -> str | None:
        """Why this node cannot checkpoint (None when it can); asked of the transform once."""
        if self._why is None:
            try:
                library = importlib.import_module("cod.checkpoint")
            except ImportError:
                self._why = ("this node has no checkpoint library",)
            else:
                why = library.available()
                self._why = (why if isinstance(why, str) else None,)
        return self._why[0]

    def published(self) -> dict[str, Any]:
        """What /v1/info says of checkpoints: whether they are answered, under which transform, the bounds."""
        why = self.unavailable()
        return {"supported": why is None, "transform": self.transform() if why is None else None,
                "unsupported": why, "min_interval": MIN_CHECKPOINT_INTERVAL, "max_checkpoints": MAX_CHECKPOINTS}

    def transform(self) -> str | None:
        try:  # the library of SPEC 11.6 (cod.checkpoint), when this build has it
            library = importlib.import_module("cod.checkpoint")
        except ImportError:
            return None
        name = getattr(library, "CHECKPOINT_TRANSFORM", None)
        return name if isinstance(name, str) else None

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)

    async def answer(self, job_cid: str, interval: Any) -> dict[str, Any]:
        """The signed listing of ``job_cid`` (DONE here) at ``interval``; raises CheckpointRefused,
        CheckpointUnsupported, CheckpointBusy or NotFound."""
        row = self._done(job_cid)
        interval = check_interval(interval, int(row["fuel_used"] or 0))
        cached = self._answers.get((job_cid, interval))
        if cached is not None:
            return cached
        async with self._lock(job_cid):
            cached = self._answers.get((job_cid, interval))
            if cached is not None:
                return cached
            traced = await self._trace(job_cid, row, interval, None)
            transform = self.transform() or ""
            listing = Listing(job_cid, self.node.identity.node_id, row["profile"], transform, interval,
                              tuple((int(i), int(f), str(h)) for i, f, h in traced["checkpoints"]),
                              int(traced["fuel_used"]), str(traced["final"]), int(traced["exit_code"]),
                              traced["trap"], row["result_cid"])
            signed = listing.sign(self.node.identity)
            self._remember(self._answers, (job_cid, interval), signed)
            return signed

    async def snapshot(self, job_cid: str, interval: Any, index: int) -> Path:
        """The file of the snapshot at checkpoint ``index`` of ``job_cid``'s trace at ``interval``."""
        row = self._done(job_cid)
        interval = check_interval(interval, int(row["fuel_used"] or 0))
        key = (job_cid, interval, index)
        if key in self._snapshots:
            return self._snapshots[key]
        async with self._lock(job_cid):
            if key not in self._snapshots:
                traced = await self._trace(job_cid, row, interval, index)
                if not traced.get("snapshot"):
                    raise CheckpointRefused(f"the trace of job {job_cid} at interval {interval} has no "
                                            f"checkpoint {index}", "ask an index its listing names")
                self._remember(self._snapshots, key, Path(traced["snapshot"]))
        return self._snapshots[key]

    def _remember(self, cache: dict[Any, Any], key: Any, value: Any) -> None:
        while len(cache) >= MAX_CACHED:
            old = cache.pop(next(iter(cache)))
            if isinstance(old, Path):
                old.unlink(missing_ok=True)
        cache[key] = value

    def _lock(self, job_cid: str) -> asyncio.Lock:
        return self._locks.setdefault(job_cid, asyncio.Lock())

    def _done(self, job_cid: str) -> dict[str, Any]:
        why = self.unavailable()
        if why is not None:
            raise CheckpointUnsupported(f"this node cannot checkpoint: {why}")
        row: dict[str, Any] = self.node.job(job_cid)  # NotFound
        if row["state"] != "done" or not row.get("result_cid"):
            raise CheckpointRefused(f"job {job_cid} is {row['state']} here: only a job this node ran to its "
                                    "signed result is checkpointed", "ask once the job is done")
        if row.get("profile") == "docker":
            raise CheckpointUnsupported("a docker job has no checkpoints")
        return row

    async def _trace(self, job_cid: str, row: dict[str, Any], interval: int, keep: int | None) -> dict[str, Any]:
        from ..jobspec import JobSpec

        if self._slots.locked():
            raise CheckpointBusy(f"this node runs {MAX_TRACES} checkpoint trace(s) already")
        spec = JobSpec.from_json(row["spec"])
        node = self.node
        module = node._module(spec.module)
        if module is None:
            raise CheckpointRefused(f"this node no longer holds the module {spec.module} of job {job_cid}")
        try:
            sources = await asyncio.to_thread(node._sources, spec)
        except Exception as exc:
            raise CheckpointRefused(f"this node no longer holds the inputs of job {job_cid}: "
                                    f"{getattr(exc, 'message', exc)}") from None
        modules, _ = await asyncio.to_thread(node._dependency_blobs, spec)
        fault_for = getattr(node, "fault_for", None)  # a lying devstack node's fault (verifier.devstack)
        fault = fault_for(job_cid) if fault_for is not None else None
        snapshot_path = self._dir / f"{job_cid}-{interval}-{keep}.snapshot"
        request = {"spec": row["spec"], "module": str(module), "sources": sources, "modules": modules,
                   "interval": interval, "cache_dir": str(node.pool.cache_dir), "fault": fault,
                   "keep": [keep] if keep is not None else None, "snapshot_path": str(snapshot_path)}
        timeout = spec.limits.timeout_ms / 1000 * TRACE_TIMEOUT_FACTOR + TRACE_TIMEOUT_MARGIN_S
        async with self._slots:
            self.traces += 1
            answer = await asyncio.to_thread(_in_process, request, timeout)
        if "error" in answer:
            raise CheckpointRefused(f"the checkpoint trace of job {job_cid} failed: {answer['error']}")
        return answer


def _in_process(request: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run :func:`_trace_process` in a fresh process, killed after ``timeout`` seconds."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_trace_process, args=(request, send), daemon=True)
    process.start()
    send.close()
    try:
        if not receive.poll(timeout):
            return {"error": f"it took over {timeout:.0f} s"}
        try:
            answer: dict[str, Any] = receive.recv()
        except EOFError:
            return {"error": "the trace process died"}
        return answer
    finally:
        receive.close()
        if process.is_alive():
            process.kill()
        process.join(5)


__all__ = ["CHECKPOINTS_TYPE", "Checkpointer", "Listing", "check_interval", "parse"]
