"""The notary's check of an approval (SPEC.md 12.7): that it is in the log and that nothing undid it.

An inclusion proof shows that a decision is in the log; it cannot show that no later entry
superseded it. So the notary reads, from the C2SP tiles, every entry from the level-0 tile that
holds the approval up to the latest checkpoint, hashes them with at most one hash tile per level
above (the complete subtrees left of that tile), and compares the root it folds with the
checkpoint's signed root: a ledger cannot leave an entry out, or change one, without the root
differing. Then it looks at the entries after the approval: a later decision on the job
supersedes it; a later eligibility entry of the job that is not eligible with the approved result
undoes it (12.6). A log of N entries and an approval at leaf d costs ceil(N/256) - floor(d/256)
entry bundles and at most floor(log256 N) hash tiles of at most 8 KiB (one per level above 0).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..errors import AuditFailed
from . import merkle, proven, tiles
from .note import CosignatureVerifier, NoteError, split_note
from .tiles import TILE_HEIGHT, TILE_WIDTH, TileError

Fetch = Callable[[str, int], Awaitable[bytes]]
"""Fetch a tile path (``tile/...``) of at most the given bytes; raises LedgerRefused."""

MAX_ENTRY_BYTES = 0xFFFF
MAX_SCAN_ENTRIES = 1 << 22
"""Most entries a notary reads after an approval (4,194,304): an older approval is refused, not read."""
DECISION_KIND = "cod/ledger/decision/"
ELIGIBILITY_KIND = "cod/ledger/eligibility/"
HINT = "the ledger's log does not show this approval standing: do not award its DataCap"


@dataclass(frozen=True)
class Cost:
    """What the check fetched."""

    bundles: int
    tiles: int
    bytes: int


@dataclass(frozen=True)
class Standing:
    """An approval that stands at the checkpoint's size."""

    result: str
    job: str
    datacap: int
    moderator: str
    entry: int
    size: int
    cost: Cost
    cosigned: dict[str, int]
    """The witnesses (vkeys) whose cosignature of the checkpoint counted, with its timestamp."""


def _frontier(start: int) -> list[tuple[int, int]]:
    """The complete subtrees tiling leaves [0, start), largest first: (height k, first leaf)."""
    out, first = [], 0
    for k in range(start.bit_length() - 1, -1, -1):
        if start >> k & 1:
            out.append((k, first))
            first += 1 << k
    return out


async def _frontier_hashes(fetch: Fetch, start: int, size: int, cost: list[int]) -> list[bytes]:
    """The hashes of the subtrees left of ``start`` (a multiple of 256), from one tile per level."""
    cache: dict[tuple[int, int], list[bytes]] = {}
    out = []
    for k, first in _frontier(start):
        level = k // TILE_HEIGHT
        count, position = 1 << (k - TILE_HEIGHT * level), first >> (TILE_HEIGHT * level)
        index, within = divmod(position, TILE_WIDTH)
        if (level, index) not in cache:
            width = min(TILE_WIDTH, (size >> (TILE_HEIGHT * level)) - index * TILE_WIDTH)
            data = await fetch(tiles.tile_path(level, index, width), width * merkle.HASH_SIZE)
            cost[1] += 1
            cost[2] += len(data)
            try:
                cache[(level, index)] = tiles.tile_hashes(data, width)
            except TileError as exc:
                raise AuditFailed([f"hash tile {level}/{index} is malformed: {exc}"], HINT) from None
        out.append(merkle.root_of_hashes(cache[(level, index)][within:within + count]))
    return out


def _value(leaf: bytes) -> dict[str, Any]:
    try:
        value = json.loads(leaf)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class _Scan:
    """The tree folded from the left subtrees and the entries after them, and what the entries say."""

    def __init__(self, frontier: list[bytes], start: int, approval: int) -> None:
        self.stack, self.size = list(frontier), start
        self.approval, self.job = approval, ""
        self.leaf: bytes | None = None
        self.later_decision: tuple[int, dict[str, Any]] | None = None
        self.later_eligibility: tuple[int, dict[str, Any]] | None = None

    def add(self, leaf: bytes) -> None:
        index, h, n = self.size, merkle.leaf_hash(leaf), self.size
        while n & 1:
            h = merkle.node_hash(self.stack.pop(), h)
            n >>= 1
        self.stack.append(h)
        self.size += 1
        if index < self.approval:
            return
        value = _value(leaf)
        kind = str(value.get("type", ""))
        statement = value.get("statement")
        if index == self.approval:
            self.leaf = leaf
            self.job = str(statement.get("job")) if isinstance(statement, dict) else ""
        elif self.job:
            if kind.startswith(DECISION_KIND) and isinstance(statement, dict) and statement.get("job") == self.job:
                self.later_decision = self.later_decision or (index, statement)
            elif kind.startswith(ELIGIBILITY_KIND) and value.get("job") == self.job:
                self.later_eligibility = (index, value)

    def root(self) -> bytes:
        root = self.stack[-1]
        for h in reversed(self.stack[:-1]):
            root = merkle.node_hash(h, root)
        return root


@dataclass(frozen=True)
class Fresh:
    """What makes a checkpoint recent enough to judge by: cosignatures of ``min_cosignatures`` of the
    ``witnesses`` (cosigner vkeys), each at most ``max_age_s`` old at ``now`` when both are given."""

    witnesses: tuple[str, ...] = ()
    min_cosignatures: int = 0
    max_age_s: int | None = None
    now: int | None = None


