"""Verification by agreement: one job, N distinct nodes, their signed result CIDs compared.

    verified            all N signed the same result CID
    verified-by-quorum  K of N agreed, K a strict majority (only with --quorum K), reported as such
    mismatch            any other disagreement: the groups and their nodes are reported
    profile-mismatch    nodes of different execution profiles disagreed: not a lie
                        (a node whose statement names another profile than its /v1/info
                        advertised contradicts itself: that is a mismatch naming it)
    incomplete          fewer than N valid answers, spares included, before the deadline;
                        or agreement on a result no agreeing node would hand over
    unverifiable        a docker job, or a job run with N = 1
    verified-by-referee claims of one profile differed and the requester's own re-execution
                        (``verifier.referee``, SPEC 11.3) equals one of them: accepted whatever
                        the count; every node that signed another result is a proven liar
    referee-disagrees   the same, but no claim equals the referee's result: nothing accepted

Nothing that is not `verified` (or a quorum asked for) is ever called verified, and a tie
never is: --quorum K needs N/2 < K <= N. Fewer than N usable nodes fails before anything is
uploaded. Every node answer is checked by ``verifier.schema``; each statement against the
node ID it comes from and the job it answers; a node that fails or signs badly is replaced
by a spare while time allows. After agreement one result is downloaded (bounded, see
``verifier.fetch``) and must hash to the agreed CID; a node that serves anything else is
recorded as failed and the next agreeing node is asked.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp

from cod import telemetry
from cod.content.car import write_car
from cod.errors import (BadSignature, CodError, EngineUnavailable, NodeBusy, NodeError, PolicyRefused, SpecError,
                        UsageError)
from cod.jobspec import ENGINE_DOCKER, JobSpec
from cod.content.store import ContentStore
from cod.local import PreparedJob
from cod.reexec import DEFAULT_GATHER_BYTES, gather, lacking
from cod.resultsdir import check_destination
from cod.statement import SignedStatement

from . import metrics
from .client import MissingBlobs, NodeClient
from .events import BUSY, FAILED, JOB_POLL_S, QUEUED, RUNNING, SIGNED, SUBMITTING, UPLOADING, Events
from .fetch import BaseSize, DownloadFailed, download_agreed
from .audit import Chooser, check_share, chosen, record as audit_record
from .outcomes import (AUDIT_FAILED, CANCELLED, EXIT_CODES, INCOMPLETE, MISMATCH, PROFILE_MISMATCH, QUORUM, REFEREE,
                       REFEREE_DISAGREES, UNFINISHED, UNVERIFIABLE, VERIFIED)
from .referee import METHODS, NONE, Ruling, referee as re_execute
from .reputation import Records, now
from .schema import NodeInfo

MAX_BACKOFF = 8.0
INFO_TTL = 30.0
DEADLINE_MARGIN = 30.0
DOWNLOAD_GRACE_S = 10.0  # answers that come just before the deadline still get this long to be fetched
CANCEL_TIMEOUT_S = 2.0  # what each node gets to answer a cancel (Ctrl-C, cod cancel), all asked at once
LIVENESS_INTERVAL_S = 1.0  # while a node runs the job, its health is checked this often ...
LIVENESS_MISSES = 3  # ... and this many failed checks in a row (each up to HEALTH_TIMEOUT_S) give it up


class NotEnoughNodes(NodeError):
    """Fewer usable nodes than N: nothing was uploaded or run."""

    def __init__(self, usable: int, asked: int, n: int, unreachable: list[tuple[str, str]]) -> None:
        why = ", ".join(f"{url} ({reason})" for url, reason in unreachable)
        super().__init__(f"{usable} of {asked} node(s) can take this job, and --verify needs {n}"
                         + (f"; left out: {why}" if why else ""),
                         "start or add nodes (--node, COD_NODES, the config file), or lower --verify")
        self.unreachable = unreachable


def check_quorum(n: int, quorum: int | None) -> None:
    """Refuse an N or K that could call a minority or a tie verified: N >= 1, N/2 < K <= N."""
    if n < 1:
        raise UsageError(f"--verify {n}: at least 1 node is needed")
    if quorum is not None and not (2 * quorum > n and quorum <= n):
        low = n // 2 + 1
        raise UsageError(f"--quorum {quorum} with --verify {n}: agreement must be a strict majority of the {n} "
                         "nodes, so a tie or a minority never verifies",
                         f"use --quorum between {low} and {n}, or leave it out to need all {n}")


def check_content(spec: JobSpec, n: int) -> None:
    """Refuse (SpecError) a node-local input in a run on more than one node: it names a path,
    not bytes, so nodes holding different data would be compared (SPEC 11, step 0)."""
    for k, item in enumerate(spec.inputs):
        if item.local is not None and n > 1:
            raise SpecError(f"inputs[{k}].local", f"{item.local!r} is a node-local path: it names no bytes, so "
                            f"{n} nodes could mount different data under it",
                            "offer the directory on the nodes as a dataset (cod serve --dataset DIR) and name "
                            "its CID with -i CID:DST")


@dataclass
class Answer:
    node_id: str
    url: str
    profile: str
    result_cid: str | None = None
    exit_code: int | None = None
    trap: str | None = None
    fuel_used: int | None = None
    signature_valid: bool | None = None
    error: str | None = None
    statement: dict[str, Any] | None = None
    download_error: str | None = None  # it agreed, then would not hand over the agreed result
    advertised: str | None = None  # the profile its /v1/info showed (``profile`` is then the signed one)

    @property
    def valid(self) -> bool:
        return self.result_cid is not None and self.signature_valid is True

    @property
    def contradicts(self) -> bool:
        """It signed a valid statement naming another profile than the one it advertised: a
        signed contradiction (SPEC 11 step 4), never excused as a profile mismatch."""
        return self.valid and bool(self.advertised) and self.profile != self.advertised

    def contradiction(self) -> str:
        return (f"node {self.node_id} signed its result under profile {self.profile}, but its /v1/info "
                f"advertised {self.advertised}: a signed contradiction")


@dataclass
class Verification:
    job_cid: str
    outcome: str
    result_cid: str | None
    n: int
    quorum: int
    answers: list[Answer]
    groups: dict[str, list[str]] = field(default_factory=dict)
    results_dir: Path | None = None
    note: str | None = None
    result_checked: bool = False  # a copy of the agreed result was fetched and hashed to its CID
    unreachable: list[tuple[str, str]] = field(default_factory=list)  # (URL, reason) of nodes left out
    ledger: dict[str, Any] | None = None  # what the ledger said of the evidence (verifier.ledger), if asked
    run_id: int | None = None  # its row in the requester's records (verifier.reputation.Records.runs)
    referee: dict[str, Any] | None = None  # what the referee re-executed and found (Ruling.to_json), if it judged
    liars: list[str] = field(default_factory=list)  # node IDs whose signed result the referee proved wrong
    audit: dict[str, Any] | None = None  # the random audit (SPEC 11.4): verifier.audit.record, when --audit P > 0
    fraud_proofs: list[str] = field(default_factory=list)  # IDs of the proofs built for them (verifier.proofs)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]

    def to_json(self) -> dict[str, Any]:
        return {
            "job_cid": self.job_cid, "outcome": self.outcome, "result_cid": self.result_cid, "n": self.n,
            "quorum": self.quorum, "groups": self.groups, "note": self.note, "result_checked": self.result_checked,
            "results_dir": str(self.results_dir) if self.results_dir else None,
            "nodes": [dict(asdict(a), status=status) for a, (status, _) in zip(self.answers, statuses(self))],
            "unreachable": [{"url": url, "reason": reason} for url, reason in self.unreachable],
            **({"ledger": self.ledger} if self.ledger is not None else {}),
            "referee": self.referee, "liars": list(self.liars), "audit": self.audit,
            "fraud_proofs": list(self.fraud_proofs),
        }

    def statements(self) -> list[dict[str, Any]]:
        """Every valid signed statement of the run (the evidence the ledger judges), by node ID."""
        return [a.statement for a in sorted(self.answers, key=lambda a: a.node_id)
                if a.valid and a.statement is not None]


AGREES, DISAGREES, UNREACHABLE = "agrees", "DISAGREES", "unreachable"  # FAILED is events.FAILED, "failed"


def majority(groups: dict[str, list[str]]) -> str | None:
    """The result CID signed by a strict majority of the valid answers, if one was."""
    total = sum(len(nodes) for nodes in groups.values())
    winners = [cid for cid, nodes in groups.items() if 2 * len(nodes) > total]
    return winners[0] if winners else None


def consistent_groups(answers: list[Answer]) -> dict[str, list[str]]:
    """{result CID: node IDs} of the valid answers that do not contradict their node's info:
    the answers agreement is judged on (a contradicting node is outside every group)."""
    groups: dict[str, list[str]] = {}
    for answer in answers:
        if answer.valid and not answer.contradicts:
            groups.setdefault(answer.result_cid or "", []).append(answer.node_id)
    return groups


def statuses(verification: Verification) -> list[tuple[str, str]]:
    """Each answer's status (agrees, DISAGREES, failed) and what to show beside it.

    A node agrees when it signed the accepted result, or, when none was accepted, the
    result of a strict majority; any other valid answer DISAGREES (all of them in a tie).
    """
    reference = verification.result_cid or majority(consistent_groups(verification.answers))
    out = []
    for answer in verification.answers:
        if answer.signature_valid is False:
            out.append((FAILED, f"bad signature: {answer.error}"))
        elif not answer.valid:
            out.append((FAILED, answer.error or "no answer"))
        elif answer.contradicts:
            out.append((DISAGREES, f"{answer.result_cid} (signed under profile {answer.profile}, "
                                   f"advertised {answer.advertised})"))
        elif answer.node_id in verification.liars:
            judge, found = (("referee", verification.referee) if verification.referee is not None
                            else ("audit", verification.audit or {}))
            out.append((DISAGREES, f"{answer.result_cid} (proven liar: the {judge}'s re-execution gave "
                                   f"{(found or {}).get('result_cid')})"))
        elif answer.result_cid == reference:
            late = f" (then would not send it: {answer.download_error})" if answer.download_error else ""
            out.append((AGREES, f"{answer.result_cid}{late}"))
        else:
            out.append((DISAGREES, f"{answer.result_cid}"))
    return out


Progress = Callable[[str], None]


class _Uploads:
    """The job's blobs, uploaded to a node only where it lacks them; CARs built once."""

    def __init__(self, job: PreparedJob, scratch: Path, events: Events | None = None) -> None:
        self.job = job
        self.scratch = scratch
        self.events = events or Events()
        self._cars: dict[str, Path] = {}
        self._lock = asyncio.Lock()

    async def car(self, cid: str, tree: str) -> Path:
        async with self._lock:
            if cid not in self._cars:
                path = self.scratch / f"{cid}.car"
                await asyncio.to_thread(write_car, tree, path)
                self._cars[cid] = path
            return self._cars[cid]

    async def upload(self, client: NodeClient, missing: list[str]) -> None:
        """Upload the blobs a node said it lacks (and only blobs of this job)."""
        spec = self.job.spec
        for cid in missing:
            key = f"{client.url} {cid}"

            def sent(done: int, total: int | None, key: str = key, cid: str = cid) -> None:
                self.events.transfer(key, f"upload to {client.url}", done, total)

            if cid == spec.module and spec.engine != ENGINE_DOCKER:
                if not self.job.wasm:
                    raise NodeError(f"node {client.url} does not hold the module {cid}, and neither does this "
                                    "requester", "send the job to nodes that offer it (GET /v1/holdings)")
                await self._put(client, cid, self.job.wasm, False, sent)
                continue
            if cid in self.job.modules:  # a module the job's module imports by CID (SPEC 5.4)
                await self._put(client, cid, self.job.modules[cid], False, sent)
                continue
            paths = [item.path for item in spec.inputs if item.cid == cid]
            if cid == spec.output_base:  # the output base travels as a CAR, like an input
                paths.append(spec.outputs)
            if not paths:
                raise NodeError(f"node {client.url} asks for {cid}, which is not part of this job")
            source = self.job.sources.get(paths[0])
            if source is None:  # named by CID, and not in the local store
                raise NodeError(f"node {client.url} does not hold {cid}, and neither does this requester",
                                "add it to the local store (cod add PATH), or send the job to nodes that hold it")
            await self._put(client, cid, await self.car(cid, source), True, sent)

    async def _put(self, client: NodeClient, cid: str, data: bytes | Path, car: bool,
                   sent: Callable[[int, int | None], None]) -> None:
        with telemetry.span("cod.upload", {"cod.cid": cid, "cod.url": client.url}):
            await client.put(cid, data, car=car, on_bytes=sent)
        counted = metrics.current()
        if counted is not None:
            counted.moved(metrics.UPLOAD, len(data) if isinstance(data, bytes) else data.stat().st_size)


