"""Verification by agreement: one job, N distinct nodes, their signed result CIDs compared.

    verified            all N signed the same result CID
    verified-by-quorum  K of N agreed (only with --quorum K), reported as such
    mismatch            any disagreement: the groups and their nodes are reported
    profile-mismatch    nodes of different execution profiles disagreed: not a lie
    incomplete          fewer than N valid answers, spares included, before the deadline
    unverifiable        a docker job, or a job run with N = 1

Nothing that is not `verified` (or a quorum asked for) is ever called verified. Each
statement is checked against the node ID it comes from and the job it answers; a node
that fails or signs badly is replaced by a spare while time allows. After agreement one
result is downloaded and must hash to the agreed CID.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from cod.car import write_car
from cod.errors import BadSignature, CodError, EngineUnavailable, NodeBusy, NodeError
from cod.jobspec import ENGINE_DOCKER
from cod.local import PreparedJob
from cod.statement import SignedStatement
from cod.wasm.executor import check_destination

from .client import MissingBlobs, NodeClient
from .fetch import download_agreed
from .reputation import Records

VERIFIED, QUORUM, MISMATCH = "verified", "verified-by-quorum", "mismatch"
PROFILE_MISMATCH, INCOMPLETE, UNVERIFIABLE = "profile-mismatch", "incomplete", "unverifiable"
EXIT_CODES = {VERIFIED: 0, QUORUM: 0, MISMATCH: 10, INCOMPLETE: 11, UNVERIFIABLE: 12, PROFILE_MISMATCH: 13}
MAX_BACKOFF = 8.0
INFO_TTL = 30.0
DEADLINE_MARGIN = 30.0


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

    @property
    def valid(self) -> bool:
        return self.result_cid is not None and self.signature_valid is True


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

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]

    def to_json(self) -> dict[str, Any]:
        return {
            "job_cid": self.job_cid, "outcome": self.outcome, "result_cid": self.result_cid, "n": self.n,
            "quorum": self.quorum, "groups": self.groups, "note": self.note, "result_checked": self.result_checked,
            "results_dir": str(self.results_dir) if self.results_dir else None,
            "nodes": [asdict(a) for a in self.answers],
        }


Progress = Callable[[str], None]


class _Uploads:
    """The job's blobs, uploaded to a node only where it lacks them; CARs built once."""

    def __init__(self, job: PreparedJob, scratch: Path) -> None:
        self.job = job
        self.scratch = scratch
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
            if cid == spec.module and spec.engine != ENGINE_DOCKER:
                await client.put(cid, self.job.wasm, car=False)
                continue
            paths = [item.path for item in spec.inputs if item.cid == cid]
            if cid == spec.output_base:  # the output base travels as a CAR, like an input
                paths.append(spec.outputs)
            if not paths:
                raise NodeError(f"node {client.url} asks for {cid}, which is not part of this job")
            await client.put(cid, await self.car(cid, self.job.sources[paths[0]]), car=True)


