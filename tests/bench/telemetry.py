"""What tracing costs: `--verify 3` latency and a compute job, tracing off against on-and-exporting.

    python tests/bench/telemetry.py

One process holds a devstack of 3 nodes and the requester; an OTLP/HTTP receiver runs in a
process of its own on loopback (it accepts every POST and counts the bytes, as a collector's
receiver would before its pipeline). Off and on alternate in pairs (the order flips every
round), each phase a batch of jobs with fresh seeds (so every node really runs each job), and
each pair gives a ratio on/off; the report gives the median ratio. Off is tracing not
configured (COD_TRACING=0): what every user who never turns it on pays.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

PAIRS = int(os.environ.get("COD_BENCH_TELEMETRY_PAIRS", "8"))
HELLO_JOBS = 15  # sequential --verify 3 runs of the hello vector per phase
COMPUTE_JOBS = 2  # --verify 3 runs of the compute vector (SHA-256 of 64 MiB) per phase

RECEIVER = r"""
import sys
from aiohttp import web
received = [0, 0]
async def take(request):
    received[0] += 1
    received[1] += len(await request.read())
    return web.Response(body=b"", content_type="application/x-protobuf")
async def count(request):
    return web.json_response({"requests": received[0], "bytes": received[1]})
app = web.Application(client_max_size=64 << 20)
app.router.add_post("/v1/traces", take)
app.router.add_post("/v1/metrics", take)
app.router.add_get("/count", count)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=lambda *a: print("ready", flush=True))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _off() -> None:
    from cod import telemetry

    telemetry.shutdown()  # flushes what the last "on" phase batched, outside any timed phase
    os.environ["COD_TRACING"] = "0"
    assert not telemetry.enabled()


def _on() -> None:
    from cod import telemetry

    os.environ.pop("COD_TRACING", None)
    telemetry.shutdown()
    assert telemetry.enabled()  # decided from the environment: the OTLP endpoint is set


async def _phase(make: Callable[[int], object], count: int, run: Callable[[object], Awaitable[None]],
                 tag: str) -> float:
    samples = []
    for n in range(count):
        job = make(n)
        start = time.perf_counter()
        await run(job)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


async def main_async() -> list[str]:
    from cod.local import prepare
    from verifier import Devstack, Records, Requester

    port = _free_port()
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)], stdout=subprocess.PIPE, text=True)
    assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"
    tmp = Path(tempfile.mkdtemp(prefix="cod-bench-otel-"))
    hello = ROOT / "vectors" / "hello.wasm"
    sha = ROOT / "vectors" / "sha256.wasm"
    results: dict[str, dict[str, list[float]]] = {"hello": {"off": [], "on": []}, "compute": {"off": [], "on": []}}
    try:
        async with Devstack(3, base_dir=tmp / "stack") as stack, Requester(Records(tmp / "r.db")) as requester:
            async def run(job: object) -> None:
                result = await requester.verify(job, stack.urls, 3)  # type: ignore[arg-type]
                assert result.outcome == "verified", result.outcome

            stamp = time.time_ns()
            for warm in range(3):
                await run(prepare(hello, [], seed=f"warm-{stamp}-{warm}"))
            await run(prepare(sha, ["64"], seed=f"warm-{stamp}"))
            for pair in range(PAIRS):
                order = ("off", "on") if pair % 2 == 0 else ("on", "off")
                for mode in order:
                    (_on if mode == "on" else _off)()
                    tag = f"{stamp}-{pair}-{mode}"
                    results["hello"][mode].append(await _phase(
                        lambda n: prepare(hello, [], seed=f"h-{tag}-{n}"), HELLO_JOBS, run, tag))
                    results["compute"][mode].append(await _phase(
                        lambda n: prepare(sha, ["64"], seed=f"c-{tag}-{n}"), COMPUTE_JOBS, run, tag))
            _off()
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=10) as resp:
            received = resp.read().decode()
    finally:
        receiver.terminate()
        receiver.wait(timeout=20)
        shutil.rmtree(tmp, ignore_errors=True)
        os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        os.environ.pop("COD_TRACING", None)

    lines = [
        "### Tracing's cost: off against on and exporting by OTLP/HTTP to a receiver on loopback",
        "",
        f"{PAIRS} pairs, off and on alternated (order flipped each pair); each phase is the median of "
        f"{HELLO_JOBS} sequential `--verify 3` runs of the hello vector and of {COMPUTE_JOBS} of the "
        "compute vector (SHA-256 of 64 MiB, on 3 nodes at once), fresh seeds; the ratio is on/off per pair.",
        "",
        "| case | off, median s | on, median s | on/off, median of pairs (goal <= 1.03) | pairs' ratios |",
        "|---|---|---|---|---|",
    ]
    for name, title in (("hello", "`--verify 3` latency, hello"), ("compute", "`--verify 3` of the compute job")):
        off, on = results[name]["off"], results[name]["on"]
        ratios = [b / a for a, b in zip(off, on)]
        lines.append(f"| {title} | {statistics.median(off):.4f} | {statistics.median(on):.4f} | "
                     f"**{statistics.median(ratios):.3f}** | {' '.join(f'{r:.3f}' for r in ratios)} |")
    lines += ["", f"The receiver got {received} (spans batched and sent by the SDK's BatchSpanProcessor).", ""]
    return lines