class Requester:
    """What many verifications share: one HTTP connection pool, the records, recent node infos."""

    def __init__(self, records: Records | None = None, info_ttl: float = INFO_TTL) -> None:
        self.records = records or Records()
        self.info_ttl = info_ttl
        self._infos: dict[str, tuple[float, NodeInfo]] = {}
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512))
        return self._session

    async def info(self, client: NodeClient) -> NodeInfo:
        now_ = asyncio.get_running_loop().time()
        cached = self._infos.get(client.url)
        if cached is not None and now_ - cached[0] < self.info_ttl:
            return cached[1]
        info = await client.info()
        self._infos[client.url] = (now_, info)
        return info

    def forget(self, url: str) -> None:
        self._infos.pop(url, None)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> "Requester":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def verify(self, job: PreparedJob, urls: list[str], n: int, **options: Any) -> Verification:
        return await verify(job, urls, n, requester=self, **options)


async def verify(job: PreparedJob, urls: list[str], n: int, *, quorum: int | None = None,
                 records: Records | None = None, output_dir: Path | None = None,
                 progress: Progress = lambda step: None, deadline_s: float | None = None,
                 requester: Requester | None = None, events: Events | None = None,
                 require_local: bool = False, referee: str = NONE, referee_fuel: int | None = None,
                 cache_dir: Path | None = None, referee_bytes: int = DEFAULT_GATHER_BYTES, audit: float = 0.0,
                 chooser: Chooser | None = None, store: ContentStore | None = None) -> Verification:
    """Run ``job`` on ``n`` distinct nodes among ``urls`` and compare their signed answers.

    Raises UsageError for an N or quorum that is not a majority rule (check_quorum), and
    NotEnoughNodes (or EngineUnavailable) when fewer than ``n`` nodes can take the job,
    before anything is uploaded or run. Every run that gets that far is recorded.

    ``referee`` "self": when claims of one profile differ, re-execute the job here (at most
    ``referee_fuel``, default the job's fuel; compiled modules in ``cache_dir``) and accept the
    claim equal to that result (SPEC 11.3); "none" (the library's default) keeps voting only.
    What the requester lacks of the module, imported modules and inputs is fetched by CID from
    the nodes that signed (at most ``referee_bytes``, into ``store``, default a store of this run
    only, removed after it). ``audit`` P: a share of the runs whose claims agreed is re-executed the same
    way, chosen after the nodes answered (``chooser``, default the OS's randomness; SPEC 11.4).
    """
    check_quorum(n, quorum)
    if referee not in METHODS:
        raise UsageError(f"--referee {referee!r} is not a referee", f"use one of: {', '.join(METHODS)}")
    audit = check_share(audit)
    if requester is None:
        async with Requester(records) as own:
            return await verify(job, urls, n, quorum=quorum, output_dir=output_dir, progress=progress,
                                deadline_s=deadline_s, requester=own, events=events, require_local=require_local,
                                referee=referee, referee_fuel=referee_fuel, cache_dir=cache_dir,
                                referee_bytes=referee_bytes, audit=audit, chooser=chooser, store=store)
    job.spec.validate()  # a spec built in code, too: SpecError here, before any node is asked (MAX_INPUTS)
    check_content(job.spec, n)
    if output_dir is not None:
        check_destination(output_dir)
    records = requester.records
    started = now()
    spec_json = job.spec.to_dict()
    job_cid = str(job.spec.cid)
    loop = asyncio.get_running_loop()
    span = deadline_s if deadline_s is not None else job.spec.limits.timeout_ms / 1000 + DEADLINE_MARGIN
    deadline = loop.time() + span
    with telemetry.span("cod.verify", {"cod.job_cid": job_cid, "cod.n": n}):
        scratch = Path(tempfile.mkdtemp(prefix="cod-verify-"))
        try:
            unique = list(dict.fromkeys(urls))
            progress(f"Checking {len(unique)} node(s)")
            with telemetry.span("cod.select", {"cod.nodes": len(unique)}):
                candidates, unreachable = await _candidates(requester, unique, job, records, require_local)
            if len(candidates) < n:
                if not candidates and job.spec.engine == ENGINE_DOCKER and len(unreachable) == len(unique) and all(
                        reason.startswith("no 'docker'") for _, reason in unreachable):
                    raise EngineUnavailable(
                        f"none of the {len(unique)} node(s) has a Docker-compatible engine",
                        "start Docker, or podman's Docker API service (DOCKER_HOST=unix://...), where a node runs",
                    )
                raise NotEnoughNodes(len(candidates), len(unique), n, unreachable)
            events = events or Events()
            base = await asyncio.to_thread(measure_base, job)
            uploads = _Uploads(job, scratch, events)
            extra: dict[str, Any] = {"unreachable": [{"url": url, "reason": why} for url, why in unreachable],
                     **({"output_base": base.to_json()} if base is not None else {})}
            # recorded before any node is asked: a requester that dies leaves a row naming the
            # nodes given the job, which cod get collects from (as a detached run)
            run_id = records.record_run(job_cid, started_at=started, finished_at=None, outcome=UNFINISHED,
                                        result_cid=None, n=n, quorum=quorum or 0, spec=spec_json, answers=[],
                                        note="running; if this requester stops, cod get collects the answers",
                                        extra=extra)
            given: list[tuple[NodeClient, Answer]] = []

            def launched(client: NodeClient, answer: Answer) -> None:
                given.append((client, answer))
                records.update_answers(run_id, [dict(asdict(a), submitted=True) for _, a in given])

            progress(f"Running on {n} node(s)")
            try:
                answers = await _dispatch(candidates, n, uploads, spec_json, job_cid, deadline, events, launched)
            except asyncio.CancelledError:  # Ctrl-C (asyncio.run cancels the run): stop the job everywhere
                await cancel_everywhere(records, run_id, job_cid, given)
                raise
            for answer in answers:
                if not answer.valid:
                    requester.forget(answer.url)
            progress("Comparing signed results")
            with telemetry.span("cod.compare"):
                verification = _judge(job, job_cid, answers, n, quorum or 0)
            await judge_claims(job, verification, scratch, referee=referee, referee_fuel=referee_fuel,
                               referee_bytes=referee_bytes, audit=audit, chooser=chooser, store=store,
                               cache_dir=cache_dir, progress=progress, fraud_dir=records.path.parent / "fraud")
            verification.unreachable = unreachable
            _remember(records, verification)
            if verification.result_cid is not None:  # at least one result is fetched and checked, always
                progress("Downloading results")
                budget = max(deadline - loop.time(), DOWNLOAD_GRACE_S)  # the deadline holds for the download too
                await _download(requester.session, records, verification, job, output_dir, scratch, budget, events,
                                base)
            extra = {"result_checked": verification.result_checked,
                     "results_dir": str(verification.results_dir.resolve()) if verification.results_dir else None,
                     **judged_extra(verification)}
            records.finish_run(run_id, finished_at=now(), outcome=verification.outcome,
                               result_cid=verification.result_cid, answers=[asdict(a) for a in verification.answers],
                               note=verification.note, extra=extra)
            verification.run_id = run_id
            counted = metrics.current()
            if counted is not None:
                counted.verified(verification.outcome, loop.time() - (deadline - span),
                                 [a.node_id for a, (status, _) in zip(verification.answers, statuses(verification))
                                  if status == DISAGREES])
            return verification
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


