"""Fetching content a node lacks: from other cod nodes and from IPFS trustless gateways.

A job names its inputs (and modules) by CID only. A node that lacks one asks, in order, the
peers it was given (``GET /v1/blobs/{cid}`` with ``Accept: application/vnd.ipld.car``) and
the gateways it was given (``GET /ipfs/{cid}?format=car&dag-scope=all``, the IPFS trustless
gateway protocol). The answer streams into a spool file under a byte cap (a node's upload cap)
and is then unpacked as an uploaded CAR is (:meth:`cod.content.blobs.BlobStore.put_car`): every
block checked against its CID, the DAG planned within tree caps and re-imported to its root.
The requester's content store fetches with the same code (:func:`cod.content.store.resolver`).
What fails is logged and the next source is tried; a CID no source gives stays missing (the
requester is then asked for it: 409 MissingBlobs). One fetch per CID at a time, at most
FETCH_CONCURRENCY CIDs at once on a node, of which one client address (an IPv6 /64) holds at
most FETCH_SLOTS_PER_CLIENT, so no requester can take every slot. What one job makes the node
fetch, all its CIDs and rounds together, is a :class:`Budget`: at most the node's upload cap in
bytes, ``max_fetch_cids`` CIDs and FETCH_JOB_SECONDS of time (waiting for a slot included).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from ..errors import CapExceeded, CIDError, CodError
from .blobs import BlobStore
from .car import header as car_header
from .cid import CID
from .export import DEFAULT_MAX_CAR_BYTES, TreeCaps

log = logging.getLogger("cod.content.fetcher")

CAR_TYPE = "application/vnd.ipld.car"
CHUNK = 1 << 20
CONNECT_TIMEOUT_S = 5.0
FETCH_TIMEOUT_S = 600.0  # one CID from one source, the whole transfer
MAX_ERROR_TEXT = 200
FETCH_CONCURRENCY = 4  # CIDs fetched at once by one node, for all jobs together
FETCH_SLOTS_PER_CLIENT = 2  # of those, held by the jobs of one client address (an IPv6 /64) at once
FETCH_JOB_SECONDS = 600.0  # all the fetches of one job together, waiting for slots included
DEFAULT_MAX_FETCH_CIDS = 256  # CIDs one job may make a node fetch, all rounds together (cap max_fetch_cids)


def client_key(address: str) -> str:
    """Whose fetch slots a request from ``address`` takes: the address itself, or for IPv6 its
    /64 (one host often holds a whole /64); text that is no address is its own key."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:  # ::ffff:a.b.c.d is the IPv4 client a.b.c.d
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


class Budget:
    """What one job may still make the node fetch (SPEC 9.8), shared by every CID and every
    round of that job: bytes (its upload cap; a fetch that would pass it stops at once), CIDs
    (``max_fetch_cids``) and time (FETCH_JOB_SECONDS from when the node first looks for the job's
    blobs); and whose
    fetch slots it takes (``client``, :func:`client_key`)."""

    def __init__(self, limit: int, cids: int = DEFAULT_MAX_FETCH_CIDS, client: str = "",
                 seconds: float | None = None) -> None:
        self.limit = limit
        self.remaining = limit
        self.max_cids = cids
        self.cids = cids
        self.client = client_key(client)
        self.deadline = time.monotonic() + (FETCH_JOB_SECONDS if seconds is None else seconds)

    def seconds_left(self) -> float:
        return self.deadline - time.monotonic()

    def claim(self, count: int) -> bool:
        """Take ``count`` more CIDs to fetch; False (and nothing taken) past ``max_fetch_cids``."""
        if count > self.cids:
            return False
        self.cids -= count
        return True

    @property
    def spent(self) -> bool:
        return self.remaining <= 0

    def charge(self, size: int) -> None:
        """Take ``size`` bytes; CapExceeded once the job's fetches pass the limit."""
        self.remaining -= size
        if self.remaining < 0:
            raise CapExceeded("max_upload_bytes", self.limit, "what one job made the node fetch")


