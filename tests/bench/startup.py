"""Stage 5: whole-process start-up, timed from outside, cod against bare Python and bare wasmtime.

Every case is a pair of commands run as separate processes (``subprocess.run``, wall time with
``time.perf_counter`` around it), the two sides alternating in each round (A B, then B A, ...) so that
a busy shared machine slows both alike. Reported: cod's median and min, the reference's median, their
ratio, and whether the goal is met.

1. ``python -m cod --help`` (goal: median <= 100 ms), beside ``python -c pass``.
2. ``python -m cod run vectors/hello.wasm`` against a bare ``python -c`` that runs the same module under
   wasmtime's built-in WASI (goal: ratio <= 1.5). Both warm: cod's compiled-module cache and the bare
   side's serialized module (``Module.deserialize_file``) are filled by one untimed run each.
3. ``python -m cod run --verify 3 vectors/hello.wasm`` on an already running ``cod devstack --nodes 3``
   (goal: median <= 300 ms), beside the local ``cod run`` of case 2 for reference.
4. A compute-heavy job (a WAT module written here: integer mixing over a 4 MiB region, ~1.3 s) under
   ``cod run`` against bare wasmtime WASI on an engine with fuel metering on (goal: ratio <= 1.10).

Run alone: ``python tests/bench/startup.py`` prints the markdown table. Rounds: COD_BENCH_STARTUP_ROUNDS
(default 15) for cases 1-3, COD_BENCH_COMPUTE_ROUNDS (default 5) for case 4.
"""

from __future__ import annotations

import os
import platform
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import wasmtime

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "vectors" / "hello.wasm"
PY = sys.executable
ROUNDS = int(os.environ.get("COD_BENCH_STARTUP_ROUNDS", "15"))
COMPUTE_ROUNDS = int(os.environ.get("COD_BENCH_COMPUTE_ROUNDS", "5"))
DEVSTACK_TIMEOUT = 60.0
COMPUTE_PASSES = int(os.environ.get("COD_BENCH_COMPUTE_PASSES", "400"))  # ~1.3 s of wasm on the dev VM
FUEL = 1 << 62  # the bare side's fuel: never runs out

# The bare side: wasmtime's built-in WASI, stdout inherited. argv: module, serialized-module path, fuel
# (0: an engine without fuel metering). The serialized module is written on the first (untimed) run and
# deserialized on every later one, as cod's disk cache does for cod.
BARE = r"""
import os, sys, wasmtime
wasm, cwasm, fuel = sys.argv[1], sys.argv[2], int(sys.argv[3])
config = wasmtime.Config()
if fuel:
    config.consume_fuel = True
engine = wasmtime.Engine(config)
if os.path.exists(cwasm):
    module = wasmtime.Module.deserialize_file(engine, cwasm)
else:
    module = wasmtime.Module.from_file(engine, wasm)
    with open(cwasm + ".tmp", "wb") as out:
        out.write(module.serialize())
    os.replace(cwasm + ".tmp", cwasm)
linker = wasmtime.Linker(engine)
linker.define_wasi()
store = wasmtime.Store(engine)
if fuel:
    store.set_fuel(fuel)
wasi = wasmtime.WasiConfig()
wasi.argv = [os.path.basename(wasm)]
wasi.inherit_stdout()
wasi.inherit_stderr()
store.set_wasi(wasi)
instance = linker.instantiate(store, module)
try:
    instance.exports(store)["_start"](store)
except wasmtime.ExitTrap as exc:
    sys.exit(exc.code)
"""


