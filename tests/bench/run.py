"""`make bench`: cod side by side with wasmtime's built-in WASI, in one run, as ratios.

Each case runs both sides alternately (REPEAT rounds) and reports medians and their ratio,
so that a busy shared machine slows both sides alike. Prints a markdown report and writes
it to bench-out/latest.md.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import wasmtime

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cod import Engine, Input, JobSpec, Limits, cid_of_tree, module_cid, run  # noqa: E402
from cod.wasm.engine import ENGINE_SETTINGS, make_config, wasmtime_version  # noqa: E402

VECTORS = ROOT / "vectors"
REPEAT = int(os.environ.get("COD_BENCH_REPEAT", "5"))
WORDS = b"compute over data where the data lives verifiable deterministic wasm node result cid\n"


def median_time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(cases: dict[str, Callable[[], object]], rounds: int = REPEAT) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            samples[name].append(median_time(fn))
    return {name: statistics.median(values) for name, values in samples.items()}


class Builtin:
    """wasmtime's own WASI: on a default engine, or on one with cod's settings (like for like)."""

    def __init__(self, wasm: bytes, cod_settings: bool = False) -> None:
        self.cod_settings = cod_settings
        self.engine = wasmtime.Engine(make_config() if cod_settings else None)
        self.module = wasmtime.Module(self.engine, wasm)

    def run(self, args: list[str], inputs: Path | None, work: Path) -> None:
        linker = wasmtime.Linker(self.engine)
        linker.define_wasi()
        store = wasmtime.Store(self.engine)
        if self.cod_settings:
            store.set_fuel(Limits().fuel)
        config = wasmtime.WasiConfig()
        config.argv = args
        config.stdout_file = str(work / "stdout")
        config.stderr_file = str(work / "stderr")
        outputs = work / "outputs"
        outputs.mkdir(exist_ok=True)
        config.preopen_dir(str(outputs), "/outputs")
        if inputs is not None:
            config.preopen_dir(str(inputs), "/inputs")
        store.set_wasi(config)
        instance = linker.instantiate(store, self.module)
        try:
            instance.exports(store)["_start"](store)  # type: ignore[operator]
        except wasmtime.ExitTrap as exc:
            assert exc.code == 0


def cod_runner(engine: Engine, wasm: bytes, args: list[str], data: Path | None, work: Path,
               limits: Limits | None = None) -> Callable[[], object]:
    inputs, sources = (), {}
    if data is not None:
        cid = str(cid_of_tree(data))
        inputs, sources = (Input(cid, "/inputs"),), {"/inputs": str(data)}
    spec = JobSpec(module=module_cid(wasm), args=tuple(args), inputs=inputs, limits=limits or Limits())

    def go() -> None:
        out = work / "cod-results"
        shutil.rmtree(out, ignore_errors=True)
        run(spec, wasm, sources, out, engine)

    return go


def bench_compute(work: Path) -> list[str]:
    wasm = (VECTORS / "sha256.wasm").read_bytes()
    args = ["sha256.wasm", "64"]
    return compare("Compute-heavy vector: SHA-256 of 64 MiB generated in the module", wasm, args, None, work,
                   target=1.15)


def compare(title: str, wasm: bytes, args: list[str], data: Path | None, work: Path, target: float) -> list[str]:
    """cod against built-in WASI on cod's engine settings and on a default engine."""
    like = Builtin(wasm, cod_settings=True)
    default = Builtin(wasm)
    # cod as nodes and `cod run` use it (the timeout enforced from outside the process); the
    # library's in-process default (epoch interruption on); fuel metering off
    variants: dict[str, tuple[dict[str, object], bool]] = {
        "cod": (ENGINE_SETTINGS, False),
        "cod-epochs": (ENGINE_SETTINGS, True),
        "cod-nofuel": (dict(ENGINE_SETTINGS, consume_fuel=False), False),
    }
    cases: dict[str, Callable[[], object]] = {
        "like": lambda: like.run(args, data, work),
        "default": lambda: default.run(args, data, work),
    }
    for name, (settings, wall_clock) in variants.items():
        engine = Engine(work / f"cache-{name}", settings=settings, wall_clock=wall_clock)
        cases[name] = cod_runner(engine, wasm, args, data, work)
    t = alternate(cases)
    ratio = t["cod"] / t["like"]
    return [
        f"### {title}",
        "",
        "| side | median s | cod / this |",
        "|---|---|---|",
        f"| cod as nodes and `cod run` run it (fuel, NaN canonicalization) | {t['cod']:.3f} | 1.00 |",
        f"| wasmtime built-in WASI on cod's engine settings (fuel on) | {t['like']:.3f} | **{ratio:.2f}** "
        f"(target <= {target}: {'met' if ratio <= target else 'NOT met'}) |",
        f"| wasmtime built-in WASI on a default engine (no fuel) | {t['default']:.3f} | "
        f"{t['cod'] / t['default']:.2f} |",
        "",
        "Where the time goes, cod against itself with one setting changed:",
        "",
        "| cod variant | median s | shipped / variant |",
        "|---|---|---|",
        f"| fuel metering off | {t['cod-nofuel']:.3f} | {t['cod'] / t['cod-nofuel']:.2f} (fuel's cost) |",
        f"| epoch interruption on (the library's in-process timeout) | {t['cod-epochs']:.3f} | "
        f"{t['cod'] / t['cod-epochs']:.2f} (epochs cost {t['cod-epochs'] / t['cod']:.2f}x) |",
        f"| fuel off, against the default built-in | | {t['cod-nofuel'] / t['default']:.2f} "
        "(cod's WASI layer and result hashing alone) |",
        "",
    ]


