"""Side by side: `--verify 3` throughput and latency, and a warm hello run, of one checkout.

    python tests/bench/ab.py ROOT

ROOT is a checkout of cod (this one, or an older commit in a `git worktree`); run it for two
checkouts alternately, process by process, and compare pair by pair (BENCHMARKS.md, "Stage 3:
what integrity cost"). One line of figures is printed.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

JOBS = 200
IN_FLIGHT = 48
LATENCY_JOBS = 20
HELLO_RUNS = 60


async def network(root: Path) -> tuple[float, float]:
    from cod.local import prepare
    from verifier import Devstack, Records, Requester

    hello = root / "vectors" / "hello.wasm"
    tmp = Path(tempfile.mkdtemp())
    try:
        async with Devstack(3) as stack, Requester(Records(tmp / "r.db")) as requester:
            for n in range(5):
                await requester.verify(prepare(hello, [], seed=f"warm-{n}-{time.time_ns()}"), stack.urls, 3)
            jobs = [prepare(hello, [], seed=f"tp-{n}-{time.time_ns()}") for n in range(JOBS)]
            gate = asyncio.Semaphore(IN_FLIGHT)

            async def one(job: object) -> None:
                async with gate:
                    result = await requester.verify(job, stack.urls, 3)  # type: ignore[arg-type]
                    assert result.outcome == "verified", result.outcome

            start = time.perf_counter()
            await asyncio.gather(*(one(j) for j in jobs))
            rate = JOBS / (time.perf_counter() - start)
            samples = []
            for n in range(LATENCY_JOBS):
                job = prepare(hello, [], seed=f"lat-{n}-{time.time_ns()}")
                start = time.perf_counter()
                await requester.verify(job, stack.urls, 3)
                samples.append(time.perf_counter() - start)
        return rate, sorted(samples)[LATENCY_JOBS // 2]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def hello_run(root: Path) -> float:
    from cod.local import prepare
    from cod.wasm.engine import Engine
    from cod.wasm.executor import run

    tmp = Path(tempfile.mkdtemp())
    try:
        engine = Engine(tmp / "cache")
        job = prepare(root / "vectors" / "hello.wasm", [])
        samples = []
        for n in range(HELLO_RUNS):
            start = time.perf_counter()
            run(job.spec, job.wasm, job.sources, tmp / f"out-{n}", engine)
            samples.append(time.perf_counter() - start)
        return sorted(samples)[HELLO_RUNS // 2]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    root = Path(sys.argv[1]).resolve()
    sys.path.insert(0, str(root))
    rate, latency = asyncio.run(network(root))
    print(f"{root}: {rate:.1f} verified jobs/s, latency median {latency * 1000:.1f} ms, "
          f"hello run median {hello_run(root) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
