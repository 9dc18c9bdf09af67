"""A compute node and its HTTP API under /v1 (see SPEC.md section 9 and /v1/openapi.json).

The node keeps its key, blobs, jobs and results under one data directory. Jobs run in
executor processes with bounded concurrency and a bounded queue; past it the node answers
429 with Retry-After. Every finished job gets a signed statement, and a completion number
for the statements feed (GET /v1/statements). A FIL+ policy (``cod.node.policy``) may refuse
a job before it is queued (SPEC.md 9.7).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from .. import __version__, telemetry
from ..content.blobs import BlobStore
from ..content.cid import CID
from ..content.fetcher import Fetcher, client_key
from ..content.listing import Listing, Stopped
from ..content.unixfs import Importer, cid_of_tree
from ..dirlock import DirLock
from ..docker import DockerEngine
from ..errors import (CapExceeded, CheckpointRefused, CodError, EngineUnavailable, InputError, InsufficientStorage, MissingModules,
                      ModuleError, NodeError, NotFound, SpecError, StorageQuotaExceeded)
from ..identity import Identity
from ..jobspec import ENGINE_DOCKER, JobSpec
from ..limits import MAX_TABLES
from ..resultsdir import remove_tree, staging_prefix
from ..statement import Statement
from ..text import printable
from ..wasm import linking
from ..wasm.binary import table_minimums
from ..wasm.engine import profile_id, wasmtime_version
from ..wasm.fault import Fault
from ..web import answers
from ..web.body import check_strings, parse_json
from ..web.files import NOSNIFF, stored_file
from . import disk, joblog, liar, openapi
from .caps import UPLOAD_CAPS, NodeCaps
from .checkpoints import Checkpointer
from .cars import TRANSIENT_CARS, CarCache
from .collector import Plan, Retention, Stored, named_cids, plan
from .contents import BLOB as LISTED_BLOB, DATASET, RESULT as LISTED_RESULT, Contents, Shelf, locate
from .joblog import JobLog
from .metrics import CANCELLED, CONTENT_TYPE, DOWNLOAD, FETCH, UPLOAD, NodeMetrics
from .offers import Offers, overlaps
from .policy import PREFER, Policy
from .pool import RETRY_SECONDS, Pool
from .preparing import PREPARATION_CANCELLED, Preparation
from .store import DONE, FAILED, MAX_STATEMENTS_PAGE, QUEUED, RUNNING, JobStore, public
from .usage import BLOB, RESULT, Usage, tree_bytes

log = logging.getLogger("cod.node")

CAR_TYPE = "application/vnd.ipld.car"
CHUNK = 1 << 20
MAX_JSON_BODY = 1 << 20
MAX_NAME_SHOWN = 200  # characters of a path a 404 repeats
WAIT_GRACE_SECONDS = 30
STATUS = {"SpecError": 400, "CIDError": 400, "ModuleError": 422, "ImportRefused": 422, "InputError": 422,
          "NotFound": 404, "EngineUnavailable": 501, "LocalPathNotAllowed": 403, "MissingBlobs": 409,
          "NodeBusy": 429, "NotCancellable": 409, "NodeError": 400, "PolicyRefused": 403,
          "LedgerUnavailable": 503, "BadQuery": 400, "StorageQuotaExceeded": 507, "InsufficientStorage": 507,
          "CheckpointRefused": 409, "CheckpointUnsupported": 501, "CheckpointBusy": 429}
HINTS = {  # for errors raised without a hint of their own: every error body carries one
    "CIDError": "pack the content with cod or ipfs-car (one root, UnixFS unixfs-v1-2025) and upload it "
                "under its root CID",
    "SpecError": "see SPEC.md section 2 for the job spec; the body is {\"spec\": {...}}",
    "NotFound": "upload it, or ask a node that has it",
}
DEFAULT_STATEMENTS_PAGE = 100
MAX_HOLDINGS = 10000  # CIDs in one list of /v1/holdings, and CIDs one request may ask about
MAX_SEQ = (1 << 63) - 1
HTTP_HINTS = {404: "see /v1/openapi.json for the routes", 405: "see /v1/openapi.json for the methods",
              413: f"JSON bodies are at most {MAX_JSON_BODY} bytes"}


class Node:
    """The state of one compute node; ``app()`` wraps it in an aiohttp application."""

    def __init__(self, data_dir: Path, *, concurrency: int | None = None, queue_size: int = 64,
                 allow_local: list[Path] | None = None, cheat: bool | str | None = False,
                 lie_seed: bytes = liar.DEFAULT_SEED,
                 docker: DockerEngine | None = None, caps: NodeCaps | None = None,
                 policy: Policy | None = None, job_log: JobLog | None = None,
                 peers: list[str] | None = None, gateways: list[str] | None = None,
                 datasets: list[Path] | None = None, private_modules: list[Path] | None = None,
                 retention: Retention | None = None, clock: Callable[[], int] = time.time_ns,
                 cache_dir: Path | None = None) -> None:
        """Open (or create) the node's data directory; raises NodeError if it cannot be used.

        ``job_log`` receives one record (cod.node.joblog) per finished job; ``peers`` (cod
        nodes) and ``gateways`` (IPFS trustless gateways) are asked for content a job names
        and the node lacks (cod.content.fetcher); ``datasets`` and ``private_modules`` are what it
        offers from its own disk (cod.node.offers; InputError if one cannot be offered);
        ``retention`` what it keeps and each client's quota (cod.node.collector), judged by
        ``clock`` (ns; the host's, or a test's), which never reaches a result. ``cache_dir`` is
        where its executors keep compiled modules (default ``data_dir/cache``); an embedded
        devstack gives its nodes the requester's, so a module is compiled once on the machine.
        ``cheat`` (devstack only) makes a liar (cod.node.liar): None or False honest, "late"
        (or True), "early" or "random"; liars with the same ``lie_seed`` tell the same lie."""
        self.cheat = liar.mode_of(cheat)  # devstack only: a lying node, for testing verifiers (UsageError)
        self.lie_seed = bytes(lie_seed)
        self._lie_calls: dict[str, int] = {}  # job CID -> the countable calls of its honest run
        self.data_dir = data_dir
        self.retention = retention or Retention()
        self.clock = clock
        self._clients: dict[str, str] = {}  # job CID -> the address its results are charged to
        home = Path(os.path.realpath(data_dir))
        for root in allow_local or []:  # a job may mount any path under an allow-listed root: never node.key
            if overlaps(Path(os.path.realpath(root)), home):
                raise InputError(f"allow-listed local path {str(root)!r} overlaps the node's data directory "
                                 f"{str(data_dir)!r} (jobs could read the node's key)",
                                 "allow-list directories apart from --data-dir, or move --data-dir out of them")
        self.offers = Offers(datasets, private_modules, home=data_dir)  # first: a bad offer leaves no data directory behind
        for module in self.offers.private.values():  # any job may read an allow-listed path
            if any(root.resolve() in module.parents for root in allow_local or []):
                raise InputError(f"private module {str(module)!r} is under an allow-listed local path",
                                 "keep private modules out of --allow-listed-local-paths")
        self.caps = caps or NodeCaps()  # before the stores: max_entries bounds their listings
        try:
            self._open(data_dir)
        except (OSError, sqlite3.Error) as exc:
            why = disk.unwritable(exc)  # a permission error keeps its own message below
            if why:
                raise InsufficientStorage(f"the disk of the node's data directory {data_dir} is {why}: {exc}",
                                          disk.HINTS[why]) from None
            raise NodeError(f"cannot use {data_dir} as the node's data directory: {exc}",
                            "give --data-dir a writable directory (it is created if missing)") from None
        self.policy = policy or Policy()
        self.policy.start(self.identity)
        self.ordinary: set[str] = set()  # active jobs that are not FIL+ (prefer-fil-plus keeps half for FIL+)
        self.concurrency = concurrency or max(1, os.cpu_count() or 1)
        self.queue_size = queue_size
        self.allow_local = [p.resolve() for p in (allow_local or [])]
        self.docker = docker or DockerEngine()
        self.docker_ok = False
        self.pool = Pool(self.concurrency, cache_dir or data_dir / "cache")
        self.profile = profile_id()
        self.active = 0
        self._done: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listings: set[asyncio.Task[Any]] = set()  # listings of trees being written (SPEC 9.9, contents)
        # one thread of their own: a big result's listing (a second hash) never takes a thread admitting jobs
        self._lister = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cod-list")
        self._running: dict[str, asyncio.Task[None]] = {}
        self._mounted: dict[str, set[str]] = {}  # queued or running job -> the roots of the trees its sources lie in
        self._cancelled: set[str] = set()
        self._preparing: dict[str, Preparation] = {}  # jobs submitted, not queued yet (SPEC 9.6)
        self._cancelling: dict[str, Preparation] = {}  # preparations cancelled, not ended yet
        self.job_log = job_log
        # guest telemetry (SPEC 5.5): when set, jobs collect it, and it is called on the event loop
        # (so it must not block) with (job CID, cod.wasm.observe report) after each wasm run that
        # has a result; the report is never part of the result, the statement or the job record
        self.guest_telemetry: Callable[[str, dict[str, Any]], None] | None = None
        self.fetcher = Fetcher(self.blobs, self.caps.max_upload_bytes, self.caps.tree(), peers, gateways,
                               self.caps.max_fetch_cids)
        self.metrics = NodeMetrics(lambda: self.active)
        self.checkpointer = Checkpointer(self)  # traces only when a dispute asks (SPEC 11.7)

    def _open(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.lock = DirLock.take(data_dir, "data directory", "--data-dir")  # one process per data dir
        try:
            self.identity = Identity.load_or_create(data_dir)
            # the CID of every file and directory in what the node holds (SPEC 9.9, contents)
            self.contents = Contents(data_dir / "contents.db")
            self.blobs = BlobStore(data_dir / "blobs", Shelf(self.contents, LISTED_BLOB, self.caps.max_entries))
            self.jobs = JobStore(data_dir / "jobs.db")  # marks jobs of an earlier life that did not finish failed
            self.results = data_dir / "results"
            self.results.mkdir(exist_ok=True)
            self.cars = CarCache(data_dir / "cars")  # every CAR the node serves: built once, off the job path
            self.usage = Usage(data_dir / "usage.db")  # bytes per client, times of use (SPEC 9.11)
            self._drop_unadopted()
            copies = BlobStore(data_dir / "datasets", Shelf(self.contents, DATASET, self.caps.max_entries))
            self.offers.keep_copies(copies)  # jobs read the node's checked copy (SPEC 9.9)
        except BaseException:
            self.lock.release()
            raise

    def _drop_unadopted(self) -> None:
        """Remove every results entry that is not a done job's: staging dirs of runs an earlier
        life of the node did not finish, and results of jobs it marked failed. A restarted node
        never adopts them."""
        done = self.jobs.done_cids()
        for entry in sorted(os.listdir(self.results)):
            if entry not in done:
                path = self.results / entry
                if path.is_dir() and not path.is_symlink():
                    remove_tree(path)  # iterative: whatever depth a killed run left
                else:
                    path.unlink()

    async def start(self) -> None:
        await self.pool.warm()
        self.docker_ok = await self.docker.available()
        results = {job: result for job, _seq, result in self.jobs.done_rows() if (self.results / job).is_dir()}
        self._in_background(self._off_loop(self._list_unlisted, results))
        if self.retention.collect_every_s:
            task = asyncio.create_task(self._collect_forever())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _off_loop(self, work: Callable[..., None], *args: Any) -> None:
        """Run ``work(*args)`` in the listing thread."""
        await asyncio.get_running_loop().run_in_executor(self._lister, work, *args)

    def _in_background(self, work: Any) -> None:
        """Run ``work`` (listing trees, cod.node.contents) off every answer's path; :meth:`listed` waits for it."""
        task: asyncio.Task[Any] = asyncio.create_task(work)
        self._tasks.add(task)
        self._listings.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(self._listings.discard)

    async def listed(self) -> None:
        """Wait until the listings under way now are written (a result's, the catch-up at start)."""
        await asyncio.gather(*self._listings, return_exceptions=True)

    async def stop(self) -> None:
        self.pool.closing = True  # listings under way end at their next entry (they are threads: waited for)
        await self.listed()
        self._lister.shutdown(wait=False)
        tasks = list(self._tasks) + [p.task for p in self._preparing.values() if p.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.policy.close()
        await self.fetcher.close()
        await self.pool.close()
        self.cars.close()
        self.contents.close()
        self.usage.close()
        self.metrics.close()
        self.checkpointer.close()
        self.lock.release()

    # -- info -------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return {
            "node_id": self.identity.node_id,
            "public_key": self.identity.public_key.hex(),
            "capabilities": ["wasm"] + (["docker"] if self.docker_ok else []),
            "versions": {"cod": __version__, "wasmtime": wasmtime_version(), "python": platform.python_version()},
            "profile": self.profile,
            "limits": {"concurrency": self.concurrency, "queue_size": self.queue_size, **self.caps.published()},
            "allow_listed_local_paths": [str(p) for p in self.allow_local],
            "policy": self.policy.published(),
            "storage": self.retention.published(),
            "checkpoints": self.checkpointer.published(),
        }

    def health(self) -> tuple[int, dict[str, Any]]:
        """GET /v1/health (SPEC 9.2): ok when every executor is up or being started, degraded
        when some cannot start, unavailable (503) when none is up or starting: no job can run."""
        workers = self.pool.alive_workers()
        able = workers + self.pool.starting()
        body: dict[str, Any] = {"status": "ok", "active_jobs": self.active, "workers": workers,
                                "concurrency": self.concurrency}
        if able >= self.concurrency:
            return 200, body
        body["status"] = "degraded" if able else "unavailable"
        body["message"] = self.pool.start_error or "executor processes are being replaced"
        body["hint"] = (f"the node tries again every {RETRY_SECONDS:g} s; see its log for why executors cannot "
                        "start (a full disk, memory, a broken install)")
        return (200 if able else 503), body

    # -- jobs -------------------------------------------------------------------------
    async def submit(self, body: Any, wait: bool, client: str = "") -> tuple[int, dict[str, Any]]:
        """Queue the job of ``body`` (unless the node has it) and answer its record. ``client`` is
        the requester's address: its jobs share its fetch slots (cod.content.fetcher).

        Checks in order: the body and spec (SpecError), the caps (CapExceeded), the policy for a
        job the node does not have (PolicyRefused, LedgerUnavailable), the blobs (MissingBlobs; a job
        it has, queued, running or done, is answered as it is and fetches nothing),
        the engine, the places (Busy), the client's storage quota (StorageQuotaExceeded, SPEC
        9.11). Nothing is stored when one refuses.
        """
        if not isinstance(body, dict) or "spec" not in body:
            raise SpecError("(request)", "the body must be a JSON object with a 'spec'")
        unknown = sorted(set(body) - {"spec"})
        if unknown:
            raise SpecError(f"(request).{unknown[0]}", "unknown member", "the body is {\"spec\": {...}}")
        spec = JobSpec.from_dict(body["spec"])  # names the field of a bad string
        check_strings(body)
        self.caps.check_spec(spec)
        job_cid = str(spec.cid)
        row = self.jobs.get(job_cid)
        prep: Preparation | None = None
        if self._runnable(row):  # a job the node has (done, queued) is answered as it is
            prep = self._preparing.get(job_cid)
            if prep is None:
                prep = self._preparing[job_cid] = Preparation(spec)
            prep.users += 1
        try:
            cancelled = await self._prepare_and_queue(spec, job_cid, prep, client)
        except CodError:
            if prep is None or not prep.cancelled:
                raise
            cancelled = True  # what failed after the cancel is moot: the job is cancelled
        finally:
            if prep is not None:
                self._leave(job_cid, prep)
        if cancelled:
            assert prep is not None and prep.record is not None
            return 200, prep.record
        if wait:
            event = self._done.get(job_cid)
            if event is not None:
                try:
                    await asyncio.wait_for(event.wait(), spec.limits.timeout_ms / 1000 + WAIT_GRACE_SECONDS)
                except asyncio.TimeoutError:
                    pass  # answered as it stands (202): the pool kills what overruns, so this is rare
        row = self.jobs.get(job_cid)
        assert row is not None
        return (200 if row["state"] in (DONE, FAILED) else 202), public(row)

    async def _prepare_and_queue(self, spec: JobSpec, job_cid: str, prep: Preparation | None, client: str) -> bool:
        """Check the job, fetch what it lacks and queue it, unless the node has it; True when it
        was cancelled meanwhile (DELETE, SPEC 9.6)."""
        if prep is None:  # a job the node has (queued, running, done) is answered as it is: nothing fetched
            await self._touch_blobs(spec, client)
            return False
        fil_plus = await self.policy.admit(spec, job_cid)  # PolicyRefused, LedgerUnavailable
        self.within_quota(client, 0, "this job")  # before anything is fetched for it
        if prep.cancelled:
            return True
        if prep.task is None:  # the first submission starts the fetch; the others wait on it
            prep.task = asyncio.create_task(self._gather(spec, client))
            prep.task.add_done_callback(_retrieved)  # its error is read by a submission, or by none
        await asyncio.wait({prep.task})
        if prep.cancelled:
            return True
        if prep.task.cancelled():
            raise NodeError("the node stopped while it fetched the job's inputs", "submit the job again")
        sources = prep.task.result()  # MissingBlobs, ...
        module, trees = await asyncio.to_thread(self._job_reads, spec, sources)
        if spec.engine != ENGINE_DOCKER and module is None:  # a dataset holding it changed meanwhile
            raise MissingBlobs([spec.module])
        self.caps.check_memory(spec, await asyncio.to_thread(self._tables, spec))  # the modules are at hand now
        base_bytes = await self._touch_blobs(spec, client, trees, sources.get(spec.outputs))
        if prep.cancelled:
            return True
        row = self.jobs.get(job_cid)  # again: another request may have queued it while the ledger answered
        if self._runnable(row):  # from here to the queueing, no await: a cancel lands before or after
            if spec.engine == ENGINE_DOCKER and not self.docker_ok:
                raise EngineUnavailable("this node has no Docker-compatible engine",
                                        "send docker jobs to a node whose /v1/info lists 'docker'")
            if self.active >= self.concurrency + self.queue_size:
                raise Busy()
            if not fil_plus and len(self.ordinary) >= self.ordinary_places:
                reason = (f"this node keeps half its places for FIL+ jobs (policy prefer-fil-plus) and "
                          f"{len(self.ordinary)} job(s) without blessed inputs hold the other half")
                self.policy.report(job_cid, (), reason)
                raise Busy(reason, "retry after the Retry-After delay, or run the job on blessed FIL+ inputs")
            self.within_quota(client, base_bytes, "this job's output base")
            self.jobs.add(job_cid, spec.to_dict())  # first: a full disk refuses the job before it holds a place
            if not fil_plus:
                self.ordinary.add(job_cid)
            self._clients[job_cid] = client
            self.active += 1
            self._done[job_cid] = asyncio.Event()
            task = asyncio.create_task(self._run(job_cid, spec, sources, module))
            self._tasks.add(task)
            self._running[job_cid] = task
            self._mounted[job_cid] = trees  # the collector keeps them (SPEC 9.11)
            task.add_done_callback(self._tasks.discard)
            if self._preparing.get(job_cid) is prep:  # queued: a DELETE now cancels the queued job
                del self._preparing[job_cid]
        return False

    def _leave(self, job_cid: str, prep: Preparation) -> None:
        """A submission is done with ``prep``; the last one ends it (and its fetch, if under way)."""
        prep.users -= 1
        if prep.users == 0:
            if self._preparing.get(job_cid) is prep:
                del self._preparing[job_cid]
            if prep.task is not None and not prep.task.done():
                prep.task.cancel()  # no one waits for what it fetches: its fetch slots go now
            self._ended(job_cid, prep)

    def _ended(self, job_cid: str, prep: Preparation) -> None:
        """Forget a cancelled preparation once its fetch ended and no submission waits on it."""
        if self._cancelling.get(job_cid) is prep and prep.users == 0 and (prep.task is None or prep.task.done()):
            del self._cancelling[job_cid]

    def record(self, job_cid: str) -> dict[str, Any]:
        """GET /v1/jobs/{cid}: the job's record, or state ``preparing`` while the node prepares a
        submission of it (fetching its inputs) that is not queued yet."""
        row = self.jobs.get(job_cid)
        prep = self._preparing.get(job_cid)
        if prep is not None and self._runnable(row):
            return prep.public(job_cid)
        return public(self.job(job_cid))

    def _runnable(self, row: dict[str, Any] | None) -> bool:
        """Whether a submission runs the job: new, failed, or done with its results collected (9.11)."""
        return row is None or row["state"] == FAILED or (row["state"] == DONE
                                                         and not (self.results / row["job_cid"]).is_dir())

    @property
    def ordinary_places(self) -> int:
        """Places (running + queued) jobs that are not FIL+ may hold: all under ``any`` and
        ``fil-plus-only`` (which refuses them anyway), half (at least one) under prefer-fil-plus."""
        places = self.concurrency + self.queue_size
        return max(1, places // 2) if self.policy.name == PREFER else places

    def statements(self, after: int, limit: int) -> dict[str, Any]:
        """A page of the statements feed: done jobs after completion number ``after``."""
        rows = self.jobs.statements(after, limit)
        return {"statements": rows, "next": rows[-1]["seq"] if rows else after}

    async def _gather(self, spec: JobSpec, client: str = "") -> dict[str, str]:
        """The job's sources, after fetching what it lacks from peers and gateways; raises
        MissingBlobs for what none of them gave. A fetched module may name modules by CID that
        could not be seen before (SPEC 5.4), so this repeats while each round fetches a CID
        not asked for before (at most linking.MAX_DEPTH + 1 rounds). A round that would take
        the job past max_fetch_cids fetches nothing: MissingBlobs, saying so."""
        asked: set[str] = set()
        budget = self.fetcher.budget(client)  # all rounds together: bytes, CIDs, time (SPEC 9.8)
        for _ in range(linking.MAX_DEPTH + 1):
            try:  # in a thread: a dataset's fingerprint, a private module's hash, a closure take a while
                return await asyncio.to_thread(self._sources, spec)
            except MissingBlobs as lacking:
                new = [cid for cid in lacking.missing if cid not in asked]
                if not self.fetcher.sources or not new:
                    raise
                if not budget.claim(len(new)):
                    raise MissingBlobs(lacking.missing, f"this node fetches at most max_fetch_cids = "
                                       f"{budget.max_cids} CIDs for one job and this one lacks "
                                       f"{len(asked) + len(new)}") from None
                asked.update(new)
                before = self.fetcher.fetched_bytes
                try:
                    await self.fetcher.fetch_all(new, budget)
                finally:
                    self.metrics.moved(FETCH, self.fetcher.fetched_bytes - before)
        return await asyncio.to_thread(self._sources, spec)

    def _sources(self, spec: JobSpec) -> dict[str, str]:
        missing = []
        if spec.engine != ENGINE_DOCKER and self._module(spec.module) is None:
            missing.append(spec.module)
        missing.extend(self._dependency_blobs(spec)[1])
        sources: dict[str, str] = {}
        datasets: dict[str, Path | None] = {}  # each dataset fingerprinted once, however many inputs name it
        trees: dict[tuple[str, str], Path | None] = {}  # and each tree inputs lie in looked at once
        for item in spec.inputs:
            if item.local is not None:
                sources[item.path] = str(self._local(item.local))
                continue
            assert item.cid is not None
            if item.cid not in datasets:
                datasets[item.cid] = trees[(DATASET, item.cid)] = self.offers.dataset(item.cid)
            found = (datasets[item.cid] or self.blobs.tree(item.cid)
                     or self.blobs.file(item.cid))  # a file CID mounts as a file
            if found is None:  # a file or directory inside what the node holds mounts as itself
                inner = self.inside(item.cid, trees)
                found = inner[0] if inner is not None else None
            if found is None:
                missing.append(item.cid)
            else:
                sources[item.path] = str(found)
        if spec.output_base is not None:  # resolved like an input; the executor copies it
            base = self.blobs.tree(spec.output_base)
            if base is None:
                inner = self.inside(spec.output_base, trees)
                base = inner[0] if inner is not None and inner[1] else None
            if base is None:
                missing.append(spec.output_base)
            else:
                sources[spec.outputs] = str(base)
        if missing:  # each CID once: at most cod.limits.MAX_JOB_CIDS (SPEC 9.5)
            raise MissingBlobs(list(dict.fromkeys(missing)))
        return sources

    def _module(self, cid: str) -> Path | None:
        """The module ``cid``: an uploaded or fetched blob, a private module of this node, or a
        file inside a tree it holds (SPEC 9.9, contents; the executor checks the bytes it runs)."""
        found = self.blobs.file(cid) or self.offers.module(cid)
        if found is None:
            inner = self.inside(cid)
            found = inner[0] if inner is not None and not inner[1] else None
        return found

    def inside(self, cid: str, trees: dict[tuple[str, str], Path | None] | None = None,
               checked: bool = True) -> tuple[Path, bool] | None:
        """The file or directory ``cid`` inside a tree the node holds (SPEC 9.9, contents), and
        whether it is a directory; None when no held tree has it (or it is a private module's
        CID: its bytes never leave the node). ``checked``: a dataset's fingerprint is taken
        first, as before a job is given it (/v1/holdings, a hint, does not). ``trees``
        memoizes the trees looked at across the lookups of one request."""
        if cid in self.offers.private:
            return None
        for kind, root, path, is_dir in self.contents.find(cid):
            key = (kind, root)
            if trees is not None and key in trees:
                base = trees[key]
            else:
                base = self._listed_tree(kind, root, checked)
                if trees is not None:
                    trees[key] = base
            found = locate(base, path, is_dir) if base is not None else None
            if found is not None:
                return found, is_dir
        return None

    def _listed_tree(self, kind: str, root: str, checked: bool = True) -> Path | None:
        """Listed tree ``root`` if the node still holds it as listed: a stored tree, a dataset
        still offered under that CID (its fingerprint taken, cod.node.offers), a done job's results."""
        if kind == LISTED_BLOB:
            return self.blobs.tree(root)
        if kind == DATASET:
            return self.offers.dataset(root) if checked else self.offers.copy_of(root)
        path = self.results / root
        return path if kind == LISTED_RESULT and path.is_dir() and not path.is_symlink() else None

    def _list_result(self, job_cid: str, out: Path, result_cid: str) -> None:
        """List the results of a done job (their root included) as the tree of ``job_cid``."""
        listing = Listing(self.caps.max_entries, stop=lambda: self.pool.closing)
        try:
            root = str(Importer(entries=listing).tree(out).cid)
        except Stopped:  # the node stops: listed at its next start
            return
        except (OSError, CodError) as exc:
            log.warning("the results of job %s were not listed: %s", job_cid, exc)
            return
        if root == result_cid:
            self.contents.add(LISTED_RESULT, job_cid, listing)

    def _list_unlisted(self, results: dict[str, str]) -> None:
        """At start: list what the node holds and has no listing of (stored by an earlier version,
        or before a crash), and forget the listings of what it no longer holds. ``results``: the
        done jobs with results, and their result CIDs."""
        try:
            for kind, store in ((LISTED_BLOB, self.blobs), (DATASET, self.offers.copies)):
                held = set(os.listdir(store.trees)) if store is not None else set()
                if kind == DATASET:  # a copy of a version no longer offered answers nothing: not listed
                    held &= set(self.offers.dataset_cids())
                listed = self.contents.listed(kind)
                for root in sorted(listed - held):
                    self.contents.drop(kind, root)
                for root in sorted(held - listed):
                    tree = store.tree(root) if store is not None and not self.pool.closing else None
                    if tree is None:
                        continue
                    listing = Listing(self.caps.max_entries, stop=lambda: self.pool.closing)
                    if str(Importer(entries=listing).tree(tree).cid) == root:
                        self.contents.add(kind, root, listing)
            listed = self.contents.listed(LISTED_RESULT)
            for job in sorted(listed - set(results)):
                self.contents.drop(LISTED_RESULT, job)
            for job in sorted(set(results) - listed):
                if not self.pool.closing:
                    self._list_result(job, self.results / job, results[job])
        except Stopped:  # the node stops: the rest is listed at its next start
            pass
        except Exception:  # a listing is a hint: never fails the node
            log.exception("what the node holds was not all listed")

    def holdings(self, wanted: list[str]) -> dict[str, Any]:
        """What the node holds (SPEC 9.9), each list sorted and at most MAX_HOLDINGS long;
        with ``wanted``, only those CIDs, and ``inside``: those that are a file or directory of
        a tree it holds (never listed without ``wanted``)."""
        def listed(folder: Path) -> list[str]:
            try:
                return sorted(os.listdir(folder))
            except OSError:
                return []

        keep = set(wanted)
        if wanted:  # only the CIDs asked about: no listing of the whole store
            blobs = sorted(cid for cid in keep if self.blobs.has(cid))
        else:
            blobs = [cid for cid in listed(self.blobs.files) + listed(self.blobs.trees) if self.blobs.has(cid)]
        modules = [cid for cid in blobs if self.blobs.file(cid) is not None and _is_wasm(self.blobs.files / cid)]
        lists = {"datasets": self.offers.dataset_cids(), "private_modules": sorted(self.offers.private),
                 "modules": modules, "blobs": sorted(blobs)}
        if wanted:
            lists = {name: [cid for cid in cids if cid in keep] for name, cids in lists.items()}
            trees: dict[tuple[str, str], Path | None] = {}
            lists["inside"] = [cid for cid in sorted(keep) if self.inside(cid, trees, checked=False) is not None]
        else:
            lists["inside"] = []
        truncated = any(len(cids) > MAX_HOLDINGS for cids in lists.values())
        return {**{name: cids[:MAX_HOLDINGS] for name, cids in lists.items()}, "truncated": truncated}

    def _dependency_blobs(self, spec: JobSpec) -> tuple[dict[str, str], list[str]]:
        """The modules the job's module imports by CID (SPEC 5.4), resolved from stored blobs:
        (blob path by CID of those held, CIDs of those missing, as far as they can be found
        from what is held). A closure that is wrong in another way is left to the executor,
        which refuses the job and says why."""
        module = self._module(spec.module) if spec.engine != ENGINE_DOCKER else None
        paths: dict[str, str] = {}
        if module is None:
            return paths, []

        def resolve(cid: str) -> bytes | None:
            path = self._module(cid)
            if path is None:
                return None
            try:
                found = path.read_bytes()
            except OSError:  # removed meanwhile: missing
                return None
            paths[cid] = str(path)
            return found

        try:
            linking.closure(module.read_bytes(), resolve)
        except OSError:
            return paths, [spec.module]
        except MissingModules as exc:
            return paths, exc.missing
        except ModuleError:
            pass
        return paths, []

    def _tables(self, spec: JobSpec) -> int:
        """How many tables the job's module and the modules it imports by CID define (SPEC 5.3):
        MAX_TABLES for a module whose table section cannot be read here (the executor decides)."""
        if spec.engine == ENGINE_DOCKER:
            return 0
        module = self._module(spec.module)
        paths = [module] if module is not None else []
        count = 0
        for path in paths + [Path(p) for p in self._dependency_blobs(spec)[0].values()]:
            try:
                minimums = table_minimums(path.read_bytes())
            except (OSError, IndexError, ModuleError):  # not yet validated by the engine: counted at the most
                minimums = None
            count += MAX_TABLES if minimums is None else min(len(minimums), MAX_TABLES)
        return count

    def _local(self, path: str) -> Path:
        real = Path(path).resolve()
        if not any(real == root or root in real.parents for root in self.allow_local):
            raise LocalPathNotAllowed(
                f"local path {path} is not under this node's allow-listed roots",
                "start the node with --allow-listed-local-paths covering it",
            )
        if not real.is_dir():
            raise NotFound(f"local path {path} is not a directory on this node")
        return real

    async def cancel(self, job_cid: str) -> dict[str, Any]:
        """Cancel a job being prepared, queued or running: its fetch or executor is stopped, its
        state becomes failed (error ``Cancelled``). Raises NotFound, or NotCancellable for a
        finished job."""
        if job_cid not in self._running:
            prep = self._preparing.get(job_cid) or self._cancelling.get(job_cid)
            if prep is not None:
                return await self._cancel_preparation(job_cid, prep)
        row = self.job(job_cid)
        task = self._running.get(job_cid)
        if row["state"] in (QUEUED, RUNNING) and task is None:  # its run ended without a record: end it now
            self.jobs.fail(job_cid, json.dumps(CANCELLED_ERROR))
            return public(self.job(job_cid))
        if row["state"] not in (QUEUED, RUNNING) or task is None:
            raise NotCancellable(f"job {job_cid} is {row['state']}, not queued or running",
                                 "only queued or running jobs can be cancelled")
        if job_cid not in self._cancelled:  # once: a second cancel would land in the first one's clean-up
            self._cancelled.add(job_cid)
            task.cancel()
        await asyncio.wait({task})
        return public(self.job(job_cid))

    async def _cancel_preparation(self, job_cid: str, prep: Preparation) -> dict[str, Any]:
        """Record the job failed (``Cancelled``), then stop its fetch and answer once the fetch
        ended (its fetch slots free). Its submissions answer that record; a later one prepares
        the job anew. A second DELETE meanwhile waits for the same end."""
        if not prep.cancelled:  # no await until the cancel is recorded: a submission cannot queue the job meanwhile
            self.jobs.add(job_cid, prep.spec.to_dict())  # a full disk: 507, and nothing cancelled (SPEC 9.5)
            self.jobs.fail(job_cid, json.dumps(PREPARATION_CANCELLED))
            prep.record = public(self.job(job_cid))
            prep.cancelled = True
            del self._preparing[job_cid]
            self._cancelling[job_cid] = prep  # until its fetch ended and its submissions answered
            if prep.task is not None:
                prep.task.cancel()
        try:
            if prep.task is not None:
                await asyncio.wait({prep.task})
        finally:
            self._ended(job_cid, prep)
        assert prep.record is not None
        return prep.record

    async def _run(self, job_cid: str, spec: JobSpec, sources: dict[str, str], module: Path | None) -> None:
        with telemetry.span("node.job", {"cod.job_cid": job_cid}) as span:  # under node.submit's span
            await self._run_traced(job_cid, spec, sources, module, telemetry.ids_of(span))

    async def _run_traced(self, job_cid: str, spec: JobSpec, sources: dict[str, str], module: Path | None,
                          trace: tuple[str, str] | None) -> None:
        out = self.results / job_cid
        started = time.monotonic()
        try:
            self.jobs.update(job_cid, state=RUNNING)
            if out.exists():
                await asyncio.to_thread(shutil.rmtree, out)
            if spec.engine == ENGINE_DOCKER:
                outcome = await self._run_docker(spec, sources, out)
            else:
                assert module is not None  # resolved when the job was queued
                outcome = await self._run_wasm(job_cid, spec, module, sources, out)
            if "error" in outcome:
                self.jobs.update(job_cid, state=FAILED, error=json.dumps(outcome))
                return
            if self.cheat is not None:
                outcome = await self._lie(job_cid, spec, module, sources, out, outcome)
            with telemetry.span("node.sign"):
                statement = Statement(job=job_cid, result=outcome["result_cid"], node=self.identity.node_id,
                                      profile=outcome["profile"], exit_code=outcome["exit_code"],
                                      trap=outcome["trap"], fuel_used=outcome["fuel_used"]).sign(self.identity)
            self.jobs.update(job_cid, state=DONE, result_cid=outcome["result_cid"], exit_code=outcome["exit_code"],
                             trap=outcome["trap"], fuel_used=outcome["fuel_used"], profile=outcome["profile"],
                             statement=json.dumps(statement.to_json(), sort_keys=True))
            self._in_background(self._off_loop(self._list_result, job_cid, out, outcome["result_cid"]))
            await self._charge_result(job_cid, out)
        except asyncio.CancelledError:
            if job_cid not in self._cancelled:
                raise  # the node is stopping: a restart marks the job failed (Interrupted)
            await asyncio.to_thread(shutil.rmtree, out, True)
            self.jobs.fail(job_cid, json.dumps(CANCELLED_ERROR))
        except Exception as exc:  # a node bug or a full disk must fail the job, never the node
            why = disk.unwritable(exc, self.data_dir)
            if why:
                log.error("job %s failed: the node's disk is %s (%s)", job_cid, why, exc)
                error = UNWRITABLE_DISK_ERRORS[why]
            else:
                log.exception("job %s failed inside the node", job_cid)
                error = {"error": type(exc).__name__, "message": str(exc)[:500]}
            await asyncio.to_thread(shutil.rmtree, out, True)  # a failed job keeps no results (and frees space)
            self.jobs.fail(job_cid, json.dumps(error))  # kept in memory until the disk has room, if need be
        finally:
            self.active -= 1
            self.ordinary.discard(job_cid)
            self._cancelled.discard(job_cid)
            self._running.pop(job_cid, None)
            self._mounted.pop(job_cid, None)
            self._clients.pop(job_cid, None)
            self._done.pop(job_cid, asyncio.Event()).set()
            self._finished(job_cid, time.monotonic() - started, trace)

    def _finished(self, job_cid: str, seconds: float, trace: tuple[str, str] | None) -> None:
        """Count the finished job and log its line (with the IDs of its span, when traced)."""
        try:
            row = self.jobs.get(job_cid)
            if row is None or row["state"] not in (DONE, FAILED):
                return
            cancelled = row["state"] == FAILED and '"Cancelled"' in (row.get("error") or "")
            self.metrics.finished(CANCELLED if cancelled else row["state"], seconds, row.get("fuel_used"))
            if self.job_log is not None:
                self.job_log(joblog.record(self.identity.node_id, row, seconds, trace))
        except Exception:  # counting and logging never fail a job or the node
            log.exception("cannot log job %s", job_cid)

    def fault_for(self, job_cid: str) -> Fault | None:
        """The fault this node runs job ``job_cid`` with (a fresh one each call), so that every
        re-run of the job (a checkpoint's) repeats its lie: None for an honest node or a late
        liar; for a random liar, a function of the seed, the job and the countable calls of the
        job's honest run (:func:`cod.node.liar.fault_for`), which the node counts when it first
        runs the job (LookupError before). When the faulted run's result is the honest one, the
        node told the late lie on top (appended to stdout after the run)."""
        if self.cheat != "random":
            return liar.fault_for(self.cheat, self.lie_seed, job_cid, 0)
        if job_cid not in self._lie_calls:
            raise LookupError(f"this node has not run job {job_cid}: the random lie needs its count of calls")
        return liar.fault_for(self.cheat, self.lie_seed, job_cid, self._lie_calls[job_cid])

    async def _lie(self, job_cid: str, spec: JobSpec, module: Path | None, sources: dict[str, str], out: Path,
                   honest: dict[str, Any]) -> dict[str, Any]:
        """The outcome a liar signs instead of ``honest`` (its results at ``out``): the faulted run's
        (early, random) when it fired and changed the result, else the late lie (cod.node.liar)."""
        counted = honest.pop("fault", None)
        if isinstance(counted, dict) and isinstance(counted.get("calls"), int):
            self._lie_calls[job_cid] = counted["calls"]
        fault = self.fault_for(job_cid) if module is not None and job_cid in self._lie_calls else None
        if fault is not None:
            assert module is not None
            faulted = await self._run_wasm(job_cid, spec, module, sources, out, fault)
            fired = faulted.pop("fault", {}).get("fired")
            if "error" not in faulted and fired is not None and faulted["result_cid"] != honest["result_cid"]:
                return faulted
            if "error" not in faulted:  # the results at out are the honest ones again
                honest = {**faulted, "result_cid": honest["result_cid"]}
        # a failed faulted run left the honest results at out (a run replaces them only once complete)
        return {**honest, "result_cid": await asyncio.to_thread(liar.tell_late, out, self.lie_seed)}

    async def _run_wasm(self, job_cid: str, spec: JobSpec, module: Path, sources: dict[str, str],
                        out: Path, fault: Fault | None = None) -> dict[str, Any]:
        """Run in an executor process; the results appear at ``out`` only on success (the
        executor stages beside it and renames). What a crashed, cancelled or killed run left
        is removed here (and, after a kill of the node, by the restart). A liar that lies early
        or at random runs with a ``fault`` (first a counting one, cod.node.liar)."""
        if fault is None and self.cheat in ("early", "random"):
            fault = Fault.counter()
        try:
            modules, _ = await asyncio.to_thread(self._dependency_blobs, spec)
            outcome = await self.pool.run(spec.canonical_bytes().decode(), module, sources, out,
                                          spec.limits.timeout_ms / 1000, modules, timed=telemetry.enabled(),
                                          guest_telemetry=self.guest_telemetry is not None or telemetry.enabled(),
                                          fault=fault.to_json() if fault is not None else None)
        except asyncio.CancelledError:
            await asyncio.to_thread(self._remove_staging, out)
            raise
        if "error" in outcome:
            await asyncio.to_thread(self._remove_staging, out)
        self._hand_on_telemetry(job_cid, outcome.pop("guest_telemetry", None))
        return outcome

    def _hand_on_telemetry(self, job_cid: str, report: Any) -> None:
        """Give the guest's telemetry to the trace (spans under the job's span, when tracing is
        on) and to the hook; telemetry never fails a job."""
        if not isinstance(report, dict):
            return
        try:
            telemetry.guest(report)
            if self.guest_telemetry is not None:
                self.guest_telemetry(job_cid, report)
        except Exception:
            log.exception("guest telemetry of job %s was not handed on", job_cid)

    def _remove_staging(self, out: Path) -> None:
        prefix = staging_prefix(out)
        for entry in sorted(os.listdir(out.parent)):
            if entry.startswith(prefix):
                remove_tree(out.parent / entry)

    async def _run_docker(self, spec: JobSpec, sources: dict[str, str], out: Path) -> dict[str, Any]:
        staging = Path(tempfile.mkdtemp(dir=self.results, prefix=".docker-"))
        try:
            (staging / "outputs").mkdir()
            code, stdout, stderr = await self.docker.run(
                spec.image, list(spec.args[1:]), dict(spec.env), sources, staging / "outputs",
                spec.limits.timeout_ms / 1000)
            (staging / "stdout").write_bytes(stdout)
            (staging / "stderr").write_bytes(stderr)
            (staging / "exitCode").write_text(str(code))
            os.rename(staging, out)
        except CodError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            return {"error": type(exc).__name__, "code": exc.code, "message": exc.message, "hint": exc.hint}
        with telemetry.span("node.hash"):
            cid = await asyncio.to_thread(cid_of_tree, out)
        return {"result_cid": str(cid), "exit_code": code, "trap": None, "fuel_used": 0, "profile": "docker"}

    def job(self, job_cid: str) -> dict[str, Any]:
        row = self.jobs.get(job_cid)
        if row is None:
            raise NotFound(f"no job {job_cid} on this node")
        return row

    def results_dir(self, job_cid: str) -> Path:
        row = self.job(job_cid)
        path = self.results / job_cid
        if row["state"] != DONE or not path.is_dir():
            raise NotFound(f"job {job_cid} has no results here (state {row['state']})")
        return path

    # -- storage: quotas and the collector (SPEC 9.11) ---------------------------------------
    def within_quota(self, client: str, more: int, what: str) -> None:
        """Raise StorageQuotaExceeded when ``more`` bytes for ``client`` would pass its quota
        (or it has none left)."""
        used, cap = self.usage.charged(client), self.retention.client_bytes
        if used + more > cap or (used >= cap and more == 0):
            raise StorageQuotaExceeded(
                f"this node stores {used} bytes for {client or 'this client'}, its quota is {cap}; {what} "
                f"needs {more} more", f"wait for the node's collector to remove old results (it keeps them "
                f"{self.retention.keep_results_s} s, SPEC 9.11), or use another node")

    def _job_reads(self, spec: JobSpec, sources: dict[str, str]) -> tuple[Path | None, set[str]]:
        """The job's module file, as it is given the job (as its sources are: a job reads what it
        was given to the end), and the roots of the held trees (stored trees, dataset copies; job
        CIDs for results) that its sources, module and imported modules lie in: what it reads,
        whatever the index answers later."""
        paths = list(sources.values())
        module = self._module(spec.module) if spec.engine != ENGINE_DOCKER else None
        if module is not None:
            paths += [str(module), *self._dependency_blobs(spec)[0].values()]
        bases = [self.blobs.trees, self.results] + ([self.offers.copies.trees] if self.offers.copies else [])
        roots = set()
        for source in paths:
            for base in bases:
                parts = Path(source).parts[len(base.parts):]
                if parts and Path(*Path(source).parts[:len(base.parts)]) == base:
                    roots.add(parts[0])
        return module, roots

    async def _touch_blobs(self, spec: JobSpec, client: str, trees: set[str] | None = None,
                           base: str | None = None) -> int:
        """Mark the blobs the job uses as used now (charging those not charged yet, such as
        fetched ones, to ``client``), and the stored ``trees`` its sources lie in; returns the
        bytes of its output base (found at ``base``, when it is no blob of its own: a directory
        inside a held tree)."""
        now = self.clock()
        module = spec.module if spec.engine != ENGINE_DOCKER else None
        named = named_cids(module, [item.cid for item in spec.inputs if item.cid], spec.output_base)
        named |= {root for root in sorted(trees or ()) if self.usage.known(BLOB, root)}
        named |= {root for cid in sorted(named) if not self.usage.known(BLOB, cid)  # a stored tree a named file is in
                  for kind, root, _path, _dir in self.contents.find(cid) if kind == LISTED_BLOB}
        unknown = sorted(cid for cid in named if not self.usage.known(BLOB, cid))
        sizes = await asyncio.to_thread(self._blob_sizes, unknown)
        for cid in sorted(named):
            if cid in sizes or self.usage.known(BLOB, cid):
                self.usage.record(BLOB, cid, client, sizes.get(cid, 0), now)
        if spec.output_base is None:
            return 0
        size = self.usage.size(BLOB, spec.output_base)
        if size is None and base is not None:
            try:
                size = await asyncio.to_thread(tree_bytes, Path(base))
            except OSError:  # its tree went meanwhile (a dataset that changed)
                raise MissingBlobs([spec.output_base]) from None
        return size or 0

    def _blob_sizes(self, cids: list[str]) -> dict[str, int]:
        sizes = {}
        for cid in cids:
            path = self.blobs.file(cid) or self.blobs.tree(cid)
            if path is not None:
                sizes[cid] = tree_bytes(path)
        return sizes

    async def _charge_result(self, job_cid: str, out: Path) -> None:
        try:
            size = await asyncio.to_thread(tree_bytes, out)
            self.usage.record(RESULT, job_cid, self._clients.get(job_cid, ""), size, self.clock())
        except (OSError, sqlite3.Error):  # accounting never fails a job
            log.exception("the results of job %s were not accounted", job_cid)

    async def _collect_forever(self) -> None:
        while True:
            await asyncio.sleep(self.retention.collect_every_s)
            try:
                await self.collect()
            except Exception as exc:  # the collector never stops the node
                why = disk.unwritable(exc, self.data_dir)
                if why:  # no traceback every few minutes for a disk the operator must see to
                    log.error("the storage collector could not remove anything: the node's disk is %s (%s); it runs "
                              "again in %d s", why, exc, self.retention.collect_every_s)
                else:
                    log.exception("the storage collector failed; it runs again in %d s", self.retention.collect_every_s)

    async def collect(self, now_ns: int | None = None) -> dict[str, list[str]]:
        """Remove what the retention no longer keeps at ``now_ns`` (default: the node's clock);
        answers what was removed: {"results": job CIDs, "blobs", "copies", "cars"}."""
        now = self.clock() if now_ns is None else now_ns
        done = [row for row in self.jobs.done_rows() if (self.results / row[0]).is_dir()]
        held_blobs = await asyncio.to_thread(self.blobs.held)
        for cid in held_blobs:  # stored before accounting (an earlier version): kept from now on
            if not self.usage.known(BLOB, cid):
                self.usage.record(BLOB, cid, "", 0, now)
        for job, _seq, _result in done:
            if not self.usage.known(RESULT, job):
                self.usage.record(RESULT, job, "", 0, now)
        held: set[str] = set()
        for job_cid in sorted(self._running):
            row = self.jobs.get(job_cid)
            if row is not None:
                spec = JobSpec.from_dict(json.loads(row["spec"]))
                held |= named_cids(spec.module, [item.cid for item in spec.inputs if item.cid], spec.output_base)
                held |= set((await asyncio.to_thread(self._dependency_blobs, spec))[0])
        # and the trees those lie in (a stored tree, a dataset copy, a job's results: SPEC 9.9 contents)
        held |= {root for cid in sorted(held) for _kind, root, _path, _dir in self.contents.find(cid, strict=True)}
        held |= {root for job_cid in sorted(self._mounted) for root in self._mounted[job_cid]}  # as mounted
        on_disk = set(held_blobs)
        stored = Stored(done=done, finished_ns=self.usage.times(RESULT),
                        blob_used_ns={cid: used for cid, used in self.usage.times(BLOB).items() if cid in on_disk},
                        held=held, datasets=set(self.offers.dataset_cids()),
                        stale_copies=await asyncio.to_thread(self.offers.stale_copies), cars=self.cars.kept())
        removal = plan(self.retention, stored, now)
        used = self.usage.times(BLOB)  # again: a submission may have used a blob while this planned
        removal.blobs = [cid for cid in removal.blobs if used.get(cid, 0) < now - self.retention.keep_blobs_s * 10**9]
        # first, off the loop (a big listing being written holds the index), in the listing thread: a
        # listing of a result being removed is written before this forgets it, never after
        await self._off_loop(self._unlist, removal)
        retired: list[Path] = []  # taken out now, on the loop (renames), so no request sees half a removal
        for job in removal.results:
            self.usage.drop(RESULT, job)
            path = self.results / job
            if path.is_dir() and not path.is_symlink():
                retired.append(path.rename(self.results / f".gc-{job}-{now}"))  # removed at a restart too
        for cid in set(removal.blobs) | (set(used) - on_disk):  # and rows of blobs gone another way
            self.usage.drop(BLOB, cid)
        for cid in removal.blobs:
            retired += self.blobs.retire(cid, unlist=False)
        for cid in removal.copies:
            retired += self.offers.copies.retire(cid, unlist=False) if self.offers.copies is not None else []
        for cid in removal.cars:
            self.cars.remove(cid)
        await asyncio.to_thread(_discard, retired)
        if any((removal.results, removal.blobs, removal.copies)):
            log.info("collector removed %d result(s), %d blob(s), %d dataset copy(ies), %d CAR(s)",
                     len(removal.results), len(removal.blobs), len(removal.copies), len(removal.cars))
        return {"results": removal.results, "blobs": removal.blobs, "copies": removal.copies, "cars": removal.cars}

    def _unlist(self, removal: Plan) -> None:
        """Forget the listings of what ``removal`` (a collector's plan) removes (SPEC 9.9, contents)."""
        for kind, roots in ((LISTED_RESULT, removal.results), (LISTED_BLOB, removal.blobs), (DATASET, removal.copies)):
            for root in roots:
                self.contents.drop(kind, root)

    async def car_of(self, cid: str, tree: Path) -> Path:
        """The CAR of ``tree``, built once and kept as cars/{cid}.car only when its root is
        ``cid`` (cod.node.cars; a dataset can change while its CAR is written: NotFound then)."""
        return await self.cars.get(cid, tree)


def _retrieved(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _discard(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            remove_tree(path)
        else:
            path.unlink(missing_ok=True)


def _is_wasm(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"\0asm"
    except OSError:
        return False


CANCELLED_ERROR = {"error": "Cancelled", "message": "the job was cancelled (DELETE /v1/jobs/{job_cid})"}
FULL_DISK_ERROR = {"error": "InsufficientStorage",
                   "message": "the node's disk filled while the job ran or was recorded; nothing was kept or signed",
                   "hint": disk.HINT + " (submit the job again)"}
READ_ONLY_DISK_ERROR = {"error": "InsufficientStorage",
                        "message": "the node's disk turned read-only while the job ran or was recorded; nothing was "
                                   "kept or signed",
                        "hint": disk.READ_ONLY_HINT + " (submit the job again)"}
NOT_WRITABLE_DISK_ERROR = {"error": "InsufficientStorage",
                           "message": "the node could not write its data directory (permission denied) while the "
                                      "job ran or was recorded; nothing was kept or signed",
                           "hint": disk.NOT_WRITABLE_HINT + " (submit the job again)"}
UNWRITABLE_DISK_ERRORS = {disk.FULL: FULL_DISK_ERROR, disk.READ_ONLY: READ_ONLY_DISK_ERROR,
                          disk.NOT_WRITABLE: NOT_WRITABLE_DISK_ERROR}


class Busy(NodeError):
    def __init__(self, message: str = "this node's queue is full",
                 hint: str = "retry after the Retry-After delay") -> None:
        super().__init__(message, hint)


class MissingBlobs(NodeError):
    def __init__(self, missing: list[str], why: str | None = None) -> None:
        super().__init__(f"this node lacks {len(missing)} blob(s){f' ({why})' if why else ''}: {', '.join(missing)}",
                         "upload them first (PUT /v1/blobs/{cid})")
        self.missing = missing


class LocalPathNotAllowed(NodeError):
    """A local input outside the node's allow-listed roots."""


class NotCancellable(NodeError):
    """A cancel for a job that is not queued or running."""


class BadQuery(NodeError):
    """A query parameter that is not what the route takes (HTTP 400)."""


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """The query parameter ``name`` as an integer in [low, high] (ASCII decimal digits); BadQuery otherwise."""
    text = request.query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(high)) or not low <= int(text) <= high:
        raise BadQuery(f"query parameter {name}={text[:40]!r} is not an integer from {low} to {high}",
                       "see /v1/openapi.json")
    return int(text)


# -- HTTP ---------------------------------------------------------------------------------
def _error(exc: CodError) -> web.Response:
    name = {"Busy": "NodeBusy"}.get(type(exc).__name__, type(exc).__name__)
    body: dict[str, Any] = {"error": name, "message": exc.message,
                            "hint": exc.hint or HINTS.get(type(exc).__name__, answers.DEFAULT_HINT)}
    if isinstance(exc, MissingBlobs):
        body["missing"] = exc.missing
    status = STATUS.get(name, 400)
    if isinstance(exc, CapExceeded):
        body.update(cap=exc.cap, limit=exc.limit)
        status = 413 if exc.cap in UPLOAD_CAPS else 422
    headers = {"Retry-After": "1"} if isinstance(exc, Busy) else None
    return web.json_response(body, status=status, headers=headers)


async def _transient_car(request: web.Request, car: Path) -> web.StreamResponse:
    """Send the CAR file ``car`` and remove it (it is removed at once: the open file is read)."""
    try:
        handle = open(car, "rb")
    finally:
        car.unlink(missing_ok=True)
    with handle:
        response = web.StreamResponse(headers={"Content-Type": CAR_TYPE, "Content-Disposition": "attachment",
                                               **NOSNIFF})
        response.content_length = os.fstat(handle.fileno()).st_size
        await response.prepare(request)
        try:
            while chunk := await asyncio.to_thread(handle.read, CHUNK):
                await response.write(chunk)
            await response.write_eof()
        except ConnectionError:  # the client went away mid-CAR: nothing to answer, no node error
            pass
    return response


def http_error_body(status: int, message: str) -> dict[str, Any]:
    """The JSON error body of an HTTP-level refusal (no route, wrong method, unparsable request)."""
    return answers.http_error_body(status, message, HTTP_HINTS)


errors = answers.json_errors(_error, log=log, service="node", hints=HTTP_HINTS,
                             after_bug="the node is still up; report this with the node's log")
"""Every error is a JSON body ``{"error", "message", "hint"}``; a bug is a logged JSON 500."""


DOING = {"PUT": "storing the upload", "POST": "queueing the job", "DELETE": "recording the cancel"}


def full_disk(home: Path) -> Any:
    """The middleware making a full or read-only disk met while answering, or (for a PUT, POST or
    DELETE) a data directory ``home`` not writable, 507 InsufficientStorage (SPEC 9.5), never a 500."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except InsufficientStorage:
            raise
        except Exception as exc:
            why = disk.unwritable(exc, home if request.method in DOING else None)  # reads: no write refused
            if not why:
                raise
            log.error("%s %s: the node's disk is %s (%s)", request.method, request.rel_url.raw_path[:200], why, exc)
            raise disk.full(DOING.get(request.method, "answering the request"), why) from None

    return middleware


def app(node: Node) -> web.Application:
    application = web.Application(middlewares=[errors, full_disk(node.data_dir)], client_max_size=MAX_JSON_BODY)
    routes = web.RouteTableDef()

    @routes.get("/v1/health")
    async def health(request: web.Request) -> web.Response:
        status, body = node.health()
        return web.json_response(body, status=status)

    @routes.get("/v1/info")
    async def info(request: web.Request) -> web.Response:
        return web.json_response(node.info())

    @routes.get("/metrics")
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=node.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    @routes.get("/v1/openapi.json")
    async def spec(request: web.Request) -> web.Response:
        return web.json_response(openapi.DOCUMENT)

    @routes.get("/v1/statements")
    async def statements(request: web.Request) -> web.Response:
        after = query_int(request, "after", 0, 0, MAX_SEQ)
        limit = query_int(request, "limit", DEFAULT_STATEMENTS_PAGE, 1, MAX_STATEMENTS_PAGE)
        return web.json_response(node.statements(after, limit))

    @routes.put("/v1/blobs/{cid}")
    async def put_blob(request: web.Request) -> web.Response:
        with telemetry.span("node.upload", parent=telemetry.extract(request.headers)):
            return await _put_blob(request)

    async def _put_blob(request: web.Request) -> web.Response:
        cid = str(CID.parse(request.match_info["cid"]))
        client = client_key(request.remote or "")  # an IPv6 /64 is one client (SPEC 9.11), as for fetch slots
        if node.blobs.has(cid):
            if node.usage.known(BLOB, cid):
                node.usage.record(BLOB, cid, client, 0, node.clock())  # used again now
            return web.json_response({"cid": cid, "stored": False}, status=200)
        node.within_quota(client, request.content_length or 0, "this upload")
        upload_cap = node.caps.max_upload_bytes
        if request.content_type != CAR_TYPE:  # a file is stored as it comes: it unpacks to itself
            upload_cap = min(upload_cap, node.caps.max_unpacked_bytes)
        cap_name = "max_upload_bytes" if upload_cap == node.caps.max_upload_bytes else "max_unpacked_bytes"
        if (request.content_length or 0) > upload_cap:
            raise CapExceeded(cap_name, upload_cap, f"an upload of {request.content_length} bytes")
        handle, spooled = node.blobs.spool()
        try:
            size = 0
            with handle:
                async for chunk in request.content.iter_chunked(CHUNK):
                    size += len(chunk)
                    if size > upload_cap:
                        raise CapExceeded(cap_name, upload_cap, "the upload")
                    handle.write(chunk)
            node.within_quota(client, size, "this upload")
            if request.content_type == CAR_TYPE:
                await asyncio.to_thread(node.blobs.put_car, cid, spooled, node.caps.tree())
            else:
                await asyncio.to_thread(node.blobs.put_file, cid, spooled)
            tree = node.blobs.tree(cid)  # a CAR is charged what it unpacks to
            charged = size if tree is None else await asyncio.to_thread(tree_bytes, tree)
            node.usage.record(BLOB, cid, client, charged, node.clock())
        finally:
            spooled.unlink(missing_ok=True)
            node.metrics.moved(UPLOAD, size)
        return web.json_response({"cid": cid, "stored": True}, status=201)

    @routes.get("/v1/holdings")
    async def holdings(request: web.Request) -> web.Response:
        wanted = request.query.getall("cid", [])
        if len(wanted) > MAX_HOLDINGS:
            raise SpecError("(query).cid", f"{len(wanted)} CIDs asked; at most {MAX_HOLDINGS}")
        asked = [str(CID.parse(cid)) for cid in wanted]
        return web.json_response(await asyncio.to_thread(node.holdings, asked))  # it stats every blob

    @routes.get("/v1/blobs/{cid}")
    async def get_blob(request: web.Request) -> web.StreamResponse:
        cid = str(CID.parse(request.match_info["cid"]))
        dataset = await asyncio.to_thread(node.offers.dataset, cid)  # its fingerprint takes a while
        if dataset is not None:  # a dataset is public: peers may fetch it as a CAR
            return stored_file(await node.car_of(cid, dataset), CAR_TYPE)
        path = node.blobs.file(cid)
        if path is not None and CAR_TYPE not in request.headers.get("Accept", ""):
            return stored_file(path)
        tree = path or node.blobs.tree(cid)
        if tree is None:  # a file or directory inside what the node holds (SPEC 9.9, contents)
            inner = await asyncio.to_thread(node.inside, cid)
            if inner is None:
                raise NotFound(f"no blob {cid} on this node")
            if not inner[1] and CAR_TYPE not in request.headers.get("Accept", ""):
                return stored_file(inner[0])
            if request.method == "HEAD":  # existence only: no CAR is built for it
                return web.Response(headers={"Content-Type": CAR_TYPE, "Content-Disposition": "attachment", **NOSNIFF})
            if node.cars.transients >= TRANSIENT_CARS:  # each its own file until sent: slow clients hold disk
                raise Busy(f"this node is building or sending {TRANSIENT_CARS} CARs of directories inside what it "
                           "holds, its most at once", "retry after the Retry-After delay, or ask another node")
            node.cars.transients += 1
            try:
                return await _transient_car(request, await node.cars.transient(cid, inner[0]))
            finally:
                node.cars.transients -= 1
        return stored_file(await node.car_of(cid, tree), CAR_TYPE)

    @routes.post("/v1/jobs")
    async def submit(request: web.Request) -> web.Response:
        with telemetry.span("node.submit", parent=telemetry.extract(request.headers)):  # the job task inherits it
            body = parse_json(await request.read())  # strict: duplicate keys, depth, floats, surrogates
            status, job = await node.submit(body, wait=request.query.get("wait") in ("1", "true"),
                                            client=client_key(request.remote or ""))
        return web.json_response(job, status=status)

    @routes.get("/v1/jobs")
    async def list_jobs(request: web.Request) -> web.Response:
        return web.json_response({"jobs": [public(r) for r in node.jobs.list()]})

    @routes.get("/v1/jobs/{cid}")
    async def job(request: web.Request) -> web.Response:
        return web.json_response(node.record(request.match_info["cid"]))

    @routes.delete("/v1/jobs/{cid}")
    async def cancel(request: web.Request) -> web.Response:
        return web.json_response(await node.cancel(request.match_info["cid"]))

    @routes.post("/v1/jobs/{cid}/checkpoints")
    async def checkpoints(request: web.Request) -> web.Response:
        body = parse_json(await request.read())
        if not isinstance(body, dict) or set(body) != {"interval"}:
            raise CheckpointRefused("the body is not {\"interval\": F}", "see SPEC.md 11.7")
        return web.json_response(await node.checkpointer.answer(request.match_info["cid"], body["interval"]))

    @routes.get("/v1/jobs/{cid}/checkpoints/{index}/snapshot")
    async def snapshot(request: web.Request) -> web.StreamResponse:
        index = request.match_info["index"]
        if not (index.isascii() and index.isdigit() and len(index) <= 6):
            raise CheckpointRefused(f"checkpoint index {index[:20]!r} is not an integer", "see SPEC.md 11.7")
        interval = query_int(request, "interval", 0, 0, MAX_SEQ)
        path = await node.checkpointer.snapshot(request.match_info["cid"], interval, int(index))
        return stored_file(path)

    @routes.get("/v1/jobs/{cid}/results.car")
    async def results_car(request: web.Request) -> web.StreamResponse:
        cid = request.match_info["cid"]
        row = node.job(cid)
        tree = node.results_dir(cid)
        car = await node.car_of(row["result_cid"], tree)
        node.metrics.moved(DOWNLOAD, car.stat().st_size)
        return stored_file(car, CAR_TYPE)

    @routes.get("/v1/jobs/{cid}/results/{path:.+}")
    async def result_file(request: web.Request) -> web.StreamResponse:
        root = node.results_dir(request.match_info["cid"]).resolve()
        name = request.match_info["path"]
        try:  # a NUL or an over-long name is a file the results do not have, like any other
            target = (root / name).resolve()
            # a regular file named without any link (results may hold symlinks: never resolved here)
            found = root in target.parents and target.is_file() and target == Path(os.path.normpath(root / name))
        except (OSError, ValueError):
            found = False
        if not found:
            raise NotFound(f"no file {printable(name, MAX_NAME_SHOWN)} in the results")
        return stored_file(target)

    application.add_routes(routes)
    return application


__all__ = ["Node", "app"]
