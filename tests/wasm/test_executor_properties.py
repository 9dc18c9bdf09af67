"""Reproducibility, property by property, over generated specs and input trees."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import wasmtime
from hypothesis import given, settings, strategies as st

from cod import Engine, Input, JobSpec, Limits, cid_of_tree, module_cid, run

from ..helpers import ROOT, VECTORS

PROBE = (VECTORS / "probe.wasm").read_bytes()
PROBE_CID = module_cid(PROBE)

names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"), min_size=1, max_size=12
).filter(lambda n: n not in (".", "..") and len(n.encode()) <= 255)
files = st.dictionaries(names, st.binary(max_size=3000), min_size=0, max_size=6)
trees = st.dictionaries(names, st.one_of(st.binary(max_size=3000), files), min_size=1, max_size=6)
seeds = st.binary(min_size=32, max_size=32)
args = st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                        max_size=10), max_size=4)
envs = st.dictionaries(st.text(alphabet="ABCXYZ_abc", min_size=1, max_size=6),
                       st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                               max_size=10), max_size=4)


def _materialize(tree: dict[str, object], root: Path, order: list[int]) -> None:
    """Create the tree, its entries in the order given (a permutation), the rest after."""
    root.mkdir(parents=True)
    items = sorted(tree.items())
    sequence = [i for i in order if i < len(items)] + [i for i in range(len(items)) if i not in order]
    for index in sequence:
        name, value = items[index]
        path = root / name
        if isinstance(value, bytes):
            path.write_bytes(value)
        else:
            path.mkdir()
            assert isinstance(value, dict)
            for sub, data in sorted(value.items(), reverse=bool(index % 2)):
                (path / sub).write_bytes(data)


def _probe(engine: Engine, data: Path, out: Path, seed: bytes | None, argv: list[str],
           env: dict[str, str], epoch: int = 946_684_800 * 10**9, tick: int = 1_000_000) -> tuple[str, str]:
    cid = str(cid_of_tree(data))
    spec = JobSpec(module=PROBE_CID, args=("probe.wasm", *argv), env=tuple(sorted(env.items())),
                   inputs=(Input(cid, "/inputs"),), seed=seed, epoch_ns=epoch, tick_ns=tick)
    result = run(spec, PROBE, {"/inputs": str(data)}, out, engine)
    return result.result_cid, (out / "stdout").read_text()


@settings(max_examples=25)
@given(tree=trees, seed=st.one_of(st.none(), seeds), argv=args, env=envs)
def test_same_spec_same_result(engine: Engine, tree: dict[str, object], seed: bytes | None, argv: list[str],
                               env: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        _materialize(tree, data, list(range(len(tree))))
        first = _probe(engine, data, Path(tmp) / "a", seed, argv, env)
        fresh = Engine(Path(tmp) / "cache")  # another engine: nothing shared in memory
        assert _probe(fresh, data, Path(tmp) / "b", seed, argv, env) == first


@settings(max_examples=25)
@given(tree=trees, order=st.permutations(range(6)))
def test_directory_order_does_not_depend_on_creation_order(engine: Engine, tree: dict[str, object],
                                                          order: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "a", Path(tmp) / "b"
        _materialize(tree, a, list(range(6)))
        _materialize(tree, b, list(order))
        first = _probe(engine, a, Path(tmp) / "ra", None, [], {})
        assert _probe(engine, b, Path(tmp) / "rb", None, [], {}) == first
        listed = [line[len("entry "):line.rindex(" ino=")] for line in first[1].splitlines()
                  if line.startswith("entry ")]
        top = [p for p in listed if p.count("/") == 2]
        assert top == sorted(top, key=lambda p: p.encode())


@settings(max_examples=25)
@given(one=seeds, two=seeds)
def test_another_seed_gives_another_random_stream(engine: Engine, one: bytes, two: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()

        def random_line(seed: bytes, out: str) -> str:
            stdout = _probe(engine, data, Path(tmp) / out, seed, [], {})[1]
            return next(line for line in stdout.splitlines() if line.startswith(("random", "rand ")))

        same = random_line(one, "a") == random_line(two, "b")
        assert same == (one == two)


@settings(max_examples=25)
@given(epoch=st.integers(0, 2**62), tick=st.integers(1, 10**12))
def test_clocks_advance_one_tick_per_read(engine: Engine, epoch: int, tick: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        stdout = _probe(engine, data, Path(tmp) / "r", None, [], {}, epoch=epoch, tick=tick)[1]
        reads = [line.split()[1] for line in stdout.splitlines() if line.startswith(("realtime", "monotonic"))]
        expected = [epoch + n * tick for n in range(len(reads))]
        assert reads == [f"{t // 10**9}.{t % 10**9:09d}" for t in expected]


def _nan_module(raw: bytes) -> bytes:
    """A module that loads an f64 and an f32 from a data segment (no constant folding) and
    writes the bits of three arithmetic results to stdout."""
    data = "".join(f"\\{b:02x}" for b in raw)
    return wasmtime.wat2wasm(f"""
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 300) "{data}")
  (func (export "_start")
    (f64.store (i32.const 200) (f64.add (f64.load (i32.const 300)) (f64.const 1)))
    (f64.store (i32.const 208) (f64.mul (f64.load (i32.const 300)) (f64.const -2)))
    (f32.store (i32.const 216) (f32.sub (f32.load (i32.const 308)) (f32.const 3)))
    (i32.store (i32.const 100) (i32.const 200))
    (i32.store (i32.const 104) (i32.const 20))
    (drop (call $w (i32.const 1) (i32.const 100) (i32.const 1) (i32.const 108)))))
