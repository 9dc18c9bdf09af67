"""Scanning compute nodes for signed statements (`cod ledger serve --scan-node URL`).

Eligibility must not depend on any one requester reporting it: the ledger reads each scanned
node's statements feed (``GET /v1/statements?after=SEQ&limit=L``, SPEC.md 9.7), keeps what
verifies in a cache of its own (``scan.sqlite``: per-node cursors and statements by job; not
part of the log), and reports a job's evidence to the ledger once statements of at least two
distinct nodes agree on its spec, and again whenever its set of statements grows. A node's
answer is untrusted: bounded in bytes and time, parsed strictly; an item that is malformed,
names another job than its spec, or whose signature does not verify is skipped and logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from ..errors import CodError
from ..jobspec import JobSpec, canonical_json, load_json
from ..statement import SignedStatement
from .log import Ledger

log = logging.getLogger("cod.ledger.scan")

PAGE = 100
"""Statements asked for per request (a node serves at most 1000)."""
MAX_PAGE_BYTES = 8 << 20
"""Largest feed page read; a bigger answer is dropped and the node asked again next round."""
REQUEST_TIMEOUT_S = 15.0
MAX_PAGES_PER_ROUND = 50
"""Pages read from one node per round, so one busy node cannot keep the scanner to itself."""
MIN_NODES = 2
CACHE_FILE = "scan.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cursors (node_url TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS statements (job TEXT NOT NULL, node TEXT NOT NULL, spec TEXT NOT NULL,
    statement TEXT NOT NULL, PRIMARY KEY (job, node, statement));
CREATE TABLE IF NOT EXISTS reported (job TEXT PRIMARY KEY, count INTEGER NOT NULL);
"""


class Cache:
    """scan.sqlite: cursors and verified statements (a cache: deleting it only makes a rescan)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.executescript(_SCHEMA)

    def cursor(self, url: str) -> int:
        row = self.conn.execute("SELECT seq FROM cursors WHERE node_url = ?", (url,)).fetchone()
        return int(row[0]) if row else 0

    def advance(self, url: str, seq: int, items: list[tuple[str, str, str, str]]) -> set[str]:
        """Keep ``items`` (job, node, spec, statement) and the new cursor; returns the jobs that gained one."""
        grown: set[str] = set()
        with self.conn:
            self.conn.execute("BEGIN")
            for item in items:
                if self.conn.execute("INSERT OR IGNORE INTO statements VALUES (?, ?, ?, ?)", item).rowcount:
                    grown.add(item[0])
            self.conn.execute("INSERT OR REPLACE INTO cursors VALUES (?, ?)", (url, seq))
        return grown

    def evidence(self, job: str) -> tuple[dict[str, Any], list[dict[str, Any]], int] | None:
        """The job's spec and one statement per node (the first seen), if at least MIN_NODES nodes sent one."""
        rows = self.conn.execute("SELECT node, spec, statement FROM statements WHERE job = ? ORDER BY node, rowid",
                                 (job,)).fetchall()
        by_node: dict[str, tuple[str, str]] = {}
        for node, spec, statement in rows:
            by_node.setdefault(node, (spec, statement))
        if len(by_node) < MIN_NODES:
            return None
        spec = json.loads(next(iter(by_node.values()))[0])
        return spec, [json.loads(s) for _, s in by_node.values()], len(by_node)

    def reported(self, job: str) -> int:
        row = self.conn.execute("SELECT count FROM reported WHERE job = ?", (job,)).fetchone()
        return int(row[0]) if row else 0

    def mark(self, job: str, count: int) -> None:
        self.conn.execute("INSERT OR REPLACE INTO reported VALUES (?, ?)", (job, count))


def checked_item(item: Any) -> tuple[str, str, str, str] | None:
    """(job, node, canonical spec, canonical statement) of one feed item, or None if it does not verify."""
    if not isinstance(item, dict):
        return None
    try:
        spec = JobSpec.from_dict(item["spec"])
        job = str(spec.cid)
        signed = SignedStatement.from_json(item["statement"])
        statement = signed.verify(job, signed.statement.node)
    except (CodError, KeyError, TypeError, ValueError):
        return None
    if item.get("job") != job:
        return None
    return (job, statement.node, canonical_json(spec.to_dict()).decode(),
            canonical_json(item["statement"]).decode())


class Scanner:
    """Reads one node's statements feed every ``interval`` seconds and reports grown evidence."""

    def __init__(self, ledger: Ledger, url: str, data_dir: Path, interval: float,
                 on_append: Callable[[], None] | None = None) -> None:
        self.ledger = ledger
        self.url = url.rstrip("/")
        self.cache = Cache(data_dir / CACHE_FILE)
        self.interval = interval
        self.on_append = on_append

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    await self.scan_once(session)
                except Exception:  # a scanner never takes the service down
                    log.exception("scanning %s failed; trying again in %s s", self.url, self.interval)
                await asyncio.sleep(self.interval)

    async def scan_once(self, session: aiohttp.ClientSession) -> int:
        """Read the node's new statements and report every job whose evidence grew; returns how many reported."""
        grown: set[str] = set()
        for _ in range(MAX_PAGES_PER_ROUND):
            after = self.cache.cursor(self.url)
            page = await self._page(session, after)
            if page is None:
                break
            items, seq = page
            grown |= await asyncio.to_thread(self.cache.advance, self.url, seq, items)
            if seq == after:
                break
        reported = 0
        for job in sorted(grown):
            reported += await asyncio.to_thread(self._report, job)
        return reported

    async def _page(self, session: aiohttp.ClientSession, after: int) -> tuple[list[tuple[str, str, str, str]], int] | None:
        url = f"{self.url}/v1/statements?after={after}&limit={PAGE}"
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
                                   allow_redirects=False) as response:
                raw = await response.content.read(MAX_PAGE_BYTES + 1)
                if response.status != 200 or len(raw) > MAX_PAGE_BYTES:
                    log.warning("node %s: feed answered %s (%d bytes); skipped", self.url, response.status, len(raw))
                    return None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            log.warning("node %s cannot be scanned: %s", self.url, exc or type(exc).__name__)
            return None
        try:
            body = load_json(raw)
            items, seq = body["statements"], body["next"]
            if not isinstance(items, list) or type(seq) is not int or not after <= seq < 1 << 63:
                raise ValueError("wrong types")
        except (CodError, KeyError, TypeError, ValueError) as exc:
            log.warning("node %s: the feed is not what SPEC 9.7 says (%s); skipped", self.url, exc)
            return None
        checked = [checked_item(item) for item in items[:PAGE]]
        bad = sum(1 for c in checked if c is None)
        if bad:
            log.warning("node %s: %d statement(s) did not verify and were skipped", self.url, bad)
        return [c for c in checked if c is not None], seq

    def _report(self, job: str) -> int:
        evidence = self.cache.evidence(job)
        if evidence is None:
            return 0
        spec, statements, count = evidence
        if count <= self.cache.reported(job):
            return 0
        try:
            _, judgement, new = self.ledger.report_evidence(spec, statements, poster=f"scanner of {self.url}")
        except CodError as exc:
            log.warning("evidence of job %s from scanning was refused: %s", job, exc.message)
            return 0
        self.cache.mark(job, count)
        if new and self.on_append is not None:
            self.on_append()
        return 1 if new else 0


__all__ = ["Cache", "Scanner", "checked_item"]