def job_wat(passes: int = COMPUTE_PASSES) -> str:
    """A CPU-bound WASI command: fills 4 MiB with a counter, then `passes` times runs a SHA-256-flavoured
    mixing chain (add, three rotations xor-ed, multiply, add) through every 32-bit word, writing each
    word back; prints ``mix <8 hex digits of the final state>``."""
    end = 65536 + (4 << 20)
    return f"""
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 66)
  (func $mix (param $x i32) (param $w i32) (result i32)
    (local.set $x (i32.add (local.get $x) (local.get $w)))
    (local.set $x (i32.xor (i32.xor (i32.rotr (local.get $x) (i32.const 2)) (i32.rotr (local.get $x) (i32.const 13)))
                           (i32.rotr (local.get $x) (i32.const 22))))
    (i32.add (i32.mul (local.get $x) (i32.const 0x9E3779B1)) (i32.const 0x6A09E667)))
  (func (export "_start")
    (local $p i32) (local $i i32) (local $x i32) (local $d i32)
    (local.set $i (i32.const 0))
    (loop $fill
      (i32.store (i32.add (i32.const 65536) (i32.shl (local.get $i) (i32.const 2))) (local.get $i))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get $i) (i32.const 1048576))))
    (local.set $x (i32.const 0x5BE0CD19))
    (local.set $p (i32.const 0))
    (loop $pass
      (local.set $i (i32.const 65536))
      (loop $word
        (local.set $x (call $mix (local.get $x) (i32.load (local.get $i))))
        (i32.store (local.get $i) (local.get $x))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br_if $word (i32.lt_u (local.get $i) (i32.const {end}))))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (br_if $pass (i32.lt_u (local.get $p) (i32.const {passes}))))
    (i32.store (i32.const 16) (i32.const 0x2078696D))
    (local.set $i (i32.const 0))
    (loop $hex
      (local.set $d (i32.and (i32.shr_u (local.get $x) (i32.sub (i32.const 28) (i32.shl (local.get $i) (i32.const 2))))
                             (i32.const 15)))
      (i32.store8 (i32.add (i32.const 20) (local.get $i))
                  (i32.add (local.get $d) (select (i32.const 48) (i32.const 87) (i32.lt_u (local.get $d) (i32.const 10)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $hex (i32.lt_u (local.get $i) (i32.const 8))))
    (i32.store8 (i32.const 28) (i32.const 10))
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 13))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"""


class NotMeasured(Exception):
    """A case that could not be measured; its row says why."""