def cosigned(note: str, fresh: Fresh) -> dict[str, int]:
    """The witnesses of ``fresh`` whose cosignature on ``note`` verifies (and is recent enough), with its time;
    AuditFailed when fewer than ``fresh.min_cosignatures``."""
    try:
        text, signatures = split_note(note.encode())
        verifiers = [CosignatureVerifier.from_vkey(w) for w in fresh.witnesses]
    except NoteError as exc:
        raise AuditFailed([f"cannot check the checkpoint's cosignatures: {exc}"], HINT) from None
    good: dict[str, int] = {}
    for verifier in verifiers:
        for sig in signatures:
            if (sig.name, sig.key_id) != (verifier.name, verifier.key_id):
                continue
            when = verifier.timestamp_of(text.encode(), sig.signature)
            recent = fresh.max_age_s is None or fresh.now is None or (when is not None
                                                                       and when >= fresh.now - fresh.max_age_s)
            if when is not None and recent:
                good[verifier.vkey] = max(when, good.get(verifier.vkey, 0))
    if len(good) < fresh.min_cosignatures:
        age = f" within {fresh.max_age_s} s" if fresh.max_age_s is not None else ""
        raise AuditFailed([f"the latest checkpoint carries {len(good)} valid cosignature(s){age} of the named "
                           f"witnesses; {fresh.min_cosignatures} are required: it may not be the log's latest"],
                          "ask again later, or check that the ledger pushes to these witnesses (cod ledger info)")
    return good


async def check_approval(fetch: Fetch, note: str, vkey: str, result: str, entry: int,
                         fresh: Fresh = Fresh()) -> Standing:
    """That decision leaf ``entry``, an approval of ``result``, stands in the tree of the checkpoint
    ``note`` (signed by ``vkey``, cosigned as ``fresh`` asks); AuditFailed naming what does not hold."""
    signed = proven.checkpoint(note, vkey)
    witnessed = cosigned(note, fresh)
    if not 0 <= entry < signed.size:
        raise AuditFailed([f"entry {entry} is not in the log's signed tree of size {signed.size}"], HINT)
    start = entry - entry % TILE_WIDTH
    if signed.size - start > MAX_SCAN_ENTRIES:
        raise AuditFailed([f"the approval at entry {entry} is {signed.size - entry} entries old; a notary reads at "
                           f"most {MAX_SCAN_ENTRIES} entries after it"], "ask the ledger's operator for a new decision")
    cost = [0, 0, 0]
    scan = _Scan(await _frontier_hashes(fetch, start, signed.size, cost), start, entry)
    for index in range(start // TILE_WIDTH, (signed.size + TILE_WIDTH - 1) // TILE_WIDTH):
        width = min(TILE_WIDTH, signed.size - index * TILE_WIDTH)
        data = await fetch(tiles.entries_path(index, width), width * (2 + MAX_ENTRY_BYTES))
        cost[0] += 1
        cost[2] += len(data)
        try:
            leaves = tiles.unbundle(data, width)
        except TileError as exc:
            raise AuditFailed([f"entry bundle {index} is malformed: {exc}"], HINT) from None
        for leaf in leaves:
            scan.add(leaf)
    if scan.root() != signed.root:
        raise AuditFailed([f"the entries from {start} to {signed.size - 1} do not hash to the root the log signed at "
                           f"size {signed.size}: the ledger served tiles its log does not hold"], HINT)
    value = _value(scan.leaf or b"")
    statement = value.get("statement")
    if not str(value.get("type", "")).startswith(DECISION_KIND) or not isinstance(statement, dict) \
            or statement.get("result") != result:
        raise AuditFailed([f"entry {entry} is not a decision on result {result}"], HINT)
    job = scan.job
    if statement.get("action") != "approve":
        raise AuditFailed([f"result {result} is not approved: the decision at entry {entry} is "
                           f"{statement.get('action')} by {statement.get('moderator')}"], HINT)
    if scan.later_decision is not None:
        later, decision = scan.later_decision
        raise AuditFailed([f"the approval at entry {entry} is superseded by the decision at entry {later}: "
                           f"{decision.get('action')} of job {job} by {decision.get('moderator')}"], HINT)
    if scan.later_eligibility is not None:
        later, eligibility = scan.later_eligibility
        if eligibility.get("eligible") is not True or eligibility.get("result") != result:
            now = (f"eligible with result {eligibility.get('result')}" if eligibility.get("eligible") is True
                   else "not eligible")
            raise AuditFailed([f"the approval at entry {entry} no longer stands: the eligibility entry {later} of "
                               f"job {job}, after it, makes the job {now}"], HINT)
    datacap = statement.get("datacap")
    if not isinstance(datacap, int) or isinstance(datacap, bool) or datacap < 0:
        raise AuditFailed([f"the approval at entry {entry} names no DataCap in bytes ({str(datacap)[:40]!r})"], HINT)
    return Standing(result, job, datacap, str(statement.get("moderator")), entry, signed.size, Cost(*cost), witnessed)


async def check_approval_at(url: str, vkey: str, result: str, entry: int, fresh: Fresh = Fresh()) -> Standing:
    """check_approval against the latest checkpoint and the tiles of the ledger (or mirror) at ``url``,
    over one HTTP session."""
    import aiohttp

    from .client import LedgerClient

    async with aiohttp.ClientSession() as session:
        ledger = LedgerClient(url, session)
        return await check_approval(ledger.tile, await ledger.checkpoint(), vkey, result, entry, fresh)


__all__ = ["Cost", "Fetch", "Fresh", "cosigned", "MAX_SCAN_ENTRIES", "Standing", "check_approval", "check_approval_at"]