async def cancel_everywhere(records: Records, run_id: int, job_cid: str,
                            given: list[tuple[NodeClient, Answer]]) -> None:
    """Stop ``job_cid`` on every node given it (DELETE, all at once, CANCEL_TIMEOUT_S at most)
    and complete the run as ``cancelled``, each unanswered node with why (SPEC 11 step 12)."""
    unique = list({client.url: (client, answer) for client, answer in given}.values())
    try:
        why = await asyncio.wait_for(asyncio.gather(*(client.cancel(job_cid, CANCEL_TIMEOUT_S)
                                                      for client, _ in unique)), CANCEL_TIMEOUT_S + 1)
    except asyncio.TimeoutError:
        why = ["no answer to the cancel"] * len(unique)
    for (_, answer), failed in zip(unique, why):
        if not answer.valid and not answer.error:
            answer.error = "cancelled by the requester" + (f" (the node did not confirm: {failed})" if failed else "")
    records.finish_run(run_id, finished_at=now(), outcome=CANCELLED, result_cid=None,
                       answers=[asdict(a) for _, a in given], note="cancelled by the requester (interrupted)")


def measure_base(job: PreparedJob) -> BaseSize | None:
    """The size of the job's output base, if it has one this requester holds (it uploads it);
    None otherwise (no base, or one named by CID only: its results are then bounded by the
    absolute cap alone)."""
    source = job.sources.get(job.spec.outputs) if job.spec.output_base else None
    if source is None:
        return None
    try:
        return BaseSize.of_tree(source)
    except OSError:
        return None


