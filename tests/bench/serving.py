"""What the guarded site costs (Stage 9, cod/web/connections.py): requests/s of a real node, guarded against plain.

    PYTHONPATH=. python tests/bench/serving.py

One process holds one node (executor processes and all) and serves its application twice on
loopback: through ``cod.web.server.listen`` (the guarded site every cod server starts through:
header, body, keep-alive and send timeouts, a connection cap) and through aiohttp's own
``AppRunner`` and ``TCPSite`` (what cod served through before Stage 9). A client in a process of
its own (so that its work is not the server's) sends, round after round, the same batch to each
side, A B B A (the order flipped every round, so that a drift of the machine's speed falls on
both): ``GET /v1/info`` and a small ``POST /v1/jobs`` that the node refuses (400: its body read and
parsed as a job spec), each over kept-alive connections and over a new connection per request,
CONCURRENCY requests in flight. Reported per side: requests/s and the server process's CPU time
per request (read from /proc, so the busier machine's share is not in it), medians over the
rounds, and the median of the per-round ratios guarded/plain. COD_BENCH_HTTP_ROUNDS: rounds (4).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

ROUNDS = int(os.environ.get("COD_BENCH_HTTP_ROUNDS", "4"))
CONCURRENCY = 8
REQUESTS = {True: 800, False: 300}  # per phase: kept alive, a new connection each
POST_BODY = json.dumps({"module": "not a cid", "inputs": [], "args": []}).encode()
CASES = [("GET /v1/info", "get"), ("POST /v1/jobs (400)", "post")]


async def _load(url: str, kind: str, keepalive: bool, count: int) -> float:
    """Requests per second of ``count`` requests, CONCURRENCY at a time, to ``url``."""
    connector = aiohttp.TCPConnector(limit=CONCURRENCY, force_close=not keepalive)

    async def worker(http: aiohttp.ClientSession, todo: Iterator[int]) -> None:
        for _ in todo:
            if kind == "get":
                async with http.get(f"{url}/v1/info") as resp:
                    await resp.read()
                    assert resp.status == 200, resp.status
            else:
                async with http.post(f"{url}/v1/jobs", data=POST_BODY,
                                     headers={"Content-Type": "application/json"}) as resp:
                    await resp.read()
                    assert resp.status == 400, resp.status

    async with aiohttp.ClientSession(connector=connector) as http:
        warm = iter(range(2 * CONCURRENCY))
        await asyncio.gather(*(worker(http, warm) for _ in range(CONCURRENCY)))  # a few first, not timed
        todo = iter(range(count))
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(http, todo) for _ in range(CONCURRENCY)))
        return count / (time.perf_counter() - t0)


def _cpu_s(pid: int) -> float:
    """User + system seconds process ``pid`` has used (its threads, not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _client(server: int, guarded: str, plain: str) -> None:
    """The client process: prints one JSON line per round and case, each side's requests/s and the server's
    CPU microseconds per request; each round runs the sides A B B A (A the one that went second last round)."""
    for n in range(ROUNDS):
        for label, kind in CASES:
            for keepalive in (True, False):
                sides = [("guarded", guarded), ("plain", plain)]
                if n % 2:
                    sides.reverse()
                seconds = {side: 0.0 for side, _ in sides}
                cpu = dict(seconds)
                for side, url in sides + sides[::-1]:
                    before = _cpu_s(server)
                    seconds[side] += REQUESTS[keepalive] / await _load(url, kind, keepalive, REQUESTS[keepalive])
                    cpu[side] += _cpu_s(server) - before
                row = {side: 2 * REQUESTS[keepalive] / seconds[side] for side in seconds}
                row.update({f"{side} cpu": cpu[side] / (2 * REQUESTS[keepalive]) * 1e6 for side in cpu})
                print(json.dumps({"case": label, "keepalive": keepalive, **row}), flush=True)


async def _serve_and_measure() -> list[dict[str, object]]:
    from aiohttp import web

    from cod.node.app import Node, app, http_error_body
    from cod.web.server import listen

    with tempfile.TemporaryDirectory(prefix="cod-bench-http-") as tmp:
        node = Node(Path(tmp) / "node", concurrency=1)
        await node.start()
        guarded = await listen(app(node), "127.0.0.1", 0, http_error_body)
        plain_runner = web.AppRunner(app(node), access_log=None)
        await plain_runner.setup()
        site = web.TCPSite(plain_runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--client", str(os.getpid()), guarded.url, f"http://127.0.0.1:{port}",
                stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
            out, _ = await proc.communicate()
            if proc.returncode:
                raise RuntimeError(f"the client process exited {proc.returncode}")
        finally:
            await guarded.runner.cleanup()
            await plain_runner.cleanup()
            await node.stop()
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


def _median_ratio(rows: list[dict[str, object]], key: str) -> tuple[float, float, float, list[float]]:
    g = [float(r[key.format("guarded")]) for r in rows]  # type: ignore[arg-type]
    p = [float(r[key.format("plain")]) for r in rows]  # type: ignore[arg-type]
    ratios = [a / b for a, b in zip(g, p)]
    return statistics.median(g), statistics.median(p), statistics.median(ratios), ratios


def section() -> list[str]:
    rows = asyncio.run(_serve_and_measure())
    lines = [f"One node, {ROUNDS} rounds of each case (each round A B B A), {CONCURRENCY} requests in flight, "
             "the client in its own process; medians; ratios: median of the rounds' guarded/plain. "
             "CPU: the server process's user + system time per request (executors not included).", "",
             "| case | connections | guarded req/s | plain TCPSite req/s | guarded / plain | "
             "server CPU us/request, guarded | plain | guarded / plain | rounds (CPU ratio) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, _ in CASES:
        for keepalive in (True, False):
            mine = [r for r in rows if r["case"] == label and r["keepalive"] == keepalive]
            g, p, ratio, _ = _median_ratio(mine, "{}")
            cg, cp, cratio, cratios = _median_ratio(mine, "{} cpu")
            lines.append(f"| {label} | {'kept alive' if keepalive else 'one per request'} | {g:,.0f} | {p:,.0f} | "
                         f"{ratio:.3f} | {cg:,.0f} | {cp:,.0f} | {cratio:.3f} | "
                         f"{' '.join(f'{x:.2f}' for x in cratios)} |")
    return lines


def main() -> int:
    if sys.argv[1:2] == ["--client"]:
        asyncio.run(_client(int(sys.argv[2]), sys.argv[3], sys.argv[4]))
        return 0
    t0 = time.perf_counter()
    print("\n".join(section()))
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
