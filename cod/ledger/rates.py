"""Write rate limits of the ledger's HTTP service (SPEC.md 12.7): token buckets, on the event loop.

Anyone can post evidence and refusals, so each write an anonymous poster makes is charged to
the bucket of its client address (an IPv6 /64, :func:`cod.content.fetcher.client_key`) and to
one bucket all anonymous writes share (many addresses together cannot grow the log faster);
a refusal is also charged to the bucket of the key that signs it (one key from many addresses),
and handed back when the refusal is not appended (a forged signature naming a key does not
drain that key). A governance post (a decision or bless batch of a current moderator, a
proposal or approval of a root key) whose signatures verify is charged to its address's
governance bucket instead, and handed back when it is appended: anonymous posters cannot
starve moderators, and replaying their public entries costs the replayer's address.

A bucket holds at most ``burst`` tokens and gains one every ``refill_ms``; a write takes one
from each of its buckets, or none when any has less than one (429 RateLimited, naming the
bucket and when it holds one again). Time is a monotonic clock the caller gives (tests drive
it); nothing a bucket says reaches the log.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..content.fetcher import client_key
from ..errors import RateLimited, UsageError

ADDRESS, GOVERNANCE, KEY, ANONYMOUS = "address", "governance", "key", "anonymous"
"""The buckets' scopes: per client address, per address for governance posts, per signing key, and one for all."""
FRAUD, LIAR = "fraud", "liar"
"""Fraud proofs (each a re-execution): per client address, and per key a proof accuses (SPEC.md 12.10)."""
MAX_TRACKED = 100_000
"""Buckets kept at once; past it the full ones are forgotten (a full bucket is as good as a new
one), then the least recently used, down to nine tenths of it."""

Clock = Callable[[], float]
Charge = tuple[str, str]
"""A bucket: (scope, name); the name is a client key, a signer's ID, or "" for ANONYMOUS."""


@dataclass(frozen=True)
class Rate:
    """A bucket's size (writes in a burst) and the milliseconds in which it regains one write."""

    burst: int
    refill_ms: int

    def per_second(self) -> float:
        return 1000.0 / self.refill_ms

    def seconds_to_one(self, tokens: float) -> int:
        """Whole seconds until a bucket holding ``tokens`` holds one (the Retry-After); at least 1."""
        return max(1, math.ceil((1.0 - tokens) * self.refill_ms / 1000.0 - 1e-9))

    def published(self) -> dict[str, Any]:
        return {"burst": self.burst, "refill_ms": self.refill_ms}

    @classmethod
    def parse(cls, text: str, option: str) -> "Rate":
        """``BURST:REFILL_MS`` as `cod ledger serve` takes it (e.g. ``60:1000``); UsageError if malformed."""
        burst, sep, refill = text.partition(":")
        numbers = [n for n in (burst, refill) if n.isascii() and n.isdigit() and len(n) <= 9]
        if not sep or len(numbers) != 2 or int(burst) < 1 or int(refill) < 1:
            raise UsageError(f"{option} {text[:60]!r} is not BURST:REFILL_MS",
                             f"give the writes of a burst (at least 1), ':', the milliseconds in which one more write "
                             f"is allowed (at least 1), e.g. {option} 60:1000")
        return cls(int(burst), int(refill))


DEFAULT_ADDRESS = Rate(60, 1000)
"""One client address (an IPv6 /64): 60 writes at once, then one a second. Also its governance bucket."""
DEFAULT_KEY = Rate(60, 1000)
"""One signing key of refusals, from every address together."""
DEFAULT_FRAUD = Rate(10, 60_000)
"""Fraud proofs from one address, and accusing one key: 10 at once, then one a minute (each is a re-execution)."""
DEFAULT_ANONYMOUS = Rate(1000, 50)
"""Every anonymous write together: the log grows by at most 20 entries a second past a burst of 1,000."""