class Fetcher:
    """Where a node looks for content it lacks, and the fetches under way."""

    def __init__(self, blobs: BlobStore, max_bytes: int = DEFAULT_MAX_CAR_BYTES, tree: TreeCaps | None = None,
                 peers: list[str] | None = None, gateways: list[str] | None = None,
                 max_cids: int = DEFAULT_MAX_FETCH_CIDS) -> None:
        self.blobs = blobs
        self.max_bytes = max_bytes  # published by a node as max_upload_bytes
        self.max_cids = max_cids  # published by a node as max_fetch_cids
        self.tree = tree or TreeCaps()
        self.peers = [url.rstrip("/") for url in peers or []]
        self.gateways = [url.rstrip("/") for url in gateways or []]
        self._under_way: dict[str, asyncio.Task[bool]] = {}
        self._waiting: dict[str, int] = {}  # CID -> fetch() calls waiting on its fetch under way
        self._holding = 0  # fetches holding one of the node's slots
        self._dropped: set[asyncio.Task[bool]] = set()  # fetches cancelled (no one waits), not ended yet
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None  # made on the event loop, at the first fetch
        self._clients: dict[str, tuple[asyncio.Semaphore, int]] = {}  # a client's slots, and fetches using them
        self.fetched_bytes = 0  # bytes received from every source (figures, tests)

    @property
    def sources(self) -> list[str]:
        """The URLs tried for ``{cid}``, in order: peers first, then gateways."""
        return ([f"{peer}/v1/blobs/{{cid}}" for peer in self.peers]
                + [f"{gateway}/ipfs/{{cid}}?format=car&dag-scope=all" for gateway in self.gateways])

    def budget(self, client: str = "") -> Budget:
        """A new job's fetch budget: the node's upload cap, max_fetch_cids, FETCH_JOB_SECONDS
        from now; ``client`` is the address of the requester whose job it is."""
        return Budget(self.max_bytes, self.max_cids, client)

    async def fetch_all(self, cids: list[str], budget: Budget | None = None) -> None:
        """Try to get every CID of ``cids`` (FETCH_CONCURRENCY at a time), within ``budget``
        (a new one if None); what no source gives, or what the budget leaves, stays missing."""
        if self.sources:
            spend = budget or self.budget()
            await asyncio.gather(*(self.fetch(cid, spend) for cid in sorted(set(cids))))

    async def fetch(self, cid: str, budget: Budget | None = None) -> bool:
        """Get ``cid`` from the first source that gives it whole and checked; False if none does.

        Callers wanting one CID share its fetch; when the last of them is cancelled (its job was),
        the fetch is cancelled too and this returns once it ended, so its slots are free."""
        task = self._under_way.get(cid)
        while task is not None and task in self._dropped:  # never join a fetch being cancelled: wait, then
            await asyncio.wait({task})                      # make one anew
            task = self._under_way.get(cid)
        if self.blobs.has(cid):
            return True
        if task is None or task.done():
            task = asyncio.ensure_future(self._fetch(cid, budget or self.budget()))
            self._under_way[cid] = task
            task.add_done_callback(lambda done: self._under_way.pop(cid) if self._under_way.get(cid) is done
                                   else None)
        self._waiting[cid] = self._waiting.get(cid, 0) + 1
        try:
            return await asyncio.shield(task)
        finally:
            self._waiting[cid] -= 1
            if not self._waiting[cid]:
                del self._waiting[cid]
                if not task.done():  # no one waits for it any more
                    task.cancel()
                    self._dropped.add(task)
                    task.add_done_callback(self._dropped.discard)
                    await asyncio.wait({task})

    def slots_in_use(self) -> int:
        """How many of the node's FETCH_CONCURRENCY fetch slots are held now."""
        return self._holding

    @asynccontextmanager
    async def _slot(self, client: str) -> AsyncIterator[None]:
        """One of the node's FETCH_CONCURRENCY slots, taken after one of the client's
        FETCH_SLOTS_PER_CLIENT: a client's fetches queue behind its own, never all the node's."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(FETCH_CONCURRENCY)
        own, users = self._clients.get(client) or (asyncio.Semaphore(FETCH_SLOTS_PER_CLIENT), 0)
        self._clients[client] = (own, users + 1)
        try:
            async with own, self._slots:
                self._holding += 1
                try:
                    yield
                finally:
                    self._holding -= 1
        finally:
            own, users = self._clients[client]
            if users == 1:
                del self._clients[client]  # a client with no fetch keeps nothing here
            else:
                self._clients[client] = (own, users - 1)

    async def _fetch(self, cid: str, budget: Budget) -> bool:
        async with self._slot(budget.client):
            for template in self.sources:
                if budget.spent:
                    log.warning("not fetching %s: its job has fetched %d bytes, the node's upload cap", cid,
                                budget.limit)
                    return False
                left = budget.seconds_left()
                if left <= 0:
                    log.warning("not fetching %s: its job has spent its %.0f s of fetching", cid, FETCH_JOB_SECONDS)
                    return False
                url = template.format(cid=cid)
                try:
                    await asyncio.wait_for(self._from(url, cid, budget), left)
                    return True
                except (CodError, aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                    text = exc.message if isinstance(exc, CodError) else (str(exc) or type(exc).__name__)
                    log.warning("cannot fetch %s from %s: %s", cid, url, text[:MAX_ERROR_TEXT])
        return False

    async def _from(self, url: str, cid: str, budget: Budget) -> None:
        cap = self.max_bytes
        session = await self._client()
        handle, spooled = self.blobs.spool()
        try:
            with handle:
                async with session.get(url, headers={"Accept": CAR_TYPE}, allow_redirects=False) as resp:
                    if resp.status != 200:
                        raise CodError(f"HTTP {resp.status}")
                    if resp.content_type != CAR_TYPE:
                        raise CodError(f"answered {resp.content_type!r}, not a CAR")
                    size = 0
                    expected = car_header(CID.parse(cid))  # 9.4 step 4.1: the one header a CAR of cid may have
                    head = b""
                    async for chunk in resp.content.iter_chunked(CHUNK):
                        size += len(chunk)
                        self.fetched_bytes += len(chunk)
                        budget.charge(len(chunk))
                        if size > cap:
                            raise CapExceeded("max_upload_bytes", cap, "the fetched CAR")
                        if len(head) < len(expected):  # give up on a wrong header at once, not at the end
                            head += chunk[: len(expected) - len(head)]
                            if not expected.startswith(head):
                                raise CIDError(f"the CAR's header does not name {cid} as its single root")
                        handle.write(chunk)
                    if head != expected:
                        raise CIDError(f"the CAR ended before its header naming {cid} did")
            await asyncio.to_thread(self.blobs.put_car, cid, spooled, self.tree)
        finally:
            Path(spooled).unlink(missing_ok=True)

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S, sock_connect=CONNECT_TIMEOUT_S)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def close(self) -> None:
        for task in list(self._under_way.values()):
            task.cancel()
        if self._session is not None:
            await self._session.close()