def environment(tmp: Path) -> dict[str, str]:
    """The environment of every timed process: this tree's cod, and cod's state in the temporary dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COD_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env["COD_HOME"] = str(tmp / "home")
    env["XDG_CONFIG_HOME"] = str(tmp / "config")
    env["XDG_CACHE_HOME"] = str(tmp / "cache")
    return env


class Command:
    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, expect: str | None = None) -> None:
        self.argv, self.env, self.cwd, self.expect = argv, env, cwd, expect

    def __call__(self) -> float:
        start = time.perf_counter()
        proc = subprocess.run(self.argv, env=self.env, cwd=self.cwd, capture_output=True, stdin=subprocess.DEVNULL)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0 or (self.expect is not None and self.expect not in proc.stdout.decode(errors="replace")):
            tail = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()[-3:]
            raise NotMeasured(f"`{' '.join(self.argv[-3:])}` exit {proc.returncode}: {' / '.join(tail)}"[:300])
        return elapsed


def alternate(a: Callable[[], float], b: Callable[[], float], rounds: int) -> tuple[list[float], list[float]]:
    """Times a and b as whole processes, `rounds` times each, the order swapped every round."""
    sa: list[float] = []
    sb: list[float] = []
    for n in range(rounds):
        if n % 2 == 0:
            sa.append(a())
            sb.append(b())
        else:
            sb.append(b())
            sa.append(a())
    return sa, sb


def row(case: str, cod: list[float], ref: list[float] | None, ref_name: str, goal: str,
        met: Callable[[float, float | None], bool], note: str = "") -> dict[str, Any]:
    median = statistics.median(cod) * 1000
    ref_median = statistics.median(ref) * 1000 if ref else None
    ratio = median / ref_median if ref_median else None
    return {"case": case, "median_ms": median, "min_ms": min(cod) * 1000, "reference": ref_name,
            "ref_median_ms": ref_median, "ref_min_ms": min(ref) * 1000 if ref else None, "ratio": ratio,
            "goal": goal, "met": met(median, ratio), "rounds": len(cod), "note": note}


def failed(case: str, goal: str, reason: object) -> dict[str, Any]:
    return {"case": case, "median_ms": None, "min_ms": None, "reference": "", "ref_median_ms": None,
            "ref_min_ms": None, "ratio": None, "goal": goal, "met": None, "rounds": 0,
            "note": f"not measured: {reason}"}


def case_help(tmp: Path, env: dict[str, str]) -> dict[str, Any]:
    cod = Command([PY, "-m", "cod", "--help"], env, tmp, expect="Usage")
    bare = Command([PY, "-c", "pass"], env, tmp)
    cod(), bare()
    a, b = alternate(cod, bare, ROUNDS)
    return row("`cod --help`", a, b, "`python -c pass`", "median <= 100 ms", lambda m, r: m <= 100)


def case_hello(tmp: Path, env: dict[str, str]) -> tuple[dict[str, Any], Command]:
    cod = Command([PY, "-m", "cod", "run", str(HELLO)], env, tmp, expect="hello from cod")
    bare = Command([PY, "-c", BARE, str(HELLO), str(tmp / "hello.cwasm"), "0"], env, tmp, expect="hello from cod")
    cod(), bare()  # untimed: fills cod's module cache, and writes the bare side's serialized module
    a, b = alternate(cod, bare, ROUNDS)
    return row("`cod run hello.wasm` (local)", a, b, "bare wasmtime WASI, default engine, module deserialized",
               "ratio <= 1.5", lambda m, r: r is not None and r <= 1.5), cod


class Devstack:
    """`cod devstack --nodes 3` as a subprocess, in its own process group; stopped with SIGINT."""

    def __init__(self, tmp: Path, env: dict[str, str], nodes: int = 3) -> None:
        self.tmp, self.env, self.nodes = tmp, env, nodes
        self.proc: subprocess.Popen[str] | None = None
        self.urls: list[str] = []
        self.lines: queue.Queue[str | None] = queue.Queue()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def start(self) -> list[str]:
        self.log = open(self.tmp / "devstack.err", "w")
        self.proc = subprocess.Popen([PY, "-m", "cod", "devstack", "--nodes", str(self.nodes)], env=self.env,
                                     cwd=self.tmp, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + DEVSTACK_TIMEOUT
        while len(self.urls) < self.nodes:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NotMeasured(f"devstack did not list {self.nodes} nodes within {DEVSTACK_TIMEOUT:.0f} s")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                err = (self.tmp / "devstack.err").read_text(errors="replace").strip().splitlines()[-2:]
                raise NotMeasured(f"devstack exited ({self.proc.wait()}): {' / '.join(err)}"[:300])
            if line.startswith("node "):
                self.urls.append(line.split()[3])
        return self.urls

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        # anything it left in its own process group (its workers), only if still there
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.log.close()


def case_verify(tmp: Path, env: dict[str, str], local: Command | None) -> dict[str, Any]:
    stack = Devstack(tmp, env)
    try:
        urls = stack.start()
        venv = dict(env, COD_NODES=",".join(urls))
        cod = Command([PY, "-m", "cod", "run", "--verify", "3", str(HELLO)], venv, tmp, expect="hello from cod")
        cod()  # untimed: every node compiles and caches the module
        if local is None:
            a = [cod() for _ in range(ROUNDS)]
            b = None
        else:
            a, b = alternate(cod, local, ROUNDS)
        return row("`cod run --verify 3 hello.wasm` (devstack of 3)", a, b, "`cod run hello.wasm` (local)",
                   "median <= 300 ms", lambda m, r: m <= 300)
    finally:
        stack.stop()


def case_compute(tmp: Path, env: dict[str, str]) -> dict[str, Any]:
    job = tmp / "job.wasm"
    job.write_bytes(wasmtime.wat2wasm(job_wat()))
    cod = Command([PY, "-m", "cod", "run", str(job)], env, tmp, expect="mix ")
    bare = Command([PY, "-c", BARE, str(job), str(tmp / "job-fuel.cwasm"), str(FUEL)], env, tmp, expect="mix ")
    cod(), bare()
    a, b = alternate(cod, bare, COMPUTE_ROUNDS)
    return row(f"`cod run job.wasm` (compute, {COMPUTE_PASSES} passes over 4 MiB)", a, b,
               "bare wasmtime WASI, fuel metering on, module deserialized", "ratio <= 1.10",
               lambda m, r: r is not None and r <= 1.10)


def measure(work: Path | None = None) -> list[dict[str, Any]]:
    """The four cases, as rows; a case that fails is a row saying why, not an exception."""
    with tempfile.TemporaryDirectory(prefix="cod-bench-startup-", dir=work) as name:
        tmp = Path(name)
        env = environment(tmp)
        rows: list[dict[str, Any]] = []
        try:
            rows.append(case_help(tmp, env))
        except Exception as exc:  # noqa: BLE001 - a row, not a crash
            rows.append(failed("`cod --help`", "median <= 100 ms", exc))
        local = None
        try:
            hello, local = case_hello(tmp, env)
            rows.append(hello)
        except Exception as exc:  # noqa: BLE001
            rows.append(failed("`cod run hello.wasm` (local)", "ratio <= 1.5", exc))
        try:
            rows.append(case_verify(tmp, env, local))
        except Exception as exc:  # noqa: BLE001
            rows.append(failed("`cod run --verify 3 hello.wasm` (devstack of 3)", "median <= 300 ms", exc))
        try:
            rows.append(case_compute(tmp, env))
        except Exception as exc:  # noqa: BLE001
            rows.append(failed("`cod run job.wasm` (compute)", "ratio <= 1.10", exc))
        return rows


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (the processor string elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    cpu = cpu_model()
    u = platform.uname()
    return (f"Machine: {cpu}, {os.cpu_count()} CPUs, {u.system} {u.release} {u.machine}, "
            f"Python {platform.python_version()}, wasmtime {version('wasmtime')}.")


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "### Stage 5: whole-process start-up (each run a new process, wall time from outside)",
        "",
        machine(),
        f"Rounds: {ROUNDS} (cases 1-3), {COMPUTE_ROUNDS} (compute); the two sides alternate in every round.",
        "",
        "| case | median ms | min ms | reference median ms | ratio | goal | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["median_ms"] is None:
            lines.append(f"| {r['case']} | {r['note']} | | | | {r['goal']} | no |")
            continue
        ref = f"{_ms(r['ref_median_ms'])} ({r['reference']})" if r["ref_median_ms"] is not None else ""
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else ""
        lines.append(f"| {r['case']} | {_ms(r['median_ms'])} | {_ms(r['min_ms'])} | {ref} | {ratio} | "
                     f"{r['goal']} | {'yes' if r['met'] else 'no'} |")
    lines += [
        "",
        "Both sides of cases 2 and 4 are warm: cod's compiled-module cache (XDG_CACHE_HOME in a temporary dir) "
        "and, for the bare side, a module serialized on an untimed first run and loaded with "
        "`wasmtime.Module.deserialize_file`. The bare compute side enables fuel metering only; cod also has "
        "NaN canonicalization and its own settings (SPEC 5.1), and enforces the timeout from a watcher thread "
        "(no epoch checks in the guest). Case 3's reference is the local `cod run` of case 2, "
        "alternated with it.",
        "",
    ]
    return lines


def section(work: Path | None = None) -> tuple[list[str], list[dict[str, Any]]]:
    """For run.py: the markdown lines and the rows."""
    rows = measure(work)
    return table(rows), rows


def main() -> int:
    lines, _ = section()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