def content_of(job: PreparedJob) -> tuple[list[str], set[str]]:
    """The CIDs a job names (module, the modules it imports by CID as far as this requester
    can see them, inputs, output base) in that order, and those of them this requester cannot
    upload (named by CID and not in its local store)."""
    spec = job.spec
    named = ([] if spec.engine == ENGINE_DOCKER else [spec.module, *sorted(job.modules), *job.missing_modules])
    named += [i.cid for i in spec.inputs if i.cid]
    if spec.output_base:
        named.append(spec.output_base)
    lacking = {i.cid for i in spec.inputs if i.cid and i.path not in job.sources} | set(job.missing_modules)
    if spec.engine != ENGINE_DOCKER and not job.wasm:  # a module this requester has no bytes of (private)
        lacking.add(spec.module)
    if spec.output_base and spec.outputs not in job.sources:
        lacking.add(spec.output_base)
    return list(dict.fromkeys(named)), lacking


async def _candidates(requester: Requester, urls: list[str], job: PreparedJob, records: Records,
                      require_local: bool = False) -> tuple[list[tuple[NodeClient, NodeInfo]], list[tuple[str, str]]]:
    """The usable nodes in the order to ask them (SPEC 11, step 1), and (URL, reason) of the others."""
    clients = [NodeClient(requester.session, url) for url in urls]
    infos = await asyncio.gather(*(requester.info(c) for c in clients), return_exceptions=True)
    need = "docker" if job.spec.engine == ENGINE_DOCKER else "wasm"
    seen: dict[str, str] = {}
    found: list[tuple[NodeClient, NodeInfo]] = []
    unreachable: list[tuple[str, str]] = []
    for client, info in zip(clients, infos):
        if isinstance(info, CodError):
            unreachable.append((client.url, info.message))
        elif isinstance(info, BaseException):  # a bug, not the node: never hidden as a node's fault
            raise info
        elif need not in info.capabilities:
            unreachable.append((client.url, f"no {need!r} capability"))
        elif info.node_id in seen:  # one node behind two URLs counts once
            unreachable.append((client.url, f"the same node as {seen[info.node_id]}"))
        else:
            seen[info.node_id] = client.url
            records.see(info.node_id, client.url, info.profile)
            found.append((client, info))
    named, lacking = content_of(job)
    holdings = await asyncio.gather(*(client.holdings(named) for client, _ in found))
    held = {info.node_id: got for (_, info), got in zip(found, holdings)}
    unsent = [cid for cid in ([job.spec.module] if job.spec.engine != ENGINE_DOCKER and not job.wasm else [])
              + list(job.missing_modules) if any(cid in got for got in held.values())]
    if unsent:  # modules this requester has no bytes of go only to the nodes that offer them (a
        # private module); one no node holds is left to the nodes' peers and gateways (SPEC 9.8)
        for client, info in found:
            absent = [cid for cid in unsent if cid not in held[info.node_id]]
            if absent:
                unreachable.append((client.url, f"does not offer the module {absent[0]}, and this requester "
                                                "has none of its bytes"))
        found = [(client, info) for client, info in found if set(unsent) <= held[info.node_id]]
    if require_local:
        for client, info in found:
            if not set(named) <= held[info.node_id]:
                absent = [cid for cid in named if cid not in held[info.node_id]]
                unreachable.append((client.url, f"does not hold {absent[0]}"
                                    + (f" and {len(absent) - 1} more" if len(absent) > 1 else "")
                                    + " (--require-local)"))
        found = [(client, info) for client, info in found if set(named) <= held[info.node_id]]
    by_profile: dict[str, list[tuple[NodeClient, NodeInfo]]] = {}
    for pair in found:
        by_profile.setdefault(pair[1].profile, []).append(pair)

    scores = {info.node_id: records.score(info.node_id) for _, info in found}

    def rank(pair: tuple[NodeClient, NodeInfo]) -> tuple[bool, bool, int, int, str]:
        # SPEC 11 step 1: nodes holding what this requester cannot upload, then nodes whose record
        # is not negative (holdings are self-reported: a cheater never buys its place with them),
        # then by how much of the job they hold, then by reputation
        has, score = held[pair[1].node_id], scores[pair[1].node_id]
        return (not lacking <= has, score < 0, -len(has), -score, pair[1].node_id)

    ordered_profiles = sorted(by_profile, key=lambda p: (-len(by_profile[p]),
                                                          -sum(scores[i.node_id] for _, i in by_profile[p]), p))
    return [pair for profile in ordered_profiles for pair in sorted(by_profile[profile], key=rank)], unreachable