@dataclass(frozen=True)
class WriteLimits:
    """The limits of a ledger's writes (published in GET /v1/info as ``write_limits``)."""

    address: Rate = DEFAULT_ADDRESS
    key: Rate = DEFAULT_KEY
    anonymous: Rate = DEFAULT_ANONYMOUS
    fraud: Rate = DEFAULT_FRAUD

    def of(self, scope: str) -> Rate:
        return {ADDRESS: self.address, GOVERNANCE: self.address, KEY: self.key, ANONYMOUS: self.anonymous,
                FRAUD: self.fraud, LIAR: self.fraud}[scope]

    def published(self) -> dict[str, Any]:
        return {ADDRESS: self.address.published(), KEY: self.key.published(), ANONYMOUS: self.anonymous.published(),
                FRAUD: self.fraud.published()}


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class Ticket:
    """What one write was charged: handed back by :meth:`Limiter.refund`."""

    charges: list[Charge] = field(default_factory=list)


def address_of(remote: str | None) -> Charge:
    return ADDRESS, client_key(remote or "")


class Limiter:
    """The buckets of one ledger service. Used from the event loop only (no lock)."""

    def __init__(self, limits: WriteLimits | None = None, clock: Clock = time.monotonic) -> None:
        self.limits = limits if limits is not None else WriteLimits()
        self._clock = clock
        self._buckets: dict[Charge, _Bucket] = {}

    def __len__(self) -> int:
        """The buckets tracked now."""
        return len(self._buckets)

    def _bucket(self, charge: Charge, now: float) -> _Bucket:
        rate = self.limits.of(charge[0])
        bucket = self._buckets.pop(charge, None)  # re-inserted last: the dict is in least recently used order
        if bucket is None:
            bucket = _Bucket(float(rate.burst), now)
        else:
            bucket.tokens = min(float(rate.burst), bucket.tokens + max(0.0, now - bucket.at) * rate.per_second())
            bucket.at = max(bucket.at, now)
        self._buckets[charge] = bucket
        return bucket

    def take(self, charges: Sequence[Charge], ticket: Ticket | None = None) -> Ticket:
        """One token from each bucket of ``charges`` (added to ``ticket``), or from none: RateLimited
        names the first bucket that has less than one."""
        now = self._clock()
        buckets = [self._bucket(c, now) for c in charges]
        for charge, bucket in zip(charges, buckets):
            if bucket.tokens < 1.0:
                raise self._refused(charge, bucket)
        for bucket in buckets:
            bucket.tokens -= 1.0
        ticket = ticket if ticket is not None else Ticket()
        ticket.charges.extend(charges)
        self._forget(now)
        return ticket

    def refund(self, ticket: Ticket, scopes: Sequence[str]) -> None:
        """Hand back the tokens of ``ticket`` taken from buckets of ``scopes``."""
        now = self._clock()
        for charge in [c for c in ticket.charges if c[0] in scopes]:
            bucket = self._bucket(charge, now)
            bucket.tokens = min(float(self.limits.of(charge[0]).burst), bucket.tokens + 1.0)
            ticket.charges.remove(charge)

    def _refused(self, charge: Charge, bucket: _Bucket) -> RateLimited:
        scope, name = charge
        rate = self.limits.of(scope)
        wait = rate.seconds_to_one(bucket.tokens)
        whose = {ADDRESS: f"client address {name}", GOVERNANCE: f"governance posts from client address {name}",
                 KEY: f"signing key {name}", ANONYMOUS: "anonymous writes (all addresses together)",
                 FRAUD: f"fraud proofs from client address {name}", LIAR: f"fraud proofs accusing key {name}"}[scope]
        return RateLimited(f"too many writes: the budget of {whose} is spent ({rate.burst} writes at once, "
                           f"then one every {rate.refill_ms} ms)",
                           f"retry after {wait} s (the Retry-After header); nothing was stored",
                           limit=scope, retry_after=wait)

    def _forget(self, now: float) -> None:
        if len(self._buckets) <= MAX_TRACKED:
            return
        for charge, bucket in list(self._buckets.items()):
            rate = self.limits.of(charge[0])
            if bucket.tokens + (now - bucket.at) * rate.per_second() >= rate.burst:
                del self._buckets[charge]
        while len(self._buckets) > MAX_TRACKED * 9 // 10:
            del self._buckets[next(iter(self._buckets))]


__all__ = ["ADDRESS", "ANONYMOUS", "FRAUD", "GOVERNANCE", "KEY", "LIAR", "Limiter", "Rate", "Ticket", "WriteLimits", "address_of"]
