"""The ledger's write path through its HTTP service: refusals and evidence posted one per request.

    PYTHONPATH=TREE python tests/bench/ledger_http.py

Unlike tests/bench/ledger.py (the Ledger core, as the service calls it), every write here goes
through the service as a poster sends it: the request, since Stage 9 its rate-limit buckets
(set far above what the run posts, so that nothing is refused) and the guarded site, the
append, the answer. The ledger, its service and the client (CONCURRENCY requests in flight) are
in this process. Prints entries/s and the process's CPU milliseconds per entry (all threads).
It runs on the code of whichever checkout PYTHONPATH names (so it can time one stage against
another), falling back on this one.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.append(str(Path(__file__).resolve().parents[2]))  # after PYTHONPATH: the checkout it names wins

from cod.ledger import entries  # noqa: E402
from cod.ledger.server import start_ledger  # noqa: E402
from tests.ledger import bkit  # noqa: E402
from tests.ledger.bkit import DATA, MOD, NODES, agreeing, blessed_ledger, cid, spec  # noqa: E402

REFUSALS = 1500
EVIDENCE = 300
CONCURRENCY = 4
REASON = "the job reads data that is not blessed FIL+ data (fil-plus-only)"


def _limits() -> dict[str, Any]:
    """``limits=`` far above this run's writes, where the service has rate limits (Stage 9 on)."""
    if "limits" not in inspect.signature(start_ledger).parameters:
        return {}
    from cod.ledger.rates import Rate, WriteLimits
    high = Rate(10**9, 1)
    return {"limits": WriteLimits(address=high, key=high, anonymous=high)}


async def _post_all(url: str, path: str, bodies: list[Any]) -> tuple[float, float]:
    """Post every body, CONCURRENCY at a time: (seconds, CPU seconds of this process)."""
    todo = iter(bodies)

    async def worker(http: aiohttp.ClientSession) -> None:
        for body in todo:
            async with http.post(f"{url}{path}", json=body) as resp:
                text = await resp.text()
                assert resp.status in (200, 201), (resp.status, text[:300])

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as http:
        cpu, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(CONCURRENCY)))
        return time.perf_counter() - t0, time.process_time() - cpu


async def _measure(tmp: Path) -> list[str]:
    ledger = blessed_ledger(tmp)
    inputs = {cid(f"evidence input {i}"): [i] for i in range(EVIDENCE)}
    origin = getattr(bkit, "ORIGIN", None)  # v2 entries name their ledger (Stage 9); before, none did
    ledger.bless(entries.bless_batches(MOD, inputs, **({} if origin is None else {"origin": origin})))
    ledger.close()
    refusals = [entries.sign_refusal(NODES[i % len(NODES)], job=cid(f"job {i}"), policy="fil-plus-only",
                                     inputs=[cid(f"input {i}")], reason=REASON) for i in range(REFUSALS)]
    evidence = []
    for data in inputs:
        s = spec(DATA, data)
        evidence.append({"spec": s, "statements": agreeing(s, 3)})
    running = await start_ledger(tmp / "ledger", **_limits())
    try:
        lines = []
        for label, path, bodies in (("refusal", "/v1/refusals", refusals), ("evidence of 3 nodes", "/v1/evidence",
                                                                             evidence)):
            seconds, cpu = await _post_all(running.url, path, bodies)
            lines.append(f"POST {label}, one per request: {len(bodies) / seconds:,.0f} entries/s, "
                         f"{cpu / len(bodies) * 1e3:.3f} ms CPU/entry")
        return lines
    finally:
        await running.stop()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="cod-bench-ledger-http-") as tmp:
        print("\n".join(asyncio.run(_measure(Path(tmp)))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