""")


@settings(max_examples=30)
@given(payload64=st.integers(1, 2**52 - 1), payload32=st.integers(1, 2**23 - 1), sign=st.booleans())
def test_nan_bits_are_canonical(engine: Engine, payload64: int, payload32: int, sign: bool) -> None:
    # any NaN in, whatever its sign and payload: the canonical quiet NaN out
    raw = struct.pack("<QI", (sign << 63) | (0x7FF << 52) | payload64, (sign << 31) | (0xFF << 23) | payload32)
    wasm = _nan_module(raw)
    with tempfile.TemporaryDirectory() as tmp:
        result = run(JobSpec(module=module_cid(wasm)), wasm, {}, Path(tmp) / "r", engine)
        bits = struct.unpack("<QQI", (result.results_dir / "stdout").read_bytes())
    assert bits == (0x7FF8000000000000, 0x7FF8000000000000, 0x7FC00000)


WORKER = """
import json, sys
from pathlib import Path
from cod import Engine, JobSpec, run
spec = JobSpec.from_json(sys.argv[1]); wasm = Path(sys.argv[2]).read_bytes()
print(run(spec, wasm, json.loads(sys.argv[3]), sys.argv[4], Engine(sys.argv[5])).result_cid)
"""


@settings(max_examples=4)
@given(tree=trees, seed=seeds, argv=args)
def test_separate_processes_agree(tree: dict[str, object], seed: bytes, argv: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        _materialize(tree, data, list(range(len(tree))))
        cid = str(cid_of_tree(data))
        spec = JobSpec(module=PROBE_CID, args=("probe.wasm", *argv), inputs=(Input(cid, "/inputs"),), seed=seed,
                       limits=Limits())
        results = []
        for n in range(2):
            out = subprocess.run(
                [sys.executable, "-c", WORKER, spec.canonical_bytes().decode(), str(VECTORS / "probe.wasm"),
                 json.dumps({"/inputs": str(data)}), str(Path(tmp) / f"r{n}"), str(Path(tmp) / f"cache{n}")],
                cwd=ROOT, capture_output=True, text=True, check=True)
            results.append(out.stdout.strip())
        assert results[0] == results[1] and results[0].startswith("bafy")
        shutil.rmtree(data)