async def _dispatch(candidates: list[tuple[NodeClient, NodeInfo]], n: int, uploads: _Uploads,
                    spec: dict[str, Any], job_cid: str, deadline: float, events: Events,
                    on_launch: Callable[[NodeClient, Answer], None] = lambda client, answer: None) -> list[Answer]:
    """The answers of the first N candidates, spares standing in for failures (steps 2-3);
    ``on_launch`` is told each node given the job. Cancelled, it cancels every attempt."""
    queue = list(candidates)
    tasks: dict[asyncio.Task[Answer], Answer] = {}

    def launch() -> None:
        client, info = queue.pop(0)
        answer = Answer(info.node_id, client.url, info.profile)
        on_launch(client, answer)
        tasks[asyncio.create_task(_attempt(client, answer, uploads, spec, job_cid, deadline, events))] = answer

    try:
        return await _answers(tasks, queue, launch, n, deadline, events)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _answers(tasks: dict[asyncio.Task[Answer], Answer], queue: list[tuple[NodeClient, NodeInfo]],
                   launch: Callable[[], None], n: int, deadline: float, events: Events) -> list[Answer]:
    loop = asyncio.get_running_loop()
    for _ in range(min(n, len(queue))):
        launch()
    answers: list[Answer] = []
    while tasks:
        remaining = deadline - loop.time()
        done, _ = await asyncio.wait(tasks, timeout=max(0.0, remaining), return_when=asyncio.FIRST_COMPLETED)
        if not done:
            for task, answer in tasks.items():
                task.cancel()
                answer.error = "no answer before the deadline"
                events.node(answer.node_id, answer.url, FAILED, answer.error)
                answers.append(answer)
            await asyncio.gather(*tasks, return_exceptions=True)
            break
        for task in done:
            answers.append(task.result())
            del tasks[task]
        valid = sum(a.valid for a in answers)
        while queue and valid + len(tasks) < n:
            launch()
    return answers


async def _attempt(client: NodeClient, answer: Answer, uploads: _Uploads, spec: dict[str, Any], job_cid: str,
                   deadline: float, events: Events) -> Answer:
    """One node's answer: its checked, signed result, or why it has none (never raises a CodError)."""
    with telemetry.span("cod.node", {"cod.node_id": answer.node_id, "cod.url": client.url}):
        answer = await _attempt_once(client, answer, uploads, spec, job_cid, deadline, events)
    if answer.valid:
        events.node(answer.node_id, answer.url, SIGNED, answer.result_cid or "")
    else:
        events.node(answer.node_id, answer.url, FAILED, answer.error or "")
    return answer


