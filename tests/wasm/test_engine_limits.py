"""Limits of SPEC 5.3: tables, instances and memories, and the host that refuses memory.

The expected exit codes are derived by hand: each module ends with
``proc_exit(result + 1)``, so a grow that returns -1 exits 0 and a grow from size s exits s + 1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import wasmtime

from cod import Engine, JobSpec, Limits, RunResult, module_cid, run
from cod.errors import ModuleError
from cod.jobspec import DEFAULT_TABLE_ELEMENTS
from cod.wasm.binary import table_minimums
from cod.wasm.executor import MAX_TABLES

from ..helpers import ROOT

EXIT = '(import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))'


def _module(body: str) -> bytes:
    return bytes(wasmtime.wat2wasm(f'(module {EXIT} (memory (export "memory") 1) {body})'))


def _run(engine: Engine, tmp: Path, wasm: bytes, **limits: int) -> RunResult:
    spec = JobSpec(module=module_cid(wasm), limits=Limits(**limits))
    return run(spec, wasm, {}, tmp / "results", engine)


def _table_grow(initial: int, delta: int) -> bytes:
    return _module(f"""(table $t {initial} funcref)
        (func (export "_start")
          (call $exit (i32.add (i32.const 1) (table.grow $t (ref.null func) (i32.const {delta})))))""")


def test_table_grow_stops_at_the_limit(engine: Engine, tmp_path: Path) -> None:
    assert _run(engine, tmp_path / "a", _table_grow(1, 9), table_elements=10).exit_code == 2  # 1 -> 10: old size 1
    assert _run(engine, tmp_path / "b", _table_grow(1, 10), table_elements=10).exit_code == 0  # 11 > 10: -1


def test_table_grow_to_two_to_the_31_is_refused_without_allocating(engine: Engine, tmp_path: Path) -> None:
    # before Stage 3 this grow succeeded and took 16 GiB of host memory (8 bytes an element)
    assert DEFAULT_TABLE_ELEMENTS == 1 << 20
    assert _run(engine, tmp_path, _table_grow(1, (1 << 31) - 1)).exit_code == 0


def test_declared_table_over_the_limit_is_refused_before_running(engine: Engine, tmp_path: Path) -> None:
    wasm = _module('(table 11 funcref) (func $init (call $exit (i32.const 5))) (start $init) (func (export "_start"))')
    assert table_minimums(wasm) == [11]
    with pytest.raises(ModuleError, match="table 0 with 11 initial elements, over the limit of 10"):
        _run(engine, tmp_path, wasm, table_elements=10)
    assert list(tmp_path.iterdir()) == []  # nothing ran, nothing staged
    assert _run(engine, tmp_path, wasm, table_elements=11).exit_code == 5  # at the limit it runs


def test_too_many_tables_are_refused(engine: Engine, tmp_path: Path) -> None:
    tables = " ".join("(table 1 funcref)" for _ in range(MAX_TABLES + 1))
    wasm = _module(f'{tables} (func (export "_start"))')
    assert table_minimums(wasm) == [1] * 9
    with pytest.raises(ModuleError, match="9 tables, over cod's limit of 8"):
        _run(engine, tmp_path, wasm)
    ok = _module(" ".join("(table 2 funcref)" for _ in range(MAX_TABLES)) + ' (func (export "_start"))')
    assert _run(engine, tmp_path, ok).exit_code == 0


def test_table_minimums_reads_the_binary_by_hand() -> None:
    # header, then section 4 (table), 10 bytes: 2 tables;
    # funcref min 3 (flag 0); externref min 200 max 300 (flag 1; LEB128 c8 01 = 200, ac 02 = 300)
    wasm = b"\0asm\1\0\0\0" + bytes([4, 10, 2, 0x70, 0, 3, 0x6F, 1, 0xC8, 0x01, 0xAC, 0x02])
    assert table_minimums(wasm) == [3, 200]
    assert table_minimums(b"\0asm\1\0\0\0") == []


def test_element_segment_out_of_the_table_is_a_trap(engine: Engine, tmp_path: Path) -> None:
    # SPEC 6: instantiation writes elements before any code runs; out of bounds is the wasm trap
    wasm = _module('(table 1 funcref) (func $f) (elem (i32.const 5) $f) (func (export "_start"))')
    result = _run(engine, tmp_path, wasm)
    assert (result.exit_code, result.trap) == (134, "table_out_of_bounds")


# -- a host that refuses memory -----------------------------------------------------------------

REFUSING_HOST = textwrap.dedent("""
    import gc, re, resource, sys, tempfile
    from pathlib import Path
    import wasmtime
    from cod import Engine, JobSpec, Limits, module_cid, run
    from cod.errors import CodError
    from cod.wasm import memory

    MODULE = '''(module
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start") (call $exit (i32.add (i32.const 1) (memory.grow (i32.const %d))))))'''
    engine = Engine(None)

    def outcome(pages, limit):
        wasm = wasmtime.wat2wasm(MODULE % pages)
        spec = JobSpec(module=module_cid(wasm), limits=Limits(memory_bytes=limit))
        try:
            return "exit %d" % run(spec, wasm, {}, Path(tempfile.mkdtemp()) / "r", engine).exit_code
        except CodError as exc:
            return type(exc).__name__ + ": " + exc.message

    def status(field):
        return int(re.search(field + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024

    print(outcome(16, 1 << 28))  # warm up: compile, first store
    gc.collect()
    assert memory.live() == 0  # the warm-up's memory is unmapped: VmSize below does not count it
    limit = sys.argv[1]
    if limit == "data":  # the host lets 32 MiB more be committed: a 128 MiB grow is refused
        resource.setrlimit(resource.RLIMIT_DATA, (status("VmData") + (32 << 20), resource.RLIM_INFINITY))
    else:  # 1 GiB more address space: not enough for a memory's 4 GiB reservation
        resource.setrlimit(resource.RLIMIT_AS, (status("VmSize") + (1 << 30), resource.RLIM_INFINITY))
    print(outcome(2048, 1 << 28))  # 128 MiB, allowed by the spec
    print(outcome(2048, 1 << 20))  # over the spec's 1 MiB
""")


def _refusing_host(limit: str) -> list[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", REFUSING_HOST, limit], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmData from /proc")
def test_host_refusing_to_grow_memory_is_indeterminate_and_the_spec_limit_still_gives_minus_one() -> None:
    warm, refused, limited = _refusing_host("data")
    assert warm == "exit 2"  # memory.grow(16) from 1 page returned 1
    # before Stage 3 wasmtime turned the refused mprotect into -1: "exit 0", a wrong result
    assert refused.startswith("Indeterminate: indeterminate outcome (host-memory)")
    assert "refused to commit linear memory from 65536 to 134283264 bytes" in refused
    assert limited == "exit 0"  # the spec's limit is decided before the host is asked: -1


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmSize from /proc")
def test_host_refusing_address_space_at_instantiation_is_indeterminate_not_a_module_error() -> None:
    warm, refused, limited = _refusing_host("as")
    assert warm == "exit 2"
    assert refused.startswith("Indeterminate: indeterminate outcome (host-memory)")
    assert "reserve" in refused
    assert limited.startswith("Indeterminate")  # no memory at all on this host: never a result


TABLE_RSS = textwrap.dedent("""
    import sys
    import wasmtime

    def rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024

    n = int(sys.argv[1])
    wat = f'(module (table $t 1 funcref) (func (export "g") (result i32) (table.grow $t (ref.null func) (i32.const {n}))))'
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    store.set_limits(table_elements=n + 1)
    instance = wasmtime.Instance(store, wasmtime.Module(engine, wasmtime.wat2wasm(wat)), [])
    before = rss()
    assert instance.exports(store)["g"](store) == 1
    print(rss() - before)
""")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc")
def test_a_table_element_costs_the_host_table_element_bytes() -> None:
    """The figure a node counts tables at (SPEC 5.3, cod.limits.TABLE_ELEMENT_BYTES) is what
    wasmtime's table storage takes: a grow of 2^24 funcref elements adds 8 bytes of RSS an element
    (one pointer; 2^24 x 8 = 128 MiB, measured in a fresh process; 2 % for the allocator)."""
    from cod.limits import TABLE_ELEMENT_BYTES

    n = 1 << 24
    out = subprocess.run([sys.executable, "-c", TABLE_RSS, str(n)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    grown = int(out.stdout)
    assert TABLE_ELEMENT_BYTES == 8
    assert 0.98 * n * TABLE_ELEMENT_BYTES <= grown <= 1.02 * n * TABLE_ELEMENT_BYTES, grown
