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

from .health import check
from .jobview import DISAGREES, job_view, short_ids
from .nodeview import node_rows
from .reputation import Records

SCHEMA = "cod.dashboard/1"
DEFAULT_JOBS = 50
LEDGER_LOOKUPS = 20
"""Most jobs whose moderation state is asked of the ledger per snapshot (the newest verified ones)."""

VERIFIED_OUTCOMES = ("verified", "verified-by-quorum")


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


async def moderation(ledger: str, views: list[dict[str, Any]]) -> dict[str, Any]:
    """The ledger's queue, its latest checkpoint (first line: origin, size, root) and the state
    of the newest verified jobs; {"url", "error"} when the ledger cannot be asked."""
    from cod.errors import CodError
    from cod.ledger.client import LedgerClient

    client = LedgerClient(ledger)
    try:
        queue = (await client.queue())["jobs"]
        note = await client.checkpoint()
    except CodError as exc:
        return {"url": ledger, "error": exc.message, "queue": [], "checkpoint": None}
    lines = note.split("\n")
    checkpoint = {"origin": lines[0] if lines else "", "size": _int(lines[1]) if len(lines) > 1 else None,
                  "root": lines[2] if len(lines) > 2 else None, "note": note}
    waiting = {item.get("job") for item in queue}
    asked = [v for v in views if v["outcome"] in VERIFIED_OUTCOMES][:LEDGER_LOOKUPS]

    async def state_of(view: dict[str, Any]) -> None:
        if view["job_cid"] in waiting:
            view["moderation"] = "queued"
            return
        try:
            view["moderation"] = str((await client.job(view["job_cid"])).get("state") or "-")
        except CodError:
            view["moderation"] = "-"  # never reported to this ledger

    await asyncio.gather(*(state_of(v) for v in asked))
    return {"url": ledger, "error": None, "queue": queue, "checkpoint": checkpoint}


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


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
