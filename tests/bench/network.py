"""Stage 2 figures: `--verify 3` latency and throughput on a warm local network of 3 nodes,
and where the CPU goes."""

from __future__ import annotations

import asyncio
import cProfile
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cod.local import prepare  # noqa: E402
from verifier import Devstack, Records, Requester  # noqa: E402

HELLO = ROOT / "vectors" / "hello.wasm"
CATEGORIES = {
    "HTTP and JSON (aiohttp, asyncio, json)": ("aiohttp", "asyncio", "json", "multidict", "yarl", "http", "socket",
                                               "selectors", "ssl", "email"),
    "hashing, CIDs, CARs (hashlib, cod.content.unixfs, cod.content.car, cod.content.export)": ("hashlib", "unixfs", "car.py", "export.py",
                                                                        "cid.py", "dagpb"),
    "signing and checking (nacl, cod.statement, cod.identity)": ("nacl", "statement", "identity", "multihash",
                                                                 "base58"),
    "bookkeeping (sqlite, verifier, node)": ("sqlite", "reputation", "store.py", "verify.py", "app.py", "pool.py"),
}


def _cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError):
            pass
    return total


def _job(n: int) -> object:
    return prepare(HELLO, [], seed=f"bench-{time.time_ns()}-{n}")


async def latency(stack: Devstack, requester: Requester, count: int = 40) -> list[float]:
    samples = []
    for n in range(count):
        job = _job(n)
        start = time.perf_counter()
        result = await requester.verify(job, stack.urls, 3)  # type: ignore[arg-type]
        samples.append(time.perf_counter() - start)
        assert result.outcome == "verified"
    return samples


async def throughput(stack: Devstack, requester: Requester, jobs: int, in_flight: int) -> float:
    prepared = [_job(n) for n in range(jobs)]
    gate = asyncio.Semaphore(in_flight)

    async def one(job: object) -> str:
        async with gate:
            return (await requester.verify(job, stack.urls, 3)).outcome  # type: ignore[arg-type]

    start = time.perf_counter()
    outcomes = await asyncio.gather(*(one(j) for j in prepared))
    elapsed = time.perf_counter() - start
    assert outcomes == ["verified"] * jobs, set(outcomes)
    return jobs / elapsed


def cli_start() -> float:
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cod", "--version"], cwd=ROOT, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


class Served:
    """Three `cod serve` processes: the nodes as a real network would run them."""

    def __init__(self, base: Path) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self.urls: list[str] = []
        for i in range(3):
            proc = subprocess.Popen([sys.executable, "-m", "cod", "serve", "--data-dir", str(base / f"n{i}"), "--port",
                                     "0", "--concurrency", "1", "--queue-size", "256"], cwd=ROOT,
                                    stdout=subprocess.PIPE, text=True)
            assert proc.stdout is not None
            self.urls.append(proc.stdout.readline().strip().rsplit(" ", 1)[-1])
            self.procs.append(proc)

    def pids(self) -> list[int]:
        pids = [p.pid for p in self.procs]
        for pid in list(pids):
            try:
                pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
            except OSError:
                pass
        return pids

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(2)
            proc.wait(timeout=30)


