"""A node's FIL+ policy (`cod serve --policy`, SPEC.md 9.7): which jobs it takes, asked of the ledger.

    any              every job (the ledger is never asked)
    prefer-fil-plus  jobs that are not FIL+ may hold only half the node's places (running +
                     queued); FIL+ jobs all of them; a ledger that cannot be asked counts as
                     "not blessed" (the job is then an ordinary job)
    fil-plus-only    only FIL+ jobs; an ordinary job is refused (403 PolicyRefused); a ledger
                     that cannot be asked refuses the job too (503 LedgerUnavailable: fail closed)

A job is FIL+ when it reads at least one input and every input (and its output base) is a
CID the ledger answers ``"blessed": true`` for. Answers are cached: blessed for the node's life
(blessings are never revoked), not blessed for NOT_BLESSED_TTL_S. Any answer that is not a
well-formed yes (bad JSON, wrong types, another CID, a 4xx) counts as not blessed; only a
ledger that cannot be reached (refused, timed out, 5xx) counts as unavailable. Each refusal is
reported to the ledger as a refusal entry signed by the node, in the background.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import aiohttp

from ..errors import LedgerRefused, NodeError, PolicyRefused, RateLimited
from ..identity import Identity
from ..jobspec import JobSpec
from ..ledger.client import LedgerClient, clean
from ..ledger.entries import MAX_REASON_CHARS, MAX_REFUSAL_INPUTS, sign_refusal

log = logging.getLogger("cod.node.policy")

ANY, PREFER, ONLY = "any", "prefer-fil-plus", "fil-plus-only"
POLICIES = (ANY, PREFER, ONLY)

BLESSED_TTL_S = math.inf
"""A blessed answer is kept for the node's life: the ledger never revokes a blessing."""
NOT_BLESSED_TTL_S = 60.0
"""A "not blessed" answer is kept this long: a CID blessed meanwhile is taken within a minute."""
MAX_CACHE_ENTRIES = 100_000
"""Most answers cached (oldest dropped first): jobs naming endless new CIDs cannot grow the node."""
LEDGER_TIMEOUT_S = 5.0
"""Longest a question to the ledger may take; past it the ledger counts as unavailable."""
MAX_ANSWER_BYTES = 1 << 20
"""Largest answer to GET /v1/inputs/{cid} read; a larger one counts as not blessed."""
MAX_PARALLEL_QUESTIONS = 8
"""Questions about one job's inputs asked at once."""
JUDGE_TIMEOUT_S = 2 * LEDGER_TIMEOUT_S
"""Longest all the questions about one job may take together (a job may name many inputs)."""
REFUSAL_BACKLOG = 1000
"""Refusals waiting to be reported; past it new ones are dropped (counted, logged)."""
REFUSAL_ATTEMPTS = 5
REFUSAL_FIRST_BACKOFF_S = 1.0
REFUSAL_MAX_BACKOFF_S = 30.0
MAX_REPORTED_KEYS = 100_000
"""(job, policy) pairs already reported, so a requester retrying a job does not flood the ledger."""


class LedgerUnavailable(NodeError):
    """fil-plus-only and the ledger cannot be asked: the job is refused (HTTP 503), fail closed."""


@dataclass(frozen=True)
class Verdict:
    """What the ledger says of a job's inputs: FIL+ or not, why not, and its input CIDs."""

    fil_plus: bool
    reason: str | None
    inputs: tuple[str, ...]
    unavailable: bool = False


def input_cids(spec: JobSpec) -> tuple[str, ...]:
    """The CIDs a job reads (inputs and output base), distinct and sorted."""
    cids = {item.cid for item in spec.inputs if item.cid is not None}
    if spec.output_base is not None:
        cids.add(spec.output_base)
    return tuple(sorted(cids))


