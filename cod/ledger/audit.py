"""`cod ledger verify`: the offline audit of a ledger's data directory, or of a mirror by URL.

The audit trusts nothing the log says about itself: it replays every leaf through the state
machine WITH every signature checked (the same code that accepted the leaves; the Ed25519 checks
of big logs run first in a pool of processes, and any leaf that fails them is replayed with
the state machine's own checks, which name the problem), recomputes the
Merkle tree from the leaves and compares it with every signed checkpoint and every stored hash,
rebuilds the derived tables and compares them row for row, compares the schema (tables,
triggers, views) with the one cod creates, and counts valid witness cosignatures. It returns
every problem it finds as one line of text (SPEC.md 12.9); an empty list is a clean ledger.
"""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from ..errors import LedgerRefused
from ..identity import signature_valid
from ..jobspec import canonical_json
from . import merkle
from .checkpoint import Checkpoint, CheckpointError
from .entries import ELIGIBILITY, SIGNED_KINDS, SIGNER_FIELD, EntryRefused, verify_key
from .note import CosignatureVerifier, NoteError, Verifier, open_note, split_note, verify_cosignature
from .state import LedgerState, Row
from .store import DB_FILE, DERIVED, connect, create, derived_differences
from .tiles import TILE_WIDTH, TileError, entries_path, unbundle

PARALLEL_FROM = 4096
"""Leaves from which signatures are checked by a pool of processes (Ed25519 is most of an audit)."""
MAX_WORKERS = 8
MAX_PROBLEMS = 100
"""Problems listed (a damaged table can give one per row; the first ones say enough)."""
FETCH_TIMEOUT_S = 60.0
MAX_ENTRY_BYTES = 0xFFFF
MAX_BUNDLE_BYTES = TILE_WIDTH * (2 + MAX_ENTRY_BYTES)
"""A full entry bundle at most: 256 entries of a uint16 length and at most 65,535 bytes each."""
MAX_CHECKPOINT_BYTES = 65536
MAX_MIRROR_ENTRIES = 1 << 22
"""Largest tree `verify --url` fetches (4,194,304 entries); a bigger log is audited from its data directory."""
MAX_MIRROR_BYTES = 1 << 30
"""Most bytes of entry bundles `verify --url` keeps in memory (1 GiB), whatever a mirror claims or sends."""
READ_CHUNK = 1 << 16


@dataclass
class Audit:
    """What an audit found: problems (empty: clean) and facts (what was checked against what)."""

    problems: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)
    size: int = 0

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)


@dataclass
class _Replay:
    state: LedgerState
    hashes: merkle.MemoryHashes
    rows: dict[str, list[tuple[Any, ...]]]


def _check_chunk(job: tuple[int, list[bytes]]) -> set[int]:
    """Indexes of leaves in a chunk with a signature that does not verify or cannot be read (a worker's part)."""
    start, leaves = job
    suspects: set[int] = set()
    for offset, leaf in enumerate(leaves):
        try:
            obj = json.loads(leaf)
            kind = obj["type"]
            if kind in SIGNED_KINDS:
                pairs = [(obj["statement"][SIGNER_FIELD[kind]], obj["statement"], obj["signature"])]
            elif kind == ELIGIBILITY:
                pairs = [(s["statement"]["node"], s["statement"], s["signature"]) for s in obj["statements"]]
            else:
                continue
            for signer, statement, signature in pairs:
                key = verify_key(signer)
                if key is None:
                    raise ValueError("not a key ID")
                if not signature_valid(key, canonical_json(statement), base64.b64decode(signature, validate=True)):
                    raise ValueError("bad signature")
        except Exception:  # noqa: BLE001 - anything unreadable is replayed with every check, which names it
            suspects.add(start + offset)
    return suspects


Opened = tuple[str | None, "Checkpoint | None"]
"""A checkpoint note opened against the log key: (problem, None) or (None, its checkpoint)."""


def _open_notes(job: tuple[str, list[tuple[int, str]]]) -> list[tuple[int, Opened]]:
    """Open checkpoint notes against the log's vkey (a worker's part; also run in-process)."""
    vkey, rows = job
    verifier = Verifier.from_vkey(vkey)
    out: list[tuple[int, Opened]] = []
    for size, note in rows:
        try:
            text, _ = open_note(note.encode(), [verifier])
            out.append((size, (None, Checkpoint.parse(text.encode()))))
        except (NoteError, CheckpointError, UnicodeError) as exc:
            out.append((size, (f"the signed note does not verify: {exc}", None)))
    return out