async def main_async() -> list[str]:
    with tempfile.TemporaryDirectory(prefix="cod-bench-net-") as tmp:
        requester = Requester(Records(Path(tmp) / "requester.db"))
        async with requester, Devstack(3, base_dir=Path(tmp) / "stack", concurrency=1, queue_size=256) as stack:
            await latency(stack, requester, 5)  # warm: modules compiled and cached by every worker
            lat = await latency(stack, requester)
            workers = [pid for n in stack.nodes for pid in n.node.pool.worker_pids()]
            cpu0, w0 = time.process_time(), _cpu_of(workers)
            rate = await throughput(stack, requester, jobs=300, in_flight=48)
            per_job = (time.process_time() - cpu0 + _cpu_of(workers) - w0) / 300
            # a second run under cProfile, for the CPU shares only (the profiler slows it down)
            profiler = cProfile.Profile()
            cpu0, wall0, w0 = time.process_time(), time.perf_counter(), _cpu_of(workers)
            profiler.enable()
            await throughput(stack, requester, jobs=300, in_flight=48)
            profiler.disable()
            cpu = time.process_time() - cpu0
            wall = time.perf_counter() - wall0
            worker_cpu = _cpu_of(workers) - w0
        served = Served(Path(tmp) / "served")
        try:
            async with Requester(Records(Path(tmp) / "requester2.db")) as second:
                await latency(served, second, 5)  # type: ignore[arg-type]
                lat2 = await latency(served, second)  # type: ignore[arg-type]
                node_cpu0, own0 = _cpu_of(served.pids()), time.process_time()
                rate2 = await throughput(served, second, jobs=300, in_flight=48)  # type: ignore[arg-type]
                node_cpu = _cpu_of(served.pids()) - node_cpu0
                own = time.process_time() - own0
        finally:
            served.stop()
    stats = pstats.Stats(profiler)
    shares = {name: 0.0 for name in CATEGORIES}
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        for name, keys in CATEGORIES.items():
            if any(k in filename for k in keys):
                shares[name] += tottime
                break
    profiled = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    total_cpu = cpu + worker_cpu

    def ms(samples: list[float], q: float) -> str:
        return f"{sorted(samples)[int(len(samples) * q)] * 1000:.1f}"

    lines = [
        "### `--verify 3` of the hello vector on a warm local network of 3 nodes",
        "",
        "Every job has a fresh seed, so every node really runs it; each node has one executor",
        "process; the requester fetches one result per job and checks it against the agreed CID.",
        "Two topologies on this 2-core machine: the embedded devstack (3 nodes and the requester",
        "in one process, as `cod run --verify 3` starts it), and 3 `cod serve` processes.",
        "",
        "| figure | embedded devstack | 3 `cod serve` processes |",
        "|---|---|---|",
        f"| end-to-end latency from the library, median of {len(lat)} (target <= 50 ms) | **{ms(lat, 0.5)} ms** | "
        f"**{ms(lat2, 0.5)} ms** |",
        f"| same, 90th percentile | {ms(lat, 0.9)} ms | {ms(lat2, 0.9)} ms |",
        f"| verified jobs per second, 300 jobs, 48 in flight (target >= 100) | **{rate:.0f}** | **{rate2:.0f}** |",
        f"| CPU per verified job (all processes) | {per_job * 1000:.1f} ms | "
        f"{(node_cpu + own) / 300 * 1000:.1f} ms |",
        "",
        f"CLI process start (`python -m cod --version`), reported separately: {cli_start() * 1000:.0f} ms.",
        "",
        f"Where the CPU went in the embedded devstack, from a second throughput run under cProfile ({wall:.1f} s "
        f"wall, {total_cpu:.1f} s CPU; the profiler slows the process that holds the requester and the three "
        "nodes, so only the shares count):",
        "",
        "| share | CPU s | of all CPU |",
        "|---|---|---|",
        f"| execution in the executor processes (wasmtime, WASI, results, CID) | {worker_cpu:.2f} | "
        f"{worker_cpu / total_cpu:.0%} |",
    ]
    scale = cpu / profiled if profiled else 1.0  # profiler time, rescaled to the process's real CPU
    for name, seconds in shares.items():
        lines.append(f"| {name} | {seconds * scale:.2f} | {seconds * scale / total_cpu:.0%} |")
    rest = cpu - sum(shares.values()) * scale
    lines.append(f"| everything else (event loop, asyncio tasks, dataclasses, paths) | {rest:.2f} | "
                 f"{rest / total_cpu:.0%} |")
    lines.append("")
    return lines


def main() -> list[str]:
    return asyncio.run(main_async())


if __name__ == "__main__":
    print("\n".join(main()))