class Requester:
    """What many verifications share: one HTTP connection pool, the records, recent node infos."""

    def __init__(self, records: Records | None = None, info_ttl: float = INFO_TTL) -> None:
        self.records = records or Records()
        self.info_ttl = info_ttl
        self._infos: dict[str, tuple[float, dict[str, Any]]] = {}
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512))
        return self._session

    async def info(self, client: NodeClient) -> dict[str, Any]:
        now = asyncio.get_running_loop().time()
        cached = self._infos.get(client.url)
        if cached is not None and now - cached[0] < self.info_ttl:
            return cached[1]
        info = await client.info()
        self._infos[client.url] = (now, info)
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
                 requester: Requester | None = None) -> Verification:
    """Run ``job`` on ``n`` distinct nodes among ``urls`` and compare their signed answers."""
    if requester is None:
        async with Requester(records) as own:
            return await verify(job, urls, n, quorum=quorum, output_dir=output_dir, progress=progress,
                                deadline_s=deadline_s, requester=own)
    if n < 1:
        raise NodeError("--verify needs at least 1 node")
    if output_dir is not None:
        check_destination(output_dir)
    records = requester.records
    spec_json = job.spec.to_dict()
    job_cid = str(job.spec.cid)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (deadline_s if deadline_s is not None else job.spec.limits.timeout_ms / 1000
                              + DEADLINE_MARGIN)
    scratch = Path(tempfile.mkdtemp(prefix="cod-verify-"))
    session = requester.session
    try:
        progress(f"Checking {len(urls)} node(s)")
        candidates = await _candidates(requester, list(dict.fromkeys(urls)), job, records)
        if not candidates and job.spec.engine == ENGINE_DOCKER:
            raise EngineUnavailable(
                f"none of the {len(urls)} node(s) has a Docker-compatible engine",
                "start Docker, or podman's Docker API service (DOCKER_HOST=unix://...), where a node runs",
            )
        if not candidates:
            raise NodeError("no reachable node can run WASM jobs", "check --node, COD_NODES or the config file")
        uploads = _Uploads(job, scratch)
        progress(f"Running on {min(n, len(candidates))} node(s)")
        answers = await _dispatch(candidates, n, uploads, spec_json, job_cid, deadline)
        for answer in answers:
            if not answer.valid:
                requester.forget(answer.url)
        progress("Comparing signed results")
        verification = _judge(job, job_cid, answers, n, quorum or 0)
        _remember(records, verification)
        if verification.result_cid is not None:  # at least one result is fetched and checked, always
            progress("Downloading results")
            await _download(session, verification, output_dir, scratch)
        records.record_job(job_cid, verification.outcome, verification.result_cid, n, quorum or 0, spec_json,
                           [asdict(a) for a in verification.answers])
        return verification
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def _candidates(requester: Requester, urls: list[str], job: PreparedJob,
                      records: Records) -> list[tuple[NodeClient, dict[str, Any]]]:
    clients = [NodeClient(requester.session, url) for url in urls]
    infos = await asyncio.gather(*(requester.info(c) for c in clients), return_exceptions=True)
    need = "docker" if job.spec.engine == ENGINE_DOCKER else "wasm"
    seen: set[str] = set()
    found = []
    for client, info in zip(clients, infos):
        if isinstance(info, BaseException) or need not in info.get("capabilities", []):
            continue
        if info["node_id"] in seen:
            continue  # one node behind two URLs counts once
        seen.add(info["node_id"])
        records.see(info["node_id"], client.url, info.get("profile", ""))
        found.append((client, info))
    by_profile: dict[str, list[tuple[NodeClient, dict[str, Any]]]] = {}
    for pair in found:
        by_profile.setdefault(pair[1].get("profile", ""), []).append(pair)

    scores = {info["node_id"]: records.score(info["node_id"]) for _, info in found}

    def rank(pair: tuple[NodeClient, dict[str, Any]]) -> tuple[int, str]:
        return (-scores[pair[1]["node_id"]], pair[1]["node_id"])

    ordered_profiles = sorted(by_profile, key=lambda p: (-len(by_profile[p]),
                                                          -sum(scores[i["node_id"]] for _, i in by_profile[p]), p))
    return [pair for profile in ordered_profiles for pair in sorted(by_profile[profile], key=rank)]


async def _dispatch(candidates: list[tuple[NodeClient, dict[str, Any]]], n: int, uploads: _Uploads,
                    spec: dict[str, Any], job_cid: str, deadline: float) -> list[Answer]:
    loop = asyncio.get_running_loop()
    queue = list(candidates)
    tasks: dict[asyncio.Task[Answer], Answer] = {}

    def launch() -> None:
        client, info = queue.pop(0)
        answer = Answer(info["node_id"], client.url, info.get("profile", ""))
        tasks[asyncio.create_task(_attempt(client, answer, uploads, spec, job_cid, deadline))] = answer

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
                answers.append(answer)
            break
        for task in done:
            answers.append(task.result())
            del tasks[task]
        valid = sum(a.valid for a in answers)
        while queue and valid + len(tasks) < n:
            launch()
    return answers


