"""Reporting a verified run's evidence to the FIL+ ledger (`cod run --verify N --ledger URL`, SPEC 11).

After the run the requester POSTs the spec and every valid signed statement to
``/v1/evidence``; the ledger judges them itself. What it answers is reported beside the run,
and nothing it does (refuse, lie, hang, be down) changes the run's outcome or exit code:
every problem becomes ``{"reported": false, "error": ...}``.
"""

from __future__ import annotations

import asyncio
import json
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


async def report_fraud(url: str, proof: Any) -> dict[str, Any]:
    """POST a fraud proof's canonical bytes to ``url``/v1/fraud-proofs (SPEC 11.5); never raises a
    CodError. Returns {"proof_id", "url", "reported", "index", "status", "error"}."""
    import aiohttp

    out: dict[str, Any] = {"proof_id": proof.proof_id, "url": url, "reported": False, "index": None, "status": None,
                           "error": None}
    client = LedgerClient(url, timeout_s=REPORT_TIMEOUT_S, max_bytes=MAX_ANSWER_BYTES)
    path = "/v1/fraud-proofs"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(client.url + path, data=proof.canonical_bytes(), allow_redirects=False,
                                    headers={"Content-Type": "application/json"},
                                    timeout=aiohttp.ClientTimeout(total=REPORT_TIMEOUT_S)) as resp:
                status, raw = resp.status, await client._read(resp, f"POST {path}")
        if status != 200:
            raise client._refusal(status, raw, f"POST {path}")
        answer = json.loads(raw)
        index, state = answer.get("index"), answer.get("status")
        if not isinstance(answer, dict) or answer.get("proof_id") != proof.proof_id:
            raise ValueError("its \"proof_id\" is not the proof's")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0 or state not in ("recorded", "known"):
            raise ValueError("its \"index\" or \"status\" is malformed")
        out.update(reported=True, index=index, status=state)
    except LedgerRefused as exc:
        out["error"] = exc.message
    except (ValueError, AttributeError) as exc:
        out["error"] = f"the ledger at {url} answered the fraud proof oddly: {exc}"
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
        out["error"] = f"cannot reach the ledger at {url}: {type(exc).__name__} {clean(str(exc), 200)}".rstrip()
    return out


def fraud_summary(report: dict[str, Any]) -> str:
    if not report["reported"]:
        return f"ledger: could not report fraud proof {report['proof_id']}: {report['error']}"
    return f"ledger: fraud proof {report['proof_id']} {report['status']} (entry {report['index']})"
