"""The jobs of the fault suite and their expected results, each derived independently of cod:
result directories written by hand and hashed by js-ipfs-unixfs, counts made by coreutils `wc`,
stored results unpacked (and every block checked) by ipfs-car."""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import wasmtime

from cod.jobspec import Limits
from cod.local import PreparedJob, prepare

from ..helpers import VECTORS, ipfs_car, js_unixfs_cid, load_vector

JOB_TIMEOUT_MS = 30_000
"""The spec's wall-clock timeout of every fault job: short, so the verifier's deadline is too."""
SPEC_DEADLINE_MARGIN_S = 30.0
"""SPEC section 11.2: the verifier's deadline is the spec's timeout + 30 s."""
RETURN_MARGIN_S = 15.0
"""How far past its deadline a verify call may return (closing connections, the download)."""
BOUND_S = JOB_TIMEOUT_MS / 1000 + SPEC_DEADLINE_MARGIN_S + RETURN_MARGIN_S

BUSY_ITERATIONS = 1_000_000_000
"""A loop of about a second of wasm on an idle core here (0.9 ns an iteration): long enough
for a fault to land while the job runs (the tests poll for `running` every 50 ms), short
enough for three of them on two shared cores."""
LONG_ITERATIONS = 20_000_000_000
"""A loop of about twenty seconds, for a job that must outlast what a test watches (its fuel,
10 units an iteration with margin, is raised above the default limit)."""
FUEL_PER_ITERATION = 10  # 8 measured (local.get, i64.eqz, br_if, local.get, i64.const, i64.sub, local.set, br)
BIG_INPUT_BYTES = 3 << 20
WORDS = ("cod", "verifies", "compute", "over", "data", "every", "node", "signs", "its", "result")


def busy_wat(iterations: int) -> str:
    return f"""(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "done\\n")
  (func (export "_start") (local $i i64)
    (local.set $i (i64.const {iterations}))
    (block $out (loop $spin
      (br_if $out (i64.eqz (local.get $i)))
      (local.set $i (i64.sub (local.get $i) (i64.const 1)))
      (br $spin)))
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 5))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""


@dataclass(frozen=True)
class Expected:
    job: PreparedJob
    result_cid: str


def _results_dir(where: Path, stdout: str, outputs: dict[str, str]) -> Path:
    """A results directory by hand (SPEC 7.1): stdout, empty stderr, exitCode 0, outputs/."""
    (where / "outputs").mkdir(parents=True)
    (where / "stdout").write_text(stdout)
    (where / "stderr").write_text("")
    (where / "exitCode").write_text("0")
    for name, text in outputs.items():
        (where / "outputs" / name).write_text(text)
    return where


def busy_job(tmp: Path, iterations: int = BUSY_ITERATIONS) -> Expected:
    """The busy loop: prints `done`; its result directory is written here and hashed by js."""
    module = tmp / f"busy-{iterations}.wasm"
    module.write_bytes(wasmtime.wat2wasm(busy_wat(iterations)))
    fuel = max(Limits().fuel, FUEL_PER_ITERATION * iterations)
    job = prepare(module, [], limits=Limits(timeout_ms=JOB_TIMEOUT_MS, fuel=fuel))
    return Expected(job, js_unixfs_cid(_results_dir(tmp / f"busy-{iterations}-expected", "done\n", {})))


def big_wordcount_job(tmp: Path) -> Expected:
    """wordcount over one text file of a few MB (a chunked UnixFS file: a real upload); the
    expected counts come from coreutils `wc`, the result CID from js-ipfs-unixfs."""
    inputs = tmp / "big-inputs"
    inputs.mkdir()
    text = _text(BIG_INPUT_BYTES)
    (inputs / "big.txt").write_bytes(text)
    wc = subprocess.run(["wc", "-l", "-w", "-c", str(inputs / "big.txt")], capture_output=True, text=True,
                        check=True, env=dict(os.environ, LC_ALL="C")).stdout.split()
    lines, words, size = wc[0], wc[1], wc[2]
    expected = _results_dir(tmp / "big-expected", f"{lines} {words} {size} total\n",
                            {"count.txt": f"{lines} {words} {size} /inputs/big.txt\n"})
    job = prepare(VECTORS / "wordcount.wasm", [], inputs=[str(inputs)], limits=Limits(timeout_ms=JOB_TIMEOUT_MS))
    return Expected(job, js_unixfs_cid(expected))


def _text(size: int) -> bytes:
    """Deterministic ASCII prose: words of WORDS picked by SHA-256 of a counter, 12 to a line."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        digest = hashlib.sha256(counter.to_bytes(8, "big")).digest()
        out += b" ".join(WORDS[b % len(WORDS)].encode() for b in digest[:12]) + b"\n"
        counter += 1
    return bytes(out[:size - 1]) + b"\n"


def stored_wordcount() -> tuple[PreparedJob, str]:
    """The vector word count (small, fast) that each victim stores before its fault, and its
    result CID as pinned in vectors/ (checked against kubo and js-ipfs-unixfs there)."""
    vector = load_vector("wordcount")
    job = prepare(VECTORS / "wordcount.wasm", [], inputs=[str(VECTORS / "data" / "wordcount")])
    assert str(job.spec.cid) == vector["job_cid"]
    return job, vector["expect"]["result_cid"]


async def served_result_cid(url: str, job_cid: str, tmp: Path) -> str:
    """What a node serves as the results of ``job_cid``: its CAR unpacked by ipfs-car (which
    checks every block against its CID) and the tree re-hashed by js-ipfs-unixfs."""
    car = tmp / f"served-{job_cid[-8:]}.car"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/v1/jobs/{job_cid}/results.car", timeout=aiohttp.ClientTimeout(total=60)) as resp:
            assert resp.status == 200, await resp.text()
            car.write_bytes(await resp.read())
    unpacked = tmp / f"served-{job_cid[-8:]}"
    ipfs_car("unpack", str(car), "--output", str(unpacked))
    return js_unixfs_cid(unpacked)