def make_text(root: Path, mib: int) -> None:
    root.mkdir(parents=True)
    chunk = WORDS * ((1 << 20) // len(WORDS) + 1)
    for n in range(10):
        with open(root / f"part-{n:02d}.txt", "wb") as out:
            for _ in range(mib // 10):
                out.write(chunk[: 1 << 20])


def bench_wordcount(work: Path) -> list[str]:
    wasm = (VECTORS / "wordcount.wasm").read_bytes()
    data = work / "text"
    make_text(data, 100)
    hashing = median_time(lambda: cid_of_tree(data))
    lines = compare("Word count over 100 MiB of text (10 files of 10 MiB, read in 64 KiB blocks)", wasm,
                    ["wordcount.wasm"], data, work, target=1.5)
    return lines + [
        f"Hashing the 100 MiB input into its CID (done once, when the job is prepared, not timed above): "
        f"{hashing:.3f} s ({100 / hashing:.0f} MiB/s).",
        "",
    ]


def bench_start(work: Path) -> list[str]:
    wasm = (VECTORS / "hello.wasm").read_bytes()
    cache = work / "start-cache"
    Engine(cache).module(wasm)  # compile once, into the disk cache
    warm = Engine(cache)
    go = cod_runner(warm, wasm, ["hello.wasm"], None, work)
    go()

    def fresh_engine_from_disk() -> None:
        engine = Engine(cache)
        cod_runner(engine, wasm, ["hello.wasm"], None, work)()
        assert engine.compiled == 0
        engine.close()

    samples = [median_time(go) for _ in range(50)]
    disk = [median_time(fresh_engine_from_disk) for _ in range(20)]
    compile_cold = median_time(lambda: Engine(work / f"cold-{time.time_ns()}").module(wasm))
    return [
        "### Cached module start: the hello vector, end to end (results directory and CID included)",
        "",
        "| case | median ms |",
        "|---|---|",
        f"| warm engine, module in memory | **{statistics.median(samples) * 1000:.2f}** (target <= 5) |",
        f"| new engine, module deserialized from the disk cache | {statistics.median(disk) * 1000:.2f} |",
        f"| cold compile of hello.wasm (for contrast, no run) | {compile_cold * 1000:.2f} |",
        "",
    ]


HASH_WORKER = """
import resource, sys, time
from cod.content.unixfs import cid_of_tree
t = time.perf_counter(); cid = cid_of_tree(sys.argv[1]); dt = time.perf_counter() - t
print(cid, dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def bench_hash(work: Path) -> list[str]:
    rows = []
    for mib in (64, 1024):
        root = work / f"out-{mib}"
        (root / "outputs").mkdir(parents=True)
        block = os.urandom(1 << 20)
        with open(root / "outputs" / "big.bin", "wb") as out:
            for n in range(mib):
                out.write(block[n % 7 :] + block[: n % 7])
        subprocess.run(["sync"], check=False)
        proc = subprocess.run([sys.executable, "-c", HASH_WORKER, str(root)], cwd=ROOT, capture_output=True,
                              text=True, check=True)
        _, seconds, rss_kib = proc.stdout.split()
        rows.append((mib, float(seconds), int(rss_kib)))
        shutil.rmtree(root)
    lines = [
        "### Result CID of a results directory (outputs/ holding one file), in a fresh process",
        "",
        "| outputs | seconds | MB/s | peak RSS of the process |",
        "|---|---|---|---|",
    ]
    for mib, seconds, rss in rows:
        rate = mib * (1 << 20) / seconds / 1e6
        mark = f"**{rate:.0f}** (target >= 600)" if mib == 1024 else f"{rate:.0f}"
        lines.append(f"| {mib} MiB | {seconds:.3f} | {mark} | {rss / 1024:.1f} MiB |")
    lines += ["", "Flat memory: the peak RSS is the same for 64 MiB and 1 GiB of outputs.", ""]
    return lines


def machine() -> list[str]:
    from startup import cpu_model

    cpu = cpu_model()
    return [
        f"Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, wasmtime {wasmtime_version()}; "
        f"{REPEAT} alternating rounds per comparison, medians.",
        "",
    ]


def bench_ledger() -> list[str]:
    """The ledger's figures (tests/bench/ledger.py): appends/s, proof time, audit of 100,000 entries."""
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve().parent / "ledger.py")], cwd=ROOT,
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    lines = proc.stdout.splitlines() or [f"(ledger bench failed: {proc.stderr.strip()[-300:]})"]
    return ["", "### Ledger (goals: >= 5,000 entries/s, proof <= 1 ms, audit of 100,000 entries <= 10 s)", "",
            "```", *lines, "```"]