class _Stack:
    """`cod devstack` in a process of its own, tracing on (exporting to ``endpoint``) or off."""

    def __init__(self, endpoint: str | None, base: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "COD_TRACING"))}
        env["PYTHONPATH"] = str(ROOT)
        if endpoint:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
        else:
            env["COD_TRACING"] = "0"
        self.proc = subprocess.Popen([sys.executable, "-m", "cod", "devstack", "--nodes", "3", "--base-dir",
                                      str(base)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     env=env)
        assert self.proc.stdout is not None
        self.urls: list[str] = []
        for line in self.proc.stdout:
            if line.startswith("node ") and " at http" in line:
                self.urls.append(line.split(" at ", 1)[1].strip())
            if len(self.urls) == 3:
                break

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


async def apart_async() -> list[str]:
    """The same comparison with the 3 nodes in processes of their own (as on a network): one
    devstack traced and exporting, one not; the requester in this process follows suit."""
    from cod.local import prepare
    from verifier import Records, Requester

    port = _free_port()
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)], stdout=subprocess.PIPE, text=True)
    assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
    endpoint = f"http://127.0.0.1:{port}"
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    tmp = Path(tempfile.mkdtemp(prefix="cod-bench-otel2-"))
    hello = ROOT / "vectors" / "hello.wasm"
    stacks = {"on": _Stack(endpoint, tmp / "on"), "off": _Stack(None, tmp / "off")}
    samples: dict[str, list[float]] = {"off": [], "on": []}
    try:
        async with Requester(Records(tmp / "r.db")) as requester:
            stamp = time.time_ns()
            for mode in ("on", "off"):
                (_on if mode == "on" else _off)()
                for warm in range(3):
                    await requester.verify(prepare(hello, [], seed=f"w-{stamp}-{mode}-{warm}"), stacks[mode].urls, 3)
            for pair in range(PAIRS):
                for mode in (("off", "on") if pair % 2 == 0 else ("on", "off")):
                    (_on if mode == "on" else _off)()
                    urls = stacks[mode].urls

                    async def run(job: object) -> None:
                        result = await requester.verify(job, urls, 3)  # type: ignore[arg-type]
                        assert result.outcome == "verified", result.outcome

                    tag = f"{stamp}-{pair}-{mode}"
                    samples[mode].append(await _phase(lambda n: prepare(hello, [], seed=f"a-{tag}-{n}"), HELLO_JOBS,
                                                      run, tag))
            _off()
    finally:
        for stack in stacks.values():
            stack.stop()
        receiver.terminate()
        receiver.wait(timeout=20)
        shutil.rmtree(tmp, ignore_errors=True)
        os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        os.environ.pop("COD_TRACING", None)
    ratios = [b / a for a, b in zip(samples["off"], samples["on"])]
    return [
        "### The same, with the nodes in processes of their own",
        "",
        f"Two `cod devstack --nodes 3` processes, one traced and exporting, one not; {PAIRS} pairs of "
        f"{HELLO_JOBS} sequential `--verify 3` runs of the hello vector, the requester traced with its nodes.",
        "",
        "| case | off, median s | on, median s | on/off, median of pairs (goal <= 1.03) | pairs' ratios |",
        "|---|---|---|---|---|",
        f"| `--verify 3` latency, hello | {statistics.median(samples['off']):.4f} | "
        f"{statistics.median(samples['on']):.4f} | **{statistics.median(ratios):.3f}** | "
        f"{' '.join(f'{r:.3f}' for r in ratios)} |",
        "",
    ]


def section() -> list[str]:
    return asyncio.run(main_async()) + asyncio.run(apart_async())


if __name__ == "__main__":
    print("\n".join(asyncio.run(apart_async()) if os.environ.get("COD_BENCH_TELEMETRY_APART") else section()))
