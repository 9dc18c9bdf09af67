"""Re-execution of a signed job by someone who is not one of its nodes (SPEC 11.3).

The requester's referee and audits, ``cod fraud verify`` and the ledger's checks and audits all
judge a claim the same way: gather the module, the modules it imports by CID and the inputs,
each by CID and checked against it (:func:`gather`, bounded in bytes), then run the job here on
the profile the claims were signed under, at most ``fuel`` (:func:`reexecute`). Whatever stops
a re-execution is said in ``Ruling.refused``; nobody is judged on a refusal.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .content.cid import CID
from .content.store import ContentStore
from .errors import CIDError, CodError
from .jobspec import ENGINE_WASM, JobSpec
from .local import PreparedJob, dependencies

DEFAULT_GATHER_BYTES = 1 << 30
"""What one re-execution fetches at most by default, every CID together: 1 GiB."""
GATHER_ROUNDS = 8
"""Rounds of fetching: the module first, then what it imports by CID (which may import more)."""


@dataclass
class Ruling:
    """What a re-execution found: its own result CID, or why it did not judge (``refused``)."""

    result_cid: str | None = None
    job_fuel: int = 0
    segment_fuel: int = 0
    refused: str | None = None
    method: str = "self"
    rounds: int = 0
    exit_code: int | None = None  # of the re-execution that gave ``result_cid`` (a fraud proof carries them)
    trap: str | None = None

    def to_json(self, liars: list[str]) -> dict[str, Any]:
        return {"method": self.method, "result_cid": self.result_cid, "job_fuel": self.job_fuel,
                "segment_fuel": self.segment_fuel, "rounds": self.rounds, "liars": liars}


def lacking(job: PreparedJob) -> str | None:
    """Why ``job`` cannot be re-executed here (None when it can)."""
    spec = job.spec
    if spec.engine != ENGINE_WASM:
        return f"a {spec.engine} job is never re-executed by the referee"
    if not job.wasm:
        return f"this requester does not hold the module {spec.module}"
    if job.missing_modules:
        return f"this requester does not hold the imported module {job.missing_modules[0]}"
    for item in spec.inputs:
        if item.path not in job.sources:
            named = item.cid if item.cid is not None else f"the node-local path {item.local}"
            return f"this requester does not hold the input {named} (mounted at {item.path})"
    if spec.output_base and spec.outputs not in job.sources:
        return f"this requester does not hold the output base {spec.output_base}"
    return None


def reexecute(job: PreparedJob, profile: str, fuel: int | None = None, cache_dir: Path | None = None) -> Ruling:
    """Re-execute ``job`` here to judge claims signed under ``profile``, with at most ``fuel``
    (default the job's own fuel). Never raises a CodError: a run that fails is a refusal."""
    from .wasm.engine import Engine
    from .wasm.executor import run
    from .wasm.hostcall import OUT_OF_FUEL

    job_fuel = job.spec.limits.fuel
    ruling = Ruling(job_fuel=job_fuel)
    why = lacking(job)
    if why is not None:
        ruling.refused = f"the referee cannot re-execute the job: {why}"
        return ruling
    try:
        engine = Engine(cache_dir, wall_clock=True)
    except CodError as exc:
        ruling.refused = f"the referee has no engine: {exc.message}"
        return ruling
    if engine.profile != profile:
        ruling.refused = (f"the referee runs profile {engine.profile}, the claims were signed under {profile}: "
                          "it does not judge across profiles")
        return ruling
    bound = job_fuel if fuel is None else min(fuel, job_fuel)
    spec = job.spec if bound == job_fuel else replace(job.spec, limits=replace(job.spec.limits, fuel=bound))
    scratch = Path(tempfile.mkdtemp(prefix="cod-referee-"))
    try:
        result = run(spec, job.wasm, job.sources, scratch / "out", engine, modules=job.modules)
    except CodError as exc:
        ruling.refused = f"the referee's re-execution failed: {exc.message}"
        return ruling
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ruling.segment_fuel = result.fuel_used
    if bound < job_fuel and result.trap == OUT_OF_FUEL:
        ruling.refused = (f"the referee's fuel bound ({bound} of the job's {job_fuel}) ran out before the job "
                          "ended (raise --referee-fuel)")
        return ruling
    ruling.result_cid, ruling.exit_code, ruling.trap = result.result_cid, result.exit_code, result.trap
    return ruling


def held(spec: JobSpec, store: ContentStore, wasm: bytes = b"", modules: dict[str, bytes] | None = None
         ) -> PreparedJob:
    """``spec`` with what ``store`` holds of it (``wasm``: the module's bytes when the caller has
    them). The store checked every CID when the content came in (SPEC 9.8); the module's bytes
    are checked against ``spec.module`` here, imported modules by the linker."""
    from .content.unixfs import module_cid

    if not wasm:
        found = store.get(spec.module)
        if found is not None and found.is_file():
            try:
                data = found.read_bytes()
            except OSError:
                data = b""
            wasm = data if data and module_cid(data) == spec.module else b""

    def read(cid: str) -> bytes | None:
        if modules and cid in modules:
            return modules[cid]
        found = store.get(cid)
        if found is None or not found.is_file():
            return None
        try:
            return found.read_bytes()
        except OSError:
            return None

    missing: list[str] = []
    linked = dependencies(wasm, read, missing=missing) if wasm else {}
    sources: dict[str, str] = {}
    for item in spec.inputs:
        if item.cid is None:
            continue
        found = store.get(item.cid)
        if found is not None:
            sources[item.path] = str(found)
    if spec.output_base:
        found = store.get(spec.output_base)
        if found is not None and found.is_dir():
            sources[spec.outputs] = str(found)
    return PreparedJob(spec, wasm, sources, linked, tuple(missing))


async def gather(spec: JobSpec, urls: list[str], store: ContentStore, *, max_bytes: int = DEFAULT_GATHER_BYTES,
                 wasm: bytes = b"", modules: dict[str, bytes] | None = None) -> PreparedJob:
    """``spec`` prepared for :func:`reexecute`: what ``store`` lacks of its module, imported modules
    and inputs is fetched by CID from ``urls`` (cod nodes, ``GET /v1/blobs/{cid}``), every block
    checked against its CID (SPEC 9.8), all fetches together at most ``max_bytes``. What no
    node gives stays missing: :func:`lacking` then says what."""
    from .content.fetcher import Budget, Fetcher

    job = held(spec, store, wasm, modules)
    if not urls:
        return job
    fetcher = Fetcher(store.blobs, max_bytes=max_bytes, peers=urls)
    budget = Budget(max_bytes)
    tried: set[str] = set()
    try:
        for _ in range(GATHER_ROUNDS):
            need = [cid for cid in _needed(job) if cid not in tried]
            if not need or budget.spent:
                break
            tried.update(need)
            await fetcher.fetch_all(need, budget)
            job = held(spec, store, job.wasm or wasm, modules)
    finally:
        await fetcher.close()
    return job


def _needed(job: PreparedJob) -> list[str]:
    need = [] if job.wasm else [job.spec.module]
    need += list(job.missing_modules)
    mounted = {item.path for item in job.spec.inputs if item.path in job.sources}
    need += [item.cid for item in job.spec.inputs if item.cid is not None and item.path not in mounted]
    if job.spec.output_base and job.spec.outputs not in job.sources:
        need.append(job.spec.output_base)
    out = []
    for cid in need:
        try:
            out.append(str(CID.parse(cid)))
        except CIDError:
            continue
    return sorted(set(out))