async def _attempt_once(client: NodeClient, answer: Answer, uploads: _Uploads, spec: dict[str, Any], job_cid: str,
                        deadline: float, events: Events) -> Answer:
    loop = asyncio.get_running_loop()
    backoff = 0.25
    uploaded: set[str] = set()  # a node finds a module's dependencies once it holds the module

    def state(name: str, detail: str = "") -> None:
        events.node(answer.node_id, answer.url, name, detail)

    try:
        while True:
            try:
                state(SUBMITTING)
                job = await _submit_watched(client, spec, job_cid, timeout=max(1.0, deadline - loop.time()),
                                            on_state=state if events.watching_nodes else None)
                break
            except NodeBusy as busy:
                wait = min(MAX_BACKOFF, max(busy.retry_after, backoff))
                if loop.time() + wait > deadline:
                    raise NodeError(f"node {client.url} stayed busy until the deadline") from busy
                state(BUSY, f"retrying in {wait:.1f} s")
                await asyncio.sleep(wait)
                backoff *= 2
            except MissingBlobs as lacking:  # submit first: a node that has the blobs needs no upload
                fresh = [cid for cid in dict.fromkeys(lacking.missing) if cid not in uploaded]
                if not fresh:  # each blob goes to a node once: asking again ends the attempt
                    raise
                state(UPLOADING, f"{len(fresh)} blob(s)")
                await uploads.upload(client, fresh)
                uploaded.update(fresh)
        return accept(answer, job, job_cid, spec.get("engine", "wasm"))
    except BadSignature as exc:
        answer.signature_valid, answer.result_cid, answer.error = False, None, str(exc)
    except PolicyRefused as exc:  # reported as "failed (policy: ...)"; a spare is asked (step 3)
        answer.error = f"policy: {exc.message}"
    except CodError as exc:
        answer.error = str(exc)
    return answer


DOCKER_PROFILE = ENGINE_DOCKER
"""The profile every statement of a docker job names (SPEC 10), whatever the node's /v1/info shows."""


def accept(answer: Answer, job: dict[str, Any], job_cid: str, engine: str = "wasm") -> Answer:
    """Fill ``answer`` from a node's checked job record (schema.job_record) for ``job_cid``: its
    statement verified against the node ID, or why there is none. The profile it must sign is
    its advertised one (``answer.profile`` on entry), ``docker`` for a docker job. Raises
    BadSignature."""
    if job["state"] != "done":
        error = job.get("error") or {}
        answer.error = f"job {job['state']}: {error.get('error', '')} {error.get('message', '')}".strip()
        return answer
    signed = SignedStatement.from_json(job["statement"])
    statement = signed.verify(job_cid, answer.node_id)
    answer.statement = job["statement"]
    if statement.result != job["result_cid"]:
        raise BadSignature("the signed result differs from the result the node reports")
    if answer.advertised is None:  # the profile of its /v1/info, kept beside the one it signs
        answer.advertised = DOCKER_PROFILE if engine == ENGINE_DOCKER else answer.profile
    answer.result_cid, answer.exit_code = statement.result, statement.exit_code
    answer.trap, answer.fuel_used, answer.profile = statement.trap, statement.fuel_used, statement.profile
    answer.signature_valid = True
    return answer


