"""The nodes a requester knows, as ``cod nodes`` and the dashboard show them: the records'
nodes and counts, the configured URLs (also those never used yet), and, when checked, their
health now."""

from __future__ import annotations

from typing import Any

from .health import Health
from .reputation import Records


def node_rows(records: Records, configured: list[str], health: list[Health] | None = None) -> list[dict[str, Any]]:
    """One row per known node (by node ID) and per configured URL no known node has, ordered by
    node ID (unknown IDs last, by URL). Keys: node_id, url, profile, agreed, disagreed, failed,
    bad_signature, score, last_seen, configured, and with ``health`` state, latency_ms, error."""
    known = records.nodes()
    urls = set(configured)
    rows: list[dict[str, Any]] = []
    for node in known:
        rows.append(dict(node, score=records.score(node["node_id"]), configured=node["url"] in urls,
                         **{k: node[k] or 0 for k in ("agreed", "disagreed", "failed", "bad_signature")}))
    have = {row["url"] for row in rows}
    for url in sorted(urls - have):
        rows.append({"node_id": None, "url": url, "profile": None, "agreed": 0, "disagreed": 0, "failed": 0,
                     "bad_signature": 0, "score": 0, "last_seen": None, "configured": True})
    if health is not None:
        by_url = {h.url: h for h in health}
        for row in rows:
            h = by_url.get(row["url"])
            row.update(state=h.state if h else None, latency_ms=h.latency_ms if h else None,
                       error=h.error if h else None)
            if h is not None and row["node_id"] is None:
                row["node_id"] = h.node_id
    rows.sort(key=lambda r: (r["node_id"] is None, r["node_id"] or "", r["url"]))
    return rows


__all__ = ["node_rows"]