def _replay_pass(leaves: Sequence[bytes], audit: Audit, check: Callable[[int], bool]) -> _Replay:
    state = LedgerState()
    hashes = merkle.MemoryHashes()
    rows: dict[str, list[tuple[Any, ...]]] = {t: [] for t in DERIVED}
    for index, leaf in enumerate(leaves):
        hashes.append(merkle.leaf_hash(leaf))
        try:
            derived: list[Row] = state.apply(index, leaf, check_signatures=check(index))
        except EntryRefused as exc:
            audit.problem(f"entry {index} is not valid: {exc.message}")
            state.skip(leaf)
            continue
        for table, row in derived:
            rows[table].append(row)
    return _Replay(state, hashes, rows)


def _replay(leaves: Sequence[bytes], audit: Audit, notes: list[tuple[int, str]],
            note_key: str | None) -> tuple[_Replay, dict[int, Opened]]:
    """Replay every leaf with every signature checked; open every checkpoint note against ``note_key``.

    Small logs: one process, the state machine checking each signature. Big logs: a pool of
    processes checks the Ed25519 signatures of leaves and notes while this process replays
    without them; leaves the pool finds suspect (rare: a damaged log) are then replayed again
    from the start with the state machine's own checks on them, so it is always the state
    machine that decides and names each problem.
    """
    workers = min(os.cpu_count() or 1, MAX_WORKERS)

    def inline() -> tuple[_Replay, dict[int, Opened]]:
        opened = dict(_open_notes((note_key, notes))) if note_key is not None else {}
        return _replay_pass(leaves, audit, lambda _: True), opened

    if len(leaves) + len(notes) < PARALLEL_FROM or workers < 2:
        return inline()
    step = max(1, -(-len(leaves) // (workers * 4)))
    chunks = [(i, list(leaves[i:i + step])) for i in range(0, len(leaves), step)]
    note_step = max(1, -(-len(notes) // (workers * 4)))
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_check_chunk, chunk) for chunk in chunks]
            note_futures = [pool.submit(_open_notes, (note_key, notes[i:i + note_step]))
                            for i in range(0, len(notes), note_step)] if note_key is not None else []
            first = Audit()
            replay = _replay_pass(leaves, first, lambda _: False)
            suspects: set[int] = set()
            for future in futures:
                suspects |= future.result()
            opened: dict[int, Opened] = {}
            for note_future in note_futures:
                opened.update(note_future.result())
    except (BrokenProcessPool, OSError):
        # no worker processes here (a restricted host, a __main__ that cannot be re-imported): one process
        return inline()
    if not suspects:
        for problem in first.problems:
            audit.problem(problem)
        return replay, opened
    return _replay_pass(leaves, audit, lambda index: index in suspects), opened


def _note_key(leaves: Sequence[bytes], vkey: str | None) -> str | None:
    """The vkey checkpoints are opened with: --vkey, else the genesis's log_key (None if unusable)."""
    key = vkey
    if key is None and leaves:
        try:
            key = json.loads(leaves[0]).get("log_key")
        except (ValueError, AttributeError):
            return None
    try:
        return Verifier.from_vkey(key).vkey if isinstance(key, str) else None
    except NoteError:
        return None


def _log_verifier(replay: _Replay, vkey: str | None, audit: Audit) -> Verifier | None:
    genesis = replay.state.genesis
    if vkey is not None:
        try:
            verifier = Verifier.from_vkey(vkey)
        except NoteError as exc:
            audit.problem(f"--vkey is not an Ed25519 note key: {exc}")
            return None
        audit.facts.append(f"checkpoint signatures checked against --vkey {vkey}")
        if genesis is not None and genesis.log_key != vkey:
            audit.problem(f"the genesis names log key {genesis.log_key}, not the --vkey given")
        return verifier
    if genesis is None:
        audit.problem("there is no genesis entry, so no log key to check checkpoints against")
        return None
    audit.facts.append(f"checkpoint signatures checked against the genesis's log_key {genesis.log_key} "
                       "(pass --vkey to pin the key you expect)")
    return Verifier.from_vkey(genesis.log_key)


def _check_checkpoint(opened: Opened, size: int | None, root: bytes | None, replay: _Replay, audit: Audit,
                      where: str) -> Checkpoint | None:
    """One opened checkpoint: its origin, its size and root against the row and the leaves."""
    problem, cp = opened
    if cp is None:
        audit.problem(f"{where}: {problem}")
        return None
    genesis = replay.state.genesis
    if genesis is not None and cp.origin != genesis.origin:
        audit.problem(f"{where}: origin {cp.origin!r} is not the log's {genesis.origin!r}")
    if size is not None and cp.size != size:
        audit.problem(f"{where}: the note says size {cp.size}, the row {size}")
    if root is not None and cp.root != root:
        audit.problem(f"{where}: the note's root differs from the row's root")
    if cp.size > replay.hashes.size:
        audit.problem(f"{where}: it signs {cp.size} entries; the log holds {replay.hashes.size}")
    elif cp.root != merkle.tree_hash(cp.size, replay.hashes.read):
        audit.problem(f"{where}: its root is not the root of the first {cp.size} entries")
    return cp


def _witnesses(witnesses: Sequence[str], audit: Audit) -> list[CosignatureVerifier]:
    out = []
    for vkey in witnesses:
        try:
            out.append(CosignatureVerifier.from_vkey(vkey))
        except NoteError as exc:
            audit.problem(f"--witness {vkey!r} is not a cosigner key: {exc}")
    return out


def _schema(conn: sqlite3.Connection) -> dict[tuple[str, str], str]:
    return {(str(t), str(n)): str(sql) for t, n, sql in conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL")}


def _check_schema(conn: sqlite3.Connection, audit: Audit) -> None:
    """Tables, indexes, triggers and views exactly as cod creates them (a dropped trigger is a problem)."""
    fresh = sqlite3.connect(":memory:", isolation_level=None)
    create(fresh)
    want, have = _schema(fresh), _schema(conn)
    fresh.close()
    for key in sorted(want):
        if key not in have:
            audit.problem(f"{key[0]} {key[1]} is missing" + (" (an append-only guard was dropped)"
                                                              if key[0] == "trigger" else ""))
        elif have[key] != want[key]:
            audit.problem(f"{key[0]} {key[1]} is not the one cod creates: {have[key][:120]}")
    for key in sorted(set(have) - set(want)):
        audit.problem(f"{key[0]} {key[1]} is not part of a cod ledger")


def _check_derived(conn: sqlite3.Connection, replay: _Replay, audit: Audit) -> None:
    for problem in derived_differences(conn, replay.rows):
        audit.problem(problem)


def audit_dir_report(data_dir: Path, vkey: str | None = None, witnesses: Sequence[str] = (),
                     min_cosignatures: int = 0) -> Audit:
    """Audit a ledger's data directory (read only); see the module docstring."""
    audit = Audit()
    path = Path(data_dir) / DB_FILE
    if not path.is_file():
        audit.problem(f"{data_dir} holds no ledger ({DB_FILE} is missing)")
        return audit
    try:
        conn = connect(path, readonly=True)
        try:
            return _audit_conn(conn, audit, vkey, witnesses, min_cosignatures)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        audit.problem(f"the ledger database cannot be read: {exc}")
        return audit


def _audit_conn(conn: sqlite3.Connection, audit: Audit, vkey: str | None, witnesses: Sequence[str],
                min_cosignatures: int) -> Audit:
    _check_schema(conn, audit)
    leaves: list[bytes] = []
    for idx, kind, leaf, stored_hash in conn.execute("SELECT idx, type, leaf, leaf_hash FROM entries ORDER BY idx"):
        if idx != len(leaves):
            audit.problem(f"entry {len(leaves)} is missing (the next is {idx})")
        raw = str(leaf).encode()
        if bytes(stored_hash) != merkle.leaf_hash(raw):
            audit.problem(f"entry {idx}: its leaf_hash is not the hash of its leaf")
        try:
            stated = json.loads(raw).get("type")
        except (ValueError, AttributeError):
            stated = None
        if kind != stated:
            audit.problem(f"entry {idx}: its type column {str(kind)[:60]!r} is not the leaf's type")
        leaves.append(raw)
    audit.size = len(leaves)
    checkpoints = [(int(size), bytes(root), str(note)) for size, root, note in
                   conn.execute("SELECT size, root, note FROM checkpoints ORDER BY size")]
    note_key = _note_key(leaves, vkey)
    replay, opened = _replay(leaves, audit, [(size, note) for size, _, note in checkpoints], note_key)
    stored = [bytes(h) for (h,) in conn.execute("SELECT hash FROM hashes ORDER BY idx")]
    if stored != replay.hashes.hashes:
        diff = next((i for i, (a, b) in enumerate(zip(stored, replay.hashes.hashes)) if a != b), None)
        audit.problem(f"the hashes table differs from the tree of the leaves (at stored hash {diff})" if diff is not None
                      else f"the hashes table holds {len(stored)} hashes; the tree of the leaves has "
                      f"{len(replay.hashes.hashes)}")
    verifier = _log_verifier(replay, vkey, audit)
    latest: tuple[int, str] | None = None
    if verifier is not None and verifier.vkey == note_key:
        for size, root, note in checkpoints:
            _check_checkpoint(opened[size], size, root, replay, audit, f"checkpoint {size}")
            latest = (size, note)
    if latest is None:
        audit.problem("there is no checkpoint")
    elif latest[0] != len(leaves):
        audit.problem(f"the latest checkpoint signs {latest[0]} entries; the log holds {len(leaves)}")
    _check_derived(conn, replay, audit)
    cosigners = _witnesses(witnesses, audit)
    good: set[str] = set()
    for size, name, line in conn.execute("SELECT size, witness, line FROM cosignatures ORDER BY size, witness"):
        for w in cosigners:
            if w.name != name:
                continue
            note = conn.execute("SELECT note FROM checkpoints WHERE size = ?", (size,)).fetchone()
            body = split_note(str(note[0]).encode())[0].encode() if note else b""
            try:
                verify_cosignature(str(line), body, w)
            except NoteError as exc:
                audit.problem(f"the cosignature of {name} on checkpoint {size} does not verify: {exc}")
                continue
            if latest is not None and size == latest[0]:
                good.add(w.vkey)
    _count_cosignatures(good, min_cosignatures, audit)
    return audit


def _count_cosignatures(good: set[str], min_cosignatures: int, audit: Audit) -> None:
    if min_cosignatures:
        audit.facts.append(f"{len(good)} of the named witnesses cosigned the latest checkpoint")
        if len(good) < min_cosignatures:
            audit.problem(f"the latest checkpoint has {len(good)} valid cosignatures of the named witnesses; "
                          f"{min_cosignatures} are required")


def audit_dir(data_dir: Path, vkey: str | None = None, witnesses: Sequence[str] = (),
              min_cosignatures: int = 0) -> list[str]:
    """The problems of a ledger's data directory (empty: it verifies)."""
    return audit_dir_report(data_dir, vkey, witnesses, min_cosignatures).problems


# --- a mirror, by URL (only what a static server of tlog-tiles serves) ------------------------

async def _get(session: aiohttp.ClientSession, url: str, limit: int) -> bytes:
    try:
        async with session.get(url, allow_redirects=False) as response:
            if response.status != 200:
                raise LedgerRefused(f"GET {url} answered {response.status}", "is this a ledger or a mirror of one?",
                                    status=response.status, error="BadAnswer")
            if response.content_length is not None and response.content_length > limit:
                raise LedgerRefused(f"{url} claims {response.content_length} bytes, over the {limit} it may hold",
                                    "the mirror serves more than the log it claims to hold", status=502,
                                    error="TooLarge")
            buffer = bytearray()
            async for chunk in response.content.iter_chunked(READ_CHUNK):
                buffer += chunk
                if len(buffer) > limit:
                    break
            data = bytes(buffer)
    except aiohttp.ClientError as exc:
        raise LedgerRefused(f"cannot fetch {url}: {exc}", "check the URL", status=0, error="Unreachable") from None
    if len(data) > limit:
        raise LedgerRefused(f"{url} is over the {limit} bytes it may hold",
                            "the mirror serves more than the log it claims to hold", status=502, error="TooLarge")
    return data


class _Unverified(Exception):
    """The mirror's checkpoint does not verify against the log key: nothing more is fetched."""


def _verify_note(note: bytes, vkey: str, where: str) -> None:
    try:
        open_note(note, [Verifier.from_vkey(vkey)])
    except NoteError as exc:
        raise _Unverified(f"the checkpoint does not verify against {where}: {exc}; nothing more was fetched") from None


async def _fetch(url: str, vkey: str | None = None) -> tuple[bytes, list[bytes]]:
    """The checkpoint and the entries it signs, fetched only once the checkpoint verifies.

    With ``vkey`` the checkpoint is checked before any bundle is asked for; without, against the
    log_key of the genesis in the first bundle before any other. Each bundle is read up to what
    its width can hold, and all of them up to MAX_MIRROR_BYTES; a tree over MAX_MIRROR_ENTRIES is
    refused before any bundle (LedgerRefused 502 TooLarge), so a hostile mirror costs bounded memory.
    """
    base = url.rstrip("/")
    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        note = await _get(session, f"{base}/checkpoint", MAX_CHECKPOINT_BYTES)
        try:
            size = Checkpoint.parse(split_note(note)[0].encode()).size
        except (NoteError, CheckpointError) as exc:
            raise LedgerRefused(f"{base}/checkpoint is not a signed checkpoint: {exc}", status=502,
                                error="BadAnswer") from None
        if vkey is not None:
            _verify_note(note, vkey, "--vkey")
        if size > MAX_MIRROR_ENTRIES:
            raise LedgerRefused(f"the checkpoint signs {size} entries; verify --url fetches at most "
                                f"{MAX_MIRROR_ENTRIES}", "audit a log that big from its data directory "
                                "(cod ledger verify --data-dir)", status=502, error="TooLarge")
        leaves: list[bytes] = []
        fetched = 0
        for n in range((size + TILE_WIDTH - 1) // TILE_WIDTH):
            width = min(TILE_WIDTH, size - n * TILE_WIDTH)
            cap = min(width * (2 + MAX_ENTRY_BYTES), MAX_MIRROR_BYTES - fetched)
            data = await _get(session, f"{base}/{entries_path(n, width)}", cap)
            fetched += len(data)
            try:
                leaves += unbundle(data, width)
            except TileError as exc:
                raise LedgerRefused(f"entry bundle {n} is malformed: {exc}", status=502, error="BadAnswer") from None
            if n == 0 and vkey is None:
                key = _note_key(leaves, None)
                if key is None:
                    raise _Unverified("entry 0 is not a genesis naming a log key; nothing more was fetched")
                _verify_note(note, key, "the genesis's log_key")
        return note, leaves


def audit_url_report(url: str, vkey: str | None = None, witnesses: Sequence[str] = (),
                     min_cosignatures: int = 0) -> Audit:
    """Audit a ledger or a static mirror from /checkpoint and /tile/entries/... (LedgerRefused if unreachable)."""
    try:
        note, leaves = asyncio.run(_fetch(url, vkey))
    except _Unverified as exc:
        return Audit(problems=[str(exc)])
    audit = Audit(size=len(leaves))
    note_key = _note_key(leaves, vkey)
    text = note.decode("utf-8", "replace")
    replay, opened = _replay(leaves, audit, [(len(leaves), text)], note_key)
    verifier = _log_verifier(replay, vkey, audit)
    if verifier is not None and verifier.vkey == note_key:
        cp = _check_checkpoint(opened[len(leaves)], len(leaves), None, replay, audit, "the checkpoint")
        cosigners = _witnesses(witnesses, audit)
        good: set[str] = set()
        if cp is not None:
            for w in cosigners:
                try:
                    open_note(note, [w])
                    good.add(w.vkey)
                except NoteError:
                    pass
        _count_cosignatures(good, min_cosignatures, audit)
    return audit


def audit_url(url: str, vkey: str | None = None, witnesses: Sequence[str] = (), min_cosignatures: int = 0) -> list[str]:
    """The problems of a ledger (or mirror) served over HTTP (empty: it verifies)."""
    return audit_url_report(url, vkey, witnesses, min_cosignatures).problems