async def _attempt(client: NodeClient, answer: Answer, uploads: _Uploads, spec: dict[str, Any], job_cid: str,
                   deadline: float) -> Answer:
    loop = asyncio.get_running_loop()
    backoff = 0.25
    uploaded = False
    try:
        while True:
            try:
                job = await client.submit(spec, timeout=max(1.0, deadline - loop.time()))
                break
            except NodeBusy as busy:
                wait = min(MAX_BACKOFF, max(busy.retry_after, backoff))
                if loop.time() + wait > deadline:
                    raise NodeError(f"node {client.url} stayed busy until the deadline") from busy
                await asyncio.sleep(wait)
                backoff *= 2
            except MissingBlobs as lacking:  # submit first: a node that has the blobs needs no upload
                if uploaded:
                    raise
                await uploads.upload(client, lacking.missing)
                uploaded = True
        if job.get("state") != "done":
            error = job.get("error") or {}
            answer.error = f"job {job.get('state')}: {error.get('error', '')} {error.get('message', '')}".strip()
            return answer
        signed = SignedStatement.from_json(job.get("statement"))
        statement = signed.verify(job_cid, answer.node_id)
        answer.statement = job["statement"]
        if statement.result != job.get("result_cid"):
            raise BadSignature("the signed result differs from the result the node reports")
        answer.result_cid, answer.exit_code = statement.result, statement.exit_code
        answer.trap, answer.fuel_used, answer.profile = statement.trap, statement.fuel_used, statement.profile
        answer.signature_valid = True
    except BadSignature as exc:
        answer.signature_valid, answer.result_cid, answer.error = False, None, str(exc)
    except CodError as exc:
        answer.error = str(exc)
    return answer


def _judge(job: PreparedJob, job_cid: str, answers: list[Answer], n: int, quorum: int) -> Verification:
    valid = [a for a in answers if a.valid]
    groups: dict[str, list[str]] = {}
    for answer in valid:
        groups.setdefault(answer.result_cid or "", []).append(answer.node_id)

    def done(outcome: str, result: str | None, note: str | None = None) -> Verification:
        return Verification(job_cid, outcome, result, n, quorum, answers, groups, None, note)

    if job.spec.engine == ENGINE_DOCKER or n == 1:
        note = "docker jobs are never verifiable" if job.spec.engine == ENGINE_DOCKER else "one node proves nothing"
        return done(UNVERIFIABLE, valid[0].result_cid, note) if valid else done(INCOMPLETE, None, note)
    if len(valid) < n:
        return done(INCOMPLETE, None, f"{len(valid)} valid answer(s) of {n}")
    if len(groups) == 1:
        return done(VERIFIED, valid[0].result_cid)
    biggest = max(groups, key=lambda cid: (len(groups[cid]), cid))
    if quorum and len(groups[biggest]) >= quorum:
        return done(QUORUM, biggest, f"{len(groups[biggest])} of {n} agreed")
    profiles = {cid: {a.profile for a in valid if a.result_cid == cid} for cid in groups}
    if all(len(p) == 1 for p in profiles.values()) and len({next(iter(p)) for p in profiles.values()}) > 1:
        return done(PROFILE_MISMATCH, None, "nodes of different execution profiles disagree")
    return done(MISMATCH, None)


def _remember(records: Records, verification: Verification) -> None:
    groups = verification.groups
    largest = max((len(v) for v in groups.values()), default=0)
    majority = [cid for cid, nodes in groups.items() if len(nodes) == largest]
    winner = majority[0] if len(majority) == 1 and largest * 2 > sum(len(v) for v in groups.values()) else None
    for answer in verification.answers:
        if answer.signature_valid is False:
            records.bump(answer.node_id, "bad_signature")
        elif not answer.valid:
            records.bump(answer.node_id, "failed")
        elif verification.outcome == PROFILE_MISMATCH:
            continue
        elif len(groups) == 1 or answer.result_cid == winner:
            records.bump(answer.node_id, "agreed")
        else:
            records.bump(answer.node_id, "disagreed")


async def _download(session: aiohttp.ClientSession, verification: Verification, output_dir: Path | None,
                    scratch: Path) -> None:
    agreed = verification.result_cid
    assert agreed is not None
    urls = [a.url for a in verification.answers if a.result_cid == agreed]
    try:
        where = await download_agreed(session, urls, verification.job_cid, agreed, output_dir, None, scratch)
        verification.results_dir = where if output_dir is not None else None
        verification.result_checked = True
    except NodeError as exc:
        verification.note = "; ".join(filter(None, [verification.note, exc.message]))
        if verification.outcome in (VERIFIED, QUORUM):
            # signed agreement on a result nobody will hand over proves nothing usable
            verification.outcome = INCOMPLETE