class Policy:
    """A node's policy and its cached view of the ledger."""

    def __init__(self, name: str = ANY, ledger: str | None = None) -> None:
        """Raises NodeError for an unknown policy, or a policy other than ``any`` without a ledger."""
        if name not in POLICIES:
            raise NodeError(f"unknown policy {name!r}", f"use one of {', '.join(POLICIES)}")
        if name != ANY and not ledger:
            raise NodeError(f"--policy {name} needs --ledger URL", "name the ledger the node asks about inputs")
        self.name = name
        self.ledger = ledger.rstrip("/") if ledger else None
        self._cache: OrderedDict[str, tuple[bool, float]] = OrderedDict()
        self._session: aiohttp.ClientSession | None = None
        self._identity: Identity | None = None
        self._backlog: asyncio.Queue[dict[str, Any]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._reported: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.questions = 0  # questions sent to the ledger (tests see the cache work)
        self.reported = 0  # refusals the ledger took
        self.dropped = 0  # refusals dropped: backlog full, retries spent, or refused by the ledger

    def published(self) -> dict[str, Any]:
        """The policy as /v1/info shows it."""
        return {"name": self.name, "ledger": self.ledger}

    def start(self, identity: Identity) -> None:
        """Bind the node's key (refusals are signed with it)."""
        self._identity = identity

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self, timeout_s: float, max_bytes: int) -> LedgerClient:
        assert self.ledger is not None
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32))
        return LedgerClient(self.ledger, self._session, timeout_s=timeout_s, max_bytes=max_bytes)

    # -- judging ------------------------------------------------------------------------------
    async def admit(self, spec: JobSpec, job_cid: str) -> bool:
        """Whether the job is FIL+ (always True under ``any``, where nothing is asked).

        Raises PolicyRefused (fil-plus-only, an ordinary job) or LedgerUnavailable
        (fil-plus-only, the ledger cannot be asked); the refusal is reported to the ledger.
        """
        if self.name == ANY:
            return True
        verdict = await self.judge(spec)
        if self.name == ONLY and not verdict.fil_plus:
            if verdict.unavailable:
                raise LedgerUnavailable(
                    f"this node takes only FIL+ jobs and cannot ask the ledger at {self.ledger} whether "
                    f"{verdict.reason}", "retry later: the node refuses what it cannot check (fail closed)")
            reason = f"{verdict.reason} (this node's policy is fil-plus-only)"
            self.report(job_cid, verdict.inputs, reason)
            raise PolicyRefused(reason, "send the job to a node with another policy, or run it on blessed "
                                        f"FIL+ inputs (ask the ledger: GET {self.ledger}/v1/inputs/CID)")
        return verdict.fil_plus

    async def judge(self, spec: JobSpec) -> Verdict:
        """FIL+ or not, with the first reason why not (local input, no input, not blessed)."""
        cids = input_cids(spec)
        for item in spec.inputs:
            if item.local is not None:
                return Verdict(False, f"input {clean(item.local)} is a node-local path, not FIL+ data", cids)
        if not any(item.cid is not None for item in spec.inputs):  # an output base is not an input (9.7)
            return Verdict(False, "the job reads no FIL+ data", cids)
        gate = asyncio.Semaphore(MAX_PARALLEL_QUESTIONS)

        async def ask(cid: str) -> bool | None:
            async with gate:
                return await self.blessed(cid)

        try:
            answers = await asyncio.wait_for(asyncio.gather(*(ask(cid) for cid in cids)), JUDGE_TIMEOUT_S)
        except asyncio.TimeoutError:
            return Verdict(False, f"the {len(cids)} input CIDs are blessed FIL+ data (no answers within "
                                  f"{JUDGE_TIMEOUT_S:g} s)", cids, unavailable=True)
        for cid, answer in zip(cids, answers):
            if answer is None:
                return Verdict(False, f"input CID {cid} is blessed FIL+ data", cids, unavailable=True)
        for cid, answer in zip(cids, answers):
            if not answer:
                return Verdict(False, f"input CID {cid} is not blessed FIL+ data", cids)
        return Verdict(True, None, cids)

    async def blessed(self, cid: str) -> bool | None:
        """The ledger's answer for ``cid`` (cached), or None if the ledger cannot be asked."""
        loop = asyncio.get_running_loop()
        cached = self._cache.get(cid)
        if cached is not None:
            if loop.time() < cached[1]:
                return cached[0]
            del self._cache[cid]
        self.questions += 1
        try:
            answer = await self._client(LEDGER_TIMEOUT_S, MAX_ANSWER_BYTES).input(cid)
        except LedgerRefused as exc:
            if exc.status == 0 or exc.status >= 500:
                log.warning("the ledger cannot be asked about %s: %s", cid, exc.message)
                return None
            blessed = False  # a refusal (4xx) or nonsense: not a yes
        else:
            blessed = answer.get("blessed") is True and answer.get("cid") == cid
        self._cache[cid] = (blessed, loop.time() + (BLESSED_TTL_S if blessed else NOT_BLESSED_TTL_S))
        while len(self._cache) > MAX_CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return blessed

    # -- refusals -----------------------------------------------------------------------------
    def report(self, job_cid: str, inputs: tuple[str, ...], reason: str) -> None:
        """Queue a signed refusal for the ledger (never waits; once per job and policy)."""
        key = (job_cid, self.name)
        if key in self._reported or self._identity is None or self.ledger is None:
            return
        self._reported[key] = None
        while len(self._reported) > MAX_REPORTED_KEYS:
            self._reported.popitem(last=False)
        signed = sign_refusal(self._identity, job=job_cid, policy=self.name,
                              inputs=list(inputs[:MAX_REFUSAL_INPUTS]),  # the entry holds at most these
                              reason=clean(reason, MAX_REASON_CHARS - 3))  # "..." when cut
        if self._backlog is None:
            self._backlog = asyncio.Queue(maxsize=REFUSAL_BACKLOG)
        try:
            self._backlog.put_nowait(signed)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("refusal of job %s not reported: %d refusals already wait", job_cid, REFUSAL_BACKLOG)
            return
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._send_all())

    async def _send_all(self) -> None:
        assert self._backlog is not None
        while True:
            signed = await self._backlog.get()
            await self._send(signed)

    async def _send(self, signed: dict[str, Any]) -> None:
        """POST one refusal: at most REFUSAL_ATTEMPTS tries, backing off (a 429 waits its Retry-After,
        at most REFUSAL_MAX_BACKOFF_S); any other 4xx is final."""
        backoff = REFUSAL_FIRST_BACKOFF_S
        for attempt in range(REFUSAL_ATTEMPTS):
            try:
                await self._client(LEDGER_TIMEOUT_S, MAX_ANSWER_BYTES).refusal(signed)
                self.reported += 1
                return
            except RateLimited as exc:  # the ledger's write budget (SPEC 12.7): not the refusal's fault
                log.info("the ledger is rate limiting refusals (%s); retrying in %d s", exc.limit, exc.retry_after)
                if attempt + 1 < REFUSAL_ATTEMPTS:
                    await asyncio.sleep(min(max(backoff, exc.retry_after), REFUSAL_MAX_BACKOFF_S))
                    backoff = min(backoff * 2, REFUSAL_MAX_BACKOFF_S)
            except LedgerRefused as exc:
                if exc.status == 409:  # already in the log (a retry whose first answer was lost)
                    self.reported += 1
                    return
                if 400 <= exc.status < 500:
                    log.warning("the ledger refused a refusal entry: %s", exc.message)
                    break
                if attempt + 1 < REFUSAL_ATTEMPTS:
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, REFUSAL_MAX_BACKOFF_S)
        self.dropped += 1