async def _submit_watched(client: NodeClient, spec: dict[str, Any], job_cid: str, timeout: float,
                          on_state: Callable[[str, str], None] | None = None) -> dict[str, Any]:
    """Submit and wait for the node's answer while checking that the node is still there.

    A node cut off during its job (partitioned, its host gone) never closes the connection the
    answer would come on, so without this the attempt would wait for the whole deadline and
    its spare would start too late. Raises NodeError when LIVENESS_MISSES health checks in a
    row fail; the caller then asks the next spare (SPEC 11, step 3).
    """
    submit = asyncio.ensure_future(client.submit(spec, job_cid, timeout=timeout))
    watch = asyncio.ensure_future(_until_unresponsive(client))
    polls = [asyncio.ensure_future(_report_state(client, job_cid, on_state))] if on_state is not None else []
    try:
        await asyncio.wait({submit, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (submit, watch, *polls):
            if not task.done():
                task.cancel()
        await asyncio.gather(submit, watch, *polls, return_exceptions=True)
    if submit.done() and not submit.cancelled():
        return submit.result()  # an answer (or its error) wins over a missed check at the same moment
    raise NodeError(f"node {client.url} stopped answering during the job ({LIVENESS_MISSES} health checks "
                    "in a row failed)", "the next spare node is asked instead")


async def _report_state(client: NodeClient, job_cid: str, on_state: Callable[[str, str], None]) -> None:
    """Tell ``on_state`` when the node's job becomes queued or running (for a person watching;
    what the node says here decides nothing)."""
    last = ""
    while True:
        await asyncio.sleep(JOB_POLL_S)
        try:
            state = (await client.job(job_cid))["state"]
        except CodError:
            continue
        if state in (QUEUED, RUNNING) and state != last:
            on_state(state, "")
            last = state


async def _until_unresponsive(client: NodeClient) -> None:
    """Return once the node has failed LIVENESS_MISSES health checks in a row."""
    misses = 0
    while misses < LIVENESS_MISSES:
        await asyncio.sleep(LIVENESS_INTERVAL_S)
        misses = 0 if await client.alive() else misses + 1


def _judge(job: PreparedJob, job_cid: str, answers: list[Answer], n: int, quorum: int) -> Verification:
    """The outcome of the answers (SPEC 11, step 4); ``quorum`` 0 means all N must agree.

    A node that signed another profile than it advertised is outside every agreeing group
    (``consistent_groups``): no outcome but ``mismatch`` (or a quorum of the others) follows."""
    valid = [a for a in answers if a.valid]
    groups: dict[str, list[str]] = {}
    for answer in valid:
        groups.setdefault(answer.result_cid or "", []).append(answer.node_id)
    consistent = consistent_groups(answers)
    contradictions = "; ".join(a.contradiction() for a in valid if a.contradicts) or None

    def done(outcome: str, result: str | None, note: str | None = None) -> Verification:
        note = "; ".join(filter(None, [note, contradictions])) or None
        return Verification(job_cid, outcome, result, n, quorum, answers, groups, None, note)

    if job.spec.engine == ENGINE_DOCKER or n == 1:
        note = "docker jobs are never verifiable" if job.spec.engine == ENGINE_DOCKER else "one node proves nothing"
        return done(UNVERIFIABLE, valid[0].result_cid, note) if valid else done(INCOMPLETE, None, note)
    if len(valid) < n:
        return done(INCOMPLETE, None, f"{len(valid)} valid answer(s) of {n}")
    if len(groups) == 1 and not contradictions:
        return done(VERIFIED, valid[0].result_cid)
    # with 2K > N at most one group can reach K: no tie is ever broken, by CID order or otherwise
    reached = [cid for cid, nodes in consistent.items() if quorum and len(nodes) >= quorum and 2 * len(nodes) > n]
    if len(reached) == 1:
        return done(QUORUM, reached[0], f"{len(consistent[reached[0]])} of {n} agreed")
    if contradictions:
        return done(MISMATCH, None)
    profiles = {cid: {a.profile for a in valid if a.result_cid == cid} for cid in groups}
    if all(len(p) == 1 for p in profiles.values()) and len({next(iter(p)) for p in profiles.values()}) > 1:
        return done(PROFILE_MISMATCH, None, "nodes of different execution profiles disagree")
    return done(MISMATCH, None)


def _disputed(verification: Verification) -> str | None:
    """The profile under which valid, consistent claims name two or more result CIDs (SPEC 11.3),
    if one does: the claims a referee judges."""
    results: dict[str, set[str]] = {}
    for answer in verification.answers:
        if answer.valid and not answer.contradicts:
            results.setdefault(answer.profile, set()).add(answer.result_cid or "")
    disputed = sorted(profile for profile, cids in results.items() if len(cids) > 1)
    return disputed[0] if disputed else None


def _proven_liars(claims: list[Answer], ruling: Ruling) -> list[str]:
    """The node IDs of the claims whose result is not the re-execution's, in code-point order."""
    return sorted({a.node_id for a in claims if a.result_cid != ruling.result_cid})


def _rule(verification: Verification, profile: str, ruling: Ruling) -> None:
    """Apply the referee's ruling on the claims signed under ``profile``: accept the claim equal
    to its result whatever the count (verified-by-referee), or none (referee-disagrees); every
    node of that profile that signed another result is a proven liar. A refusal only adds why
    to the note: the outcome stays the one voting gave."""
    if ruling.result_cid is None:
        verification.note = "; ".join(filter(None, [verification.note, ruling.refused]))
        return
    claims = [a for a in verification.answers if a.valid and not a.contradicts and a.profile == profile]
    verification.liars = _proven_liars(claims, ruling)
    verification.referee = ruling.to_json(verification.liars)
    honest = [a for a in claims if a.result_cid == ruling.result_cid]
    said = f"the referee re-executed the job ({ruling.segment_fuel} fuel) and got {ruling.result_cid}"
    if honest:
        verification.outcome, verification.result_cid = REFEREE, ruling.result_cid
        note = f"{said}, as {len(honest)} of {len(claims)} claim(s): accepted"
    else:
        verification.outcome, verification.result_cid = REFEREE_DISAGREES, None
        note = f"{said}, which no claim equals: nothing accepted"
    liars = f"; proven liar(s): {', '.join(verification.liars)}" if verification.liars else ""
    verification.note = note + liars


async def judge_claims(job: PreparedJob, verification: Verification, scratch: Path, *, referee: str = NONE,
                       referee_fuel: int | None = None, referee_bytes: int = DEFAULT_GATHER_BYTES,
                       audit: float = 0.0, chooser: Chooser | None = None, store: ContentStore | None = None,
                       cache_dir: Path | None = None, progress: Progress = lambda step: None,
                       fraud_dir: Path | None = None) -> None:
    """After the vote (step 4): the referee when claims of one profile differ (SPEC 11.3), else the
    random audit of agreed claims (SPEC 11.4). ``verification`` is changed in place; a fraud proof
    (SPEC 11.5) of every proven liar is kept in ``fraud_dir`` (when given) and listed in it."""
    if job.spec.engine == ENGINE_DOCKER:
        return
    disputed = _disputed(verification)
    if referee != NONE and disputed is not None:
        progress("Claims differ: re-executing the job here (the referee)")
        with telemetry.span("cod.referee"):
            judged = await _gathered(job, verification, referee_bytes, store, scratch)
            ruling = await asyncio.to_thread(re_execute, judged, disputed, referee_fuel, cache_dir)
        _rule(verification, disputed, ruling)
        _prove(job, verification, ruling, fraud_dir)
    elif audit > 0 and disputed is None and verification.outcome in (VERIFIED, QUORUM):
        profile = _agreed_profile(verification)
        audited = None
        if profile is not None and chosen(audit, chooser):
            progress("Auditing the agreed result: re-executing the job here")
            with telemetry.span("cod.audit"):
                judged = await _gathered(job, verification, referee_bytes, store, scratch)
                audited = await asyncio.to_thread(re_execute, judged, profile, referee_fuel, cache_dir)
            _audited(verification, profile, audited)
            _prove(job, verification, replace(audited, method="audit"), fraud_dir)
        verification.audit = audit_record(audit, audited)


def _prove(job: PreparedJob, verification: Verification, ruling: Ruling, fraud_dir: Path | None) -> None:
    if verification.liars and fraud_dir is not None:
        from .proofs import build_all, keep

        verification.fraud_proofs = keep(fraud_dir, build_all(job.spec, verification.answers, verification.liars,
                                                              ruling))


def judged_extra(verification: Verification) -> dict[str, Any]:
    """What the records keep of the referee's or the audit's judgement (the run's ``extra``)."""
    out: dict[str, Any] = {}
    if verification.referee is not None:
        out.update(referee=verification.referee, liars=verification.liars)
    if verification.audit is not None:
        out.update(audit=verification.audit, liars=verification.liars)
    if verification.fraud_proofs:
        out.update(fraud_proofs=verification.fraud_proofs)
    return out


async def _gathered(job: PreparedJob, verification: Verification, max_bytes: int, store: ContentStore | None,
                    scratch: Path) -> PreparedJob:
    """``job`` with what this requester lacks of it fetched by CID from the nodes that signed
    (SPEC 11.3, step 1): the module, the modules it imports by CID, the inputs and output base,
    each checked against its CID, all together at most ``max_bytes``, into ``store`` (else a store
    in the run's ``scratch``, removed with it)."""
    if lacking(job) is None or job.spec.engine == ENGINE_DOCKER:
        return job
    urls = list(dict.fromkeys(a.url for a in verification.answers if a.valid))
    got = await gather(job.spec, urls, store or ContentStore(scratch / "store"), max_bytes=max_bytes, wasm=job.wasm,
                       modules=job.modules)
    return PreparedJob(job.spec, got.wasm, {**got.sources, **job.sources}, {**got.modules, **job.modules},
                       got.missing_modules)


def _agreed_profile(verification: Verification) -> str | None:
    """The one profile the accepted claims were signed under (None when they name several)."""
    profiles = {a.profile for a in verification.answers
                if a.valid and not a.contradicts and a.result_cid == verification.result_cid}
    return next(iter(profiles)) if len(profiles) == 1 else None


def _audited(verification: Verification, profile: str, ruling: Ruling) -> None:
    """Apply an audit of agreed claims (SPEC 11.4): a result equal to the accepted one confirms it;
    another result fails the run and makes every signer of the accepted result a proven liar; a
    refusal only says why in the note."""
    if ruling.result_cid is None:
        verification.note = "; ".join(filter(None, [verification.note, f"the audit did not judge: {ruling.refused}"]))
        return
    said = f"audited: the re-execution here ({ruling.segment_fuel} fuel) gave {ruling.result_cid}"
    if ruling.result_cid == verification.result_cid:
        verification.note = "; ".join(filter(None, [verification.note, f"{said}, as the nodes signed"]))
        return
    claims = [a for a in verification.answers if a.valid and not a.contradicts and a.profile == profile]
    verification.liars = _proven_liars(claims, ruling)
    verification.outcome, verification.result_cid = AUDIT_FAILED, None
    verification.note = (f"{said}, not what the nodes signed: nothing accepted; proven liar(s): "
                         f"{', '.join(verification.liars)}")


def _remember(records: Records, verification: Verification) -> None:
    winner = majority(consistent_groups(verification.answers))
    liars = set(verification.liars)
    if verification.outcome == REFEREE:
        winner = verification.result_cid
    for answer in verification.answers:
        if answer.node_id in liars:
            records.bump(answer.node_id, "lied")
        elif answer.signature_valid is False:
            records.bump(answer.node_id, "bad_signature")
        elif not answer.valid:
            records.bump(answer.node_id, "failed")
        elif answer.contradicts:
            records.bump(answer.node_id, "disagreed")
        elif verification.outcome == PROFILE_MISMATCH:
            continue
        elif answer.result_cid == winner:
            records.bump(answer.node_id, "agreed")
        else:
            records.bump(answer.node_id, "disagreed")


async def _download(session: aiohttp.ClientSession, records: Records, verification: Verification,
                    job: PreparedJob, output_dir: Path | None, scratch: Path, timeout_s: float,
                    events: Events | None = None, base: BaseSize | None = None) -> None:
    """Fetch the agreed result from the agreeing nodes, best record first (then node ID),
    bounded by the job's caps and ``base``, the size of its output base (``measure_base``).

    A node that cannot deliver it is recorded as failed; if none can, a verified outcome
    becomes incomplete: signed agreement on a result nobody hands over proves nothing usable.
    """
    agreed = verification.result_cid
    assert agreed is not None
    agreeing = sorted((a for a in verification.answers if a.result_cid == agreed and not a.contradicts),
                      key=lambda a: (-records.score(a.node_id), a.node_id))
    by_url = {a.url: a for a in agreeing}
    unmeasured = job.spec.output_base is not None and base is None  # bounded by the absolute cap alone
    limits = None if job.spec.engine == ENGINE_DOCKER or unmeasured else job.spec.limits
    moved = [0]
    try:
        def received(done: int, total: int | None) -> None:
            moved[0] = done
            if events is not None:
                events.transfer(f"download {agreed}", "download results", done, total)

        with telemetry.span("cod.download", {"cod.result_cid": agreed}):
            done = await download_agreed(session, [a.url for a in agreeing], verification.job_cid, agreed,
                                         output_dir, None, scratch, limits=limits, base=base,
                                         timeout_s=timeout_s, on_bytes=received)
        failures = done.failures
        verification.results_dir = done.path if output_dir is not None else None
        verification.result_checked = True
    except DownloadFailed as exc:
        failures = exc.failures
        verification.note = "; ".join(filter(None, [verification.note, exc.message]))
        if verification.outcome in (VERIFIED, QUORUM):
            verification.outcome = INCOMPLETE
    counted = metrics.current()
    if counted is not None:
        counted.moved(metrics.DOWNLOAD, moved[0])
    for url, why in failures.items():
        by_url[url].download_error = why
        records.bump(by_url[url].node_id, "failed")
