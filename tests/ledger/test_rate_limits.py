"""Issue 19 point 24: anyone could grow the log (refusals from throw-away keys at 1,020/s) and slow
it. Writes are now rate limited per client address, per signing key and for all anonymous posters
together (SPEC.md 12.7, "Write rate limits"): over a limit, 429 with Retry-After and a JSON body
naming the limit, nothing stored; other addresses and the moderators still get through.

A real ledger server on loopback; a second client address is 127.0.0.x (a client socket bound to
it); time is the limiter's injected monotonic clock, driven by the test (no sleeping).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import nacl.signing
import pytest

from cod.errors import LedgerRefused
from cod.identity import Identity
from cod.ledger import entries
from cod.ledger.client import LedgerClient
from cod.ledger.rates import Rate, WriteLimits
from cod.ledger.server import RunningLedger, start_ledger

from .bkit import DATA, MOD, ORIGIN, RESULT, ROOTS, agreeing, blessed_ledger, cid, job_of, spec

SPEC_ADDRESS_BURST = 60
"""SPEC.md 12.7: one client address may write 60 times at once, then regains one write every 1,000 ms."""


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Served:
    def __init__(self, running: RunningLedger, clock: Clock) -> None:
        self.running, self.clock = running, clock
        self.sessions: dict[str, aiohttp.ClientSession] = {}

    async def client(self, address: str = "127.0.0.1") -> LedgerClient:
        """A client whose requests come from ``address`` (a loopback address of this host)."""
        if address not in self.sessions:
            self.sessions[address] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))
        return LedgerClient(self.running.url, self.sessions[address])

    async def post(self, path: str, body: Any, address: str = "127.0.0.1") -> tuple[int, dict[str, str], Any]:
        """Status, headers and JSON body of one POST from ``address``."""
        await self.client(address)
        async with self.sessions[address].post(self.running.url + path, json=body) as resp:
            return resp.status, dict(resp.headers), await resp.json()

    async def close(self) -> None:
        for session in self.sessions.values():
            await session.close()
        await self.running.stop()


async def serve(tmp_path: Path, limits: WriteLimits | None = None) -> Served:
    blessed_ledger(tmp_path).close()  # root keys ROOTS (K=2), MOD a moderator, DATA blessed
    clock = Clock()
    return Served(await start_ledger(tmp_path / "ledger", limits=limits, clock=clock), clock)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    s = await serve(tmp_path)  # the published default limits
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def small(tmp_path: Path) -> AsyncIterator[Served]:
    s = await serve(tmp_path, WriteLimits(address=Rate(5, 1000), key=Rate(3, 2000), anonymous=Rate(12, 1000)))
    try:
        yield s
    finally:
        await s.close()


def throwaway() -> Identity:
    return Identity(nacl.signing.SigningKey.generate())


def refusal(node: Identity | None = None, n: int = 0) -> dict[str, Any]:
    job = job_of(dict(spec(DATA), args=[f"refused {n}"]))
    return entries.sign_refusal(node or throwaway(), job=job, policy="fil-plus-only", inputs=[DATA], reason="r")


def decision(job: str, entry: int, supersedes: int | None = None, action: str = "approve") -> dict[str, Any]:
    return entries.sign_decision(MOD, origin=ORIGIN, job=job, result=RESULT, action=action,
                                 datacap=(1 << 40) if action == "approve" else 0, reason="useful", eligibility=entry,
                                 supersedes=supersedes)


def assert_limited(status: int, headers: dict[str, str], body: Any, limit: str, retry_after: int) -> None:
    assert status == 429, (status, body)
    assert headers.get("Retry-After") == str(retry_after), headers
    assert body["error"] == "RateLimited" and body["limit"] == limit and body["retry_after"] == retry_after, body
    assert "retry after" in body["hint"] and limit.split()[0] in body["message"], body


async def test_a_burst_from_one_address_is_429_while_other_addresses_and_moderators_get_through(
        served: Served) -> None:
    ledger = served.running.ledger
    job_spec = spec(DATA)
    made = await (await served.client("127.0.0.2")).evidence(job_spec, agreeing(job_spec, 3))
    assert made["eligible"] is True
    taken = []
    for n in range(SPEC_ADDRESS_BURST - 1):  # the evidence above came from another address
        status, _, body = await served.post("/v1/refusals", refusal(n=n))
        assert status == 201, body
        taken.append(body["entry"])
    status, _, body = await served.post("/v1/refusals", refusal(n=99))
    assert status == 201, body  # the 60th write of 127.0.0.1
    taken.append(body["entry"])
    size = ledger.size
    # the 61st at the same instant: the bucket is empty; one write comes back after 1 s
    assert_limited(*await served.post("/v1/refusals", refusal(n=100)), "address", 1)
    assert_limited(*await served.post("/v1/evidence", {"spec": job_spec, "statements": agreeing(job_spec, 2)}),
                   "address", 1)
    with pytest.raises(LedgerRefused) as caught:
        await (await served.client()).refusal(refusal(n=101))
    assert (caught.value.status, caught.value.error) == (429, "RateLimited")
    assert ledger.size == size, "a refused write stored something"
    # another address, and the moderator and a root key from the spent address itself, still get through
    status, _, body = await served.post("/v1/refusals", refusal(n=102), "127.0.0.2")
    assert status == 201, body
    decided = await (await served.client()).decide(decision(made["job"], made["entry"]))
    proposal = await (await served.client()).propose(entries.sign_proposal(ROOTS[0], origin=ORIGIN, action="add",
                                                                           moderator=throwaway().node_id))
    assert decided["entry"] > made["entry"] and proposal["in_effect"] is False
    # after the Retry-After delay one write goes through, the next is refused again
    served.clock.now += 1.0
    status, _, body = await served.post("/v1/refusals", refusal(n=103))
    assert status == 201, body
    assert_limited(*await served.post("/v1/refusals", refusal(n=104)), "address", 1)
    served.clock.now += 30.0
    for n in range(30):
        status, _, body = await served.post("/v1/refusals", refusal(n=200 + n))
        assert status == 201, body
    # nothing already stored was lost
    for index in taken:
        assert (await (await served.client()).inclusion(index))["leaf_index"] == index
    assert (await (await served.client()).job(made["job"]))["state"] == "approved"


async def test_one_key_from_many_addresses_is_limited_and_a_forged_key_does_not_drain_it(small: Served) -> None:
    node, victim = throwaway(), throwaway()
    for n, address in enumerate(("127.0.0.1", "127.0.0.2", "127.0.0.3")):  # key: 3 at once, one per 2 s
        status, _, body = await small.post("/v1/refusals", refusal(node, n), address)
        assert status == 201, body
    assert_limited(*await small.post("/v1/refusals", refusal(node, 9), "127.0.0.4"), "key", 2)
    # refusals naming the victim's key with a bad signature are refused, and do not spend its budget
    for n in range(3):
        forged = refusal(victim, n)
        forged["statement"] = dict(forged["statement"], reason="forged")
        status, _, body = await small.post("/v1/refusals", forged, "127.0.0.5")
        assert (status, body["error"]) == (422, "BadSignature"), body
    for n in range(3):
        status, _, body = await small.post("/v1/refusals", refusal(victim, 10 + n), "127.0.0.6")
        assert status == 201, body
    small.clock.now += 2.0
    status, _, body = await small.post("/v1/refusals", refusal(node, 20), "127.0.0.7")
    assert status == 201, body


async def test_all_anonymous_posters_together_are_limited_but_governance_is_not(small: Served) -> None:
    # 12 anonymous writes in all; 5 per address: 127.0.0.1..3 spend 5 + 5 + 2
    job_spec = spec(DATA)
    made = await (await small.client("127.0.0.1")).evidence(job_spec, agreeing(job_spec, 3))
    for n in range(11):
        status, _, body = await small.post("/v1/refusals", refusal(n=n), f"127.0.0.{1 + (n + 1) // 5}")
        assert status == 201, body
    assert_limited(*await small.post("/v1/refusals", refusal(n=50), "127.0.0.9"), "anonymous", 1)
    # moderators and root keys are not anonymous: their posts do not wait for the anonymous budget
    decided = await (await small.client("127.0.0.9")).decide(decision(made["job"], made["entry"]))
    assert decided["entry"] > made["entry"]
    batch = entries.sign_bless_batch(MOD, {cid("more data"): [1]}, origin=ORIGIN)
    blessed = await (await small.client("127.0.0.1")).bless([batch])
    assert len(blessed["entries"]) == 1


async def test_replayed_or_forged_governance_posts_cost_the_address_that_sends_them(small: Served) -> None:
    job_spec = spec(DATA)
    made = await (await small.client("127.0.0.2")).evidence(job_spec, agreeing(job_spec, 3))
    first = decision(made["job"], made["entry"])
    await (await small.client()).decide(first)
    for _ in range(5):  # a moderator's decision is public: replaying it is refused, and spends the replayer's budget
        status, _, body = await small.post("/v1/decisions", first, "127.0.0.3")
        assert (status, body["error"]) == (409, "Replayed"), body
    assert_limited(*await small.post("/v1/decisions", first, "127.0.0.3"), "governance", 1)
    forged = decision(made["job"], made["entry"], supersedes=3, action="reject")
    forged["statement"] = dict(forged["statement"], reason="forged")
    assert_limited(*await small.post("/v1/decisions", forged, "127.0.0.3"), "governance", 1)
    # the moderator, from its own address, is not slowed by any of it
    latest = (await (await small.client()).job(made["job"]))["latest_decision"]
    later = decision(made["job"], made["entry"], supersedes=latest, action="reject")
    assert (await (await small.client()).decide(later))["entry"] > made["entry"]


async def test_the_limits_are_published(served: Served) -> None:
    info = await (await served.client()).info()
    assert info["write_limits"] == {"address": {"burst": 60, "refill_ms": 1000},  # SPEC.md 12.7's defaults
                                    "key": {"burst": 60, "refill_ms": 1000},
                                    "anonymous": {"burst": 1000, "refill_ms": 50},
                                    "fraud": {"burst": 10, "refill_ms": 60000}}  # SPEC.md 12.10's default


async def test_a_post_claiming_a_moderator_with_a_forged_signature_costs_the_anonymous_budget(small: Served) -> None:
    job_spec = spec(DATA)
    made = await (await small.client("127.0.0.2")).evidence(job_spec, agreeing(job_spec, 3))
    forged = decision(made["job"], made["entry"])
    forged["statement"] = dict(forged["statement"], datacap=1 << 50)  # MOD's signature over another amount
    for _ in range(5):  # address burst 5: each forged post takes an address token too
        status, _, body = await small.post("/v1/decisions", forged, "127.0.0.8")
        assert (status, body["error"]) == (422, "BadSignature"), body
    assert_limited(*await small.post("/v1/refusals", refusal(n=1), "127.0.0.8"), "address", 1)
    assert_limited(*await small.post("/v1/decisions", forged, "127.0.0.8"), "governance", 1)
    assert (await (await small.client()).decide(decision(made["job"], made["entry"])))["entry"] > made["entry"]


def test_an_ipv6_slash_64_is_one_address_and_full_buckets_are_forgotten_first(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from cod.errors import RateLimited
    from cod.ledger import rates

    clock = Clock()
    limiter = rates.Limiter(WriteLimits(address=Rate(2, 1000)), clock)
    for host in ("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff"):  # one /64
        limiter.take([rates.address_of(host)])
    with pytest.raises(RateLimited) as caught:
        limiter.take([rates.address_of("2001:db8:1:2::3")])
    assert caught.value.limit == "address" and "2001:db8:1:2::/64" in caught.value.message
    limiter.take([rates.address_of("2001:db8:1:3::1")])  # the next /64 is another address
    assert rates.address_of("::ffff:127.0.0.2") == rates.address_of("127.0.0.2")  # IPv4-mapped: the IPv4 client
    # past MAX_TRACKED buckets the full ones are forgotten first: a spent bucket is not reset
    monkeypatch.setattr(rates, "MAX_TRACKED", 10)
    slow = rates.Limiter(WriteLimits(address=Rate(2, 100_000)), clock)  # one write regained per 100 s
    spent = rates.address_of("2001:db8:9:9::1")
    slow.take([spent])
    slow.take([spent])
    for n in range(8):
        slow.take([rates.address_of(f"10.0.0.{n}")])  # 9 buckets: 8 at 1 token, the spent one at 0
    clock.now += 150.0  # the 8 are full again (1 + 1.5), the spent one holds 1.5
    slow.take([rates.address_of("10.0.0.8")])
    slow.take([rates.address_of("10.0.0.9")])  # 11 buckets: the 8 full ones are forgotten
    assert len(slow) == 3
    slow.take([spent])  # 1.5 -> 0.5
    with pytest.raises(RateLimited) as caught:
        slow.take([spent])
    assert caught.value.retry_after == 50  # 0.5 token short at 100 s a token
