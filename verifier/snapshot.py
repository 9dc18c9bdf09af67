"""What the dashboard shows, gathered once: recent jobs (job views), the nodes with their health,
and, when a ledger is configured, the moderation queue, each job's moderation state and the
latest checkpoint. ``cod dashboard --json`` prints exactly this object (schema "cod.dashboard/1").

Every part that talks to the network fails on its own: an unreachable ledger or node becomes
an ``error`` string in its part, never a failed snapshot.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from cod.text import printable

from .health import check
from .jobview import DISAGREES, job_view, short_ids
from .nodeview import node_rows
from .outcomes import QUORUM, VERIFIED
from .reputation import Records

SCHEMA = "cod.dashboard/1"
DEFAULT_JOBS = 50
LEDGER_LOOKUPS = 20
"""Most jobs whose moderation state is asked of the ledger per snapshot (the newest verified ones)."""

VERIFIED_OUTCOMES = (VERIFIED, QUORUM)


def dissenters(view: dict[str, Any]) -> list[str]:
    """Node IDs of a job's latest run that signed a result other than the accepted (or else the
    strict-majority) one: the status DISAGREES of jobview.answer_status."""
    return sorted(n["node_id"] for n in view.get("nodes") or [] if n.get("status") == DISAGREES)


def jobs(records: Records, limit: int = DEFAULT_JOBS) -> list[dict[str, Any]]:
    """The newest ``limit`` job views (with stdout and stderr when on this machine), each with
    ``dissent`` (node IDs outside the reference group) and ``moderation`` (None until asked)."""
    shorts = short_ids(records.job_cids())
    out = []
    for job, run, runs in records.recent(limit):
        view = job_view(job, run, runs, shorts.get(job["job_cid"]), with_output=True)
        view["dissent"] = dissenters(view)
        view["moderation"] = None
        out.append(view)
    return out


LEDGER_TIMEOUT_S = 5.0
"""Longest one request to the ledger may take for a snapshot (a live view must not freeze)."""
MAX_QUEUE_SHOWN = 1000
MAX_TEXT = 200


async def moderation(ledger: str, views: list[dict[str, Any]]) -> dict[str, Any]:
    """The ledger's queue, its latest checkpoint (origin, size, root) and the state of the
    newest verified jobs; {"url", "error"} when the ledger cannot be asked or answers
    something malformed. Every string the ledger sent is made printable (cod.text)."""
    from cod.errors import CodError
    from cod.ledger.client import LedgerClient

    client = LedgerClient(ledger, timeout_s=LEDGER_TIMEOUT_S)
    try:
        answer = await client.queue(limit=MAX_QUEUE_SHOWN)  # one page; "more" says the queue goes on
        note = await client.checkpoint()
    except CodError as exc:
        return {"url": ledger, "error": printable(exc.message, MAX_TEXT), "queue": [], "checkpoint": None}
    try:
        queue = _queue(answer)
        checkpoint = _checkpoint(note)
    except ValueError as exc:
        return {"url": ledger, "error": f"the ledger answered something malformed: {exc}", "queue": [],
                "checkpoint": None}
    more = isinstance(answer, dict) and isinstance(answer.get("next"), int)
    waiting = {item["job"] for item in queue}
    asked = [v for v in views if v["outcome"] in VERIFIED_OUTCOMES][:LEDGER_LOOKUPS]

    async def state_of(view: dict[str, Any]) -> None:
        if view["job_cid"] in waiting:
            view["moderation"] = "queued"
            return
        try:
            state = (await client.job(view["job_cid"])).get("state")
        except (CodError, AttributeError):
            state = None  # never reported to this ledger, or an answer that is no object
        view["moderation"] = printable(state, 40) if isinstance(state, str) and state else "-"

    await asyncio.gather(*(state_of(v) for v in asked))
    return {"url": ledger, "error": None, "queue": queue, "more": more, "checkpoint": checkpoint}


def _queue(answer: Any) -> list[dict[str, Any]]:
    """The queue's jobs, each {"job", "result", "entry", "nodes"} with printable strings."""
    jobs = answer.get("jobs") if isinstance(answer, dict) else None
    if not isinstance(jobs, list):
        raise ValueError('the queue has no list "jobs"')
    queue = []
    for item in jobs[:MAX_QUEUE_SHOWN]:
        if not isinstance(item, dict):
            raise ValueError("a queued job is not an object")
        nodes = item.get("nodes")
        entry = item.get("entry")
        queue.append({"job": printable(str(item.get("job")), MAX_TEXT),
                      "result": printable(str(item.get("result")), MAX_TEXT),
                      "entry": entry if isinstance(entry, int) and not isinstance(entry, bool) else None,
                      "nodes": [printable(str(n), MAX_TEXT) for n in nodes] if isinstance(nodes, list) else []})
    return queue


def _checkpoint(note: str) -> dict[str, Any]:
    """The first three lines of a checkpoint note: origin, size (decimal, at most 20 digits), root."""
    lines = note.split("\n")
    size_text = lines[1] if len(lines) > 1 else ""
    size = int(size_text) if size_text.isascii() and size_text.isdigit() and len(size_text) <= 20 else None
    return {"origin": printable(lines[0], MAX_TEXT) if lines else "", "size": size,
            "root": printable(lines[2], MAX_TEXT) if len(lines) > 2 else None}


async def collect(records: Records, configured: list[str], ledger: str | None, *, limit: int = DEFAULT_JOBS,
                  health: bool = True) -> dict[str, Any]:
    """The whole snapshot (see the module's doc)."""
    # SQLite reads are local and quick, and the connection belongs to this thread: no to_thread
    views = jobs(records, limit)
    known = records.nodes()
    urls = sorted({n["url"] for n in known} | set(configured))
    checked = await check(urls, {n["url"]: n["node_id"] for n in known}) if health else None
    nodes = node_rows(records, configured, checked)
    mod = await moderation(ledger, views) if ledger else None
    return {"schema": SCHEMA, "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "records": str(records.path),
            "jobs": views, "nodes": nodes, "moderation": mod}


__all__ = ["SCHEMA", "collect", "dissenters", "jobs", "moderation"]
