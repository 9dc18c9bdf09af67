"""Reporting a verified run's evidence to the FIL+ ledger (`cod run --verify N --ledger URL`, SPEC 11).

After the run the requester POSTs the spec and every valid signed statement to
``/v1/evidence``; the ledger judges them itself. What it answers is reported beside the run,
and nothing it does (refuse, lie, hang, be down) changes the run's outcome or exit code:
every problem becomes ``{"reported": false, "error": ...}``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from cod.errors import LedgerRefused, RateLimited
from cod.ledger.client import REQUEST_TIMEOUT_S, LedgerClient, clean

REPORT_TIMEOUT_S = REQUEST_TIMEOUT_S
"""Longest the report may take after the run (a ledger that hangs costs at most this)."""
MAX_ANSWER_BYTES = 1 << 20
REPORT_RETRIES = 3
"""How many times a report the ledger rate-limited (429) is sent again, each after its Retry-After ..."""
MAX_REPORT_WAIT_S = 10
"""... when that is at most this long (SPEC 12.7's default address budget regains a write a second)."""


def _checked(answer: dict[str, Any]) -> dict[str, Any]:
    """The fields of an evidence answer the report shows; ValueError naming a malformed one."""
    entry, eligible = answer.get("entry"), answer.get("eligible")
    reason, result, nodes = answer.get("reason"), answer.get("result"), answer.get("nodes", [])
    if not isinstance(entry, int) or isinstance(entry, bool) or entry < 0:
        raise ValueError("its \"entry\" is not a leaf index")
    if not isinstance(eligible, bool):
        raise ValueError("its \"eligible\" is not true or false")
    if not (reason is None or isinstance(reason, str)) or (not eligible and not reason):
        raise ValueError("its \"reason\" is not a text")
    if not (result is None or isinstance(result, str)):
        raise ValueError("its \"result\" is not a CID")
    if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
        raise ValueError("its \"nodes\" is not a list of node IDs")
    return {"entry": entry, "eligible": eligible, "reason": clean(reason) if reason else None,
            "result": clean(result, 200) if result else None, "nodes": [clean(n, 100) for n in nodes]}


async def report(url: str, spec: dict[str, Any], statements: list[dict[str, Any]]) -> dict[str, Any]:
    """Report the evidence to the ledger at ``url``; never raises a CodError.

    Returns {"url", "reported", "entry", "eligible", "reason", "result", "nodes", "error"}.
    """
    out: dict[str, Any] = {"url": url, "reported": False, "entry": None, "eligible": None, "reason": None,
                           "result": None, "nodes": [], "error": None}
    if not statements:
        out["error"] = "the run has no valid signed statement to report"
        return out
    client = LedgerClient(url, timeout_s=REPORT_TIMEOUT_S, max_bytes=MAX_ANSWER_BYTES)
    try:
        for attempt in range(REPORT_RETRIES + 1):
            try:
                answer = await client.evidence(spec, statements)
                break
            except RateLimited as exc:  # many runs at once from one host: wait as the ledger says, a few times
                if attempt == REPORT_RETRIES or exc.retry_after > MAX_REPORT_WAIT_S:
                    raise
                await asyncio.sleep(exc.retry_after)
        out.update(_checked(answer), reported=True)
    except LedgerRefused as exc:
        out["error"] = exc.message
    except ValueError as exc:
        out["error"] = f"the ledger at {url} answered the evidence oddly: {exc}"
    return out


def summary(ledger: dict[str, Any]) -> str:
    """The report's one line: eligible (entry I), not eligible: REASON, or could not report: WHY."""
    if not ledger["reported"]:
        return f"ledger: could not report: {ledger['error']}"
    if ledger["eligible"]:
        return f"ledger: eligible (entry {ledger['entry']})"
    return f"ledger: not eligible: {ledger['reason']} (entry {ledger['entry']})"