def bench_compile() -> list[str]:
    """Stage 10: a compile-heavy (Go) module cold and warm against built-in WASI (tests/bench/compile.py)."""
    import compile as compile_bench

    return ["", "## Stage 10: compile-heavy modules, cold and warm", "", *compile_bench.section()]


def bench_startup() -> list[str]:
    """Stage 5: whole-process start-up (tests/bench/startup.py): cod --help, cod run, --verify 3, compute."""
    import startup

    lines, _rows = startup.section()
    return ["", "## Stage 5: start-up", "", *lines]


def main() -> int:
    report = ["## `make bench`", ""] + machine()
    with tempfile.TemporaryDirectory(prefix="cod-bench-") as tmp:
        work = Path(tmp)
        for section in (bench_compute, bench_wordcount, bench_start, bench_hash):
            sub = work / section.__name__
            sub.mkdir()
            report += section(sub)
    import network

    report += network.main()
    report += bench_ledger()
    report += bench_startup()
    report += bench_compile()
    import locality

    report += ["", *locality.section()]
    import telemetry

    report += ["", "## Stage 7: what tracing costs", "", *telemetry.section()]
    import serving

    report += ["", "## Stage 9: the guarded site against aiohttp's TCPSite", "", *serving.section()]
    import trials

    report += ["", "## Stage 11: one honest node against 1 to 9 colluding liars, 100 seeded trials", "",
               *trials.section()]
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "bench" / "ledger_http.py")], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    report += ["", "## Stage 9: the ledger's write path over HTTP", "",
               *(proc.stdout.splitlines() or [f"(failed: {proc.stderr.strip()[-300:]})"])]
    print("\n".join(report[-40:]), flush=True)
    (ROOT / "bench-out").mkdir(exist_ok=True)
    (ROOT / "bench-out" / "latest.md").write_text("\n".join(report) + "\n")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"\n(bench process peak RSS {rss / 1024:.0f} MiB; report in bench-out/latest.md)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
