"""The WASI layer and the executor, function by function, with small hand-written modules."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import wasmtime

from cod import Engine, JobSpec, Limits, RunResult, module_cid, run
from cod.errors import ImportRefused, Indeterminate, ModuleError
from cod.wasm import abi
from cod.wasm.entropy import RandomStream

PRELUDE = """
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  ;; write(ptr, len) to stdout through an iovec at 0
  (func $out (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
"""


def _run(engine: Engine, tmp: Path, body: str, imports: str = "", **spec: object) -> RunResult:
    wasm = wasmtime.wat2wasm(f"(module {imports} {PRELUDE} {body})")
    job = JobSpec(module=module_cid(wasm), **spec)  # type: ignore[arg-type]
    return run(job, wasm, {}, tmp / "results", engine)


def _stdout(result: RunResult) -> bytes:
    return (result.results_dir / "stdout").read_bytes()


def test_clocks_tick_once_per_read(engine: Engine, tmp_path: Path) -> None:
    imports = """(import "wasi_snapshot_preview1" "clock_time_get" (func $now (param i32 i64 i32) (result i32)))
                 (import "wasi_snapshot_preview1" "clock_res_get" (func $res (param i32 i32) (result i32)))"""
    body = """(func (export "_start")
        (drop (call $now (i32.const 0) (i64.const 0) (i32.const 100)))
        (drop (call $now (i32.const 1) (i64.const 1) (i32.const 108)))
        (drop (call $now (i32.const 2) (i64.const 0) (i32.const 116)))
        (drop (call $res (i32.const 1) (i32.const 124)))
        (i32.store (i32.const 132) (call $now (i32.const 9) (i64.const 0) (i32.const 200)))
        (call $out (i32.const 100) (i32.const 36)))"""
    result = _run(engine, tmp_path, body, imports, epoch_ns=5_000, tick_ns=7)
    t0, t1, t2, res, bad = struct.unpack("<QQQQI", _stdout(result))
    assert (t0, t1, t2, res) == (5_000, 5_007, 5_014, 7)
    assert bad == abi.EINVAL


def test_poll_oneoff_sleeps_on_the_virtual_clock(engine: Engine, tmp_path: Path) -> None:
    imports = """(import "wasi_snapshot_preview1" "clock_time_get" (func $now (param i32 i64 i32) (result i32)))
                 (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))"""
    # subscription at 300: userdata 42, tag clock, id monotonic, timeout 3 s relative
    body = """(func (export "_start")
        (drop (call $now (i32.const 1) (i64.const 0) (i32.const 100)))
        (i64.store (i32.const 300) (i64.const 42))
        (i32.store8 (i32.const 308) (i32.const 0))
        (i32.store (i32.const 316) (i32.const 1))
        (i64.store (i32.const 324) (i64.const 3000000000))
        (i32.store (i32.const 120) (call $poll (i32.const 300) (i32.const 400) (i32.const 1) (i32.const 116)))
        (drop (call $now (i32.const 1) (i64.const 0) (i32.const 108)))
        (call $out (i32.const 100) (i32.const 24))
        (call $out (i32.const 400) (i32.const 16)))"""
    result = _run(engine, tmp_path, body, imports, epoch_ns=0, tick_ns=1)
    before, after, nevents, errno, userdata, event_errno, event_type = struct.unpack("<QQIIQHBxxxxx",
                                                                                     _stdout(result))
    assert (errno, nevents, userdata, event_errno, event_type) == (0, 1, 42, 0, abi.EVENTTYPE_CLOCK)
    assert after - before == 1 + 3_000_000_000  # one tick for the read, then the whole sleep


def test_random_get_is_the_seeded_stream(engine: Engine, tmp_path: Path) -> None:
    imports = '(import "wasi_snapshot_preview1" "random_get" (func $rnd (param i32 i32) (result i32)))'
    body = """(func (export "_start")
        (drop (call $rnd (i32.const 100) (i32.const 10)))
        (drop (call $rnd (i32.const 110) (i32.const 22)))
        (call $out (i32.const 100) (i32.const 32)))"""
    seed = bytes(range(32))
    result = _run(engine, tmp_path, body, imports, seed=seed)
    assert _stdout(result) == RandomStream(seed).read(32)


def test_args_and_env_are_exactly_the_specs(engine: Engine, tmp_path: Path) -> None:
    imports = """(import "wasi_snapshot_preview1" "args_sizes_get" (func $asz (param i32 i32) (result i32)))
                 (import "wasi_snapshot_preview1" "args_get" (func $args (param i32 i32) (result i32)))
                 (import "wasi_snapshot_preview1" "environ_sizes_get" (func $esz (param i32 i32) (result i32)))
                 (import "wasi_snapshot_preview1" "environ_get" (func $env (param i32 i32) (result i32)))"""
    body = """(func (export "_start")
        (drop (call $asz (i32.const 100) (i32.const 104)))
        (drop (call $args (i32.const 200) (i32.const 1000)))
        (call $out (i32.const 1000) (i32.load (i32.const 104)))
        (drop (call $esz (i32.const 100) (i32.const 104)))
        (drop (call $env (i32.const 200) (i32.const 2000)))
        (call $out (i32.const 2000) (i32.load (i32.const 104))))"""
    result = _run(engine, tmp_path, body, imports, args=("prog", "x y"), env=(("A", "1"), ("B", "=2")))
    assert _stdout(result) == b"prog\x00x y\x00A=1\x00B==2\x00"


def test_out_of_bounds_pointers_get_efault(engine: Engine, tmp_path: Path) -> None:
    body = """(func (export "_start")
        (i32.store (i32.const 0) (i32.const 65530))
        (i32.store (i32.const 4) (i32.const 100))
        (call $proc_exit (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))"""
    assert _run(engine, tmp_path, body).exit_code == abi.EFAULT


def test_sockets_do_not_exist(engine: Engine, tmp_path: Path) -> None:
    # wasi-testsuite: an open fd that is not a socket answers ENOTSOCK (57), a closed one EBADF (8)
    imports = '(import "wasi_snapshot_preview1" "sock_shutdown" (func $shut (param i32 i32) (result i32)))'
    body = """(func (export "_start") (call $proc_exit (i32.add
        (i32.mul (call $shut (i32.const 1) (i32.const 0)) (i32.const 100)) (call $shut (i32.const 77) (i32.const 0)))))"""
    assert _run(engine, tmp_path, body, imports).exit_code == 57 * 100 + 8


def test_trap_is_a_deterministic_result(engine: Engine, tmp_path: Path) -> None:
    result = _run(engine, tmp_path, '(func (export "_start") unreachable)')
    assert (result.exit_code, result.trap) == (134, "unreachable")
    assert (result.results_dir / "trap").read_text() == "unreachable\n"
    assert (result.results_dir / "exitCode").read_text() == "134"


def test_memory_grow_fails_at_the_limit(engine: Engine, tmp_path: Path) -> None:
    body = """(func (export "_start")
        (call $proc_exit (i32.add (i32.const 10) (memory.grow (i32.const 16)))))"""
    limits = Limits(memory_bytes=16 * 65536)  # 1 page used, 16 more would make 17
    assert _run(engine, tmp_path, body, limits=limits).exit_code == 9  # memory.grow returned -1
    assert _run(engine, tmp_path / "b", body).exit_code == 11  # under the default limit it returns 1


def test_declared_memory_over_the_limit_is_refused(engine: Engine, tmp_path: Path) -> None:
    wasm = wasmtime.wat2wasm('(module (memory (export "memory") 100) (func (export "_start")))')
    spec = JobSpec(module=module_cid(wasm), limits=Limits(memory_bytes=65536))
    with pytest.raises(ModuleError, match="initial memory"):
        run(spec, wasm, {}, tmp_path / "r", engine)
    assert not (tmp_path / "r").exists()


def test_stack_overflow_is_indeterminate(engine: Engine, tmp_path: Path) -> None:
    body = '(func $f (export "_start") (call $f))'
    with pytest.raises(Indeterminate, match="stack-overflow"):
        _run(engine, tmp_path, body)
    assert not (tmp_path / "results").exists()


def test_wall_clock_timeout_is_indeterminate(engine: Engine, tmp_path: Path) -> None:
    body = '(func (export "_start") (loop (br 0)))'
    with pytest.raises(Indeterminate, match="timeout"):
        _run(engine, tmp_path, body, limits=Limits(fuel=10**15, timeout_ms=200))
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("wat", "error", "text"),
    [
        ('(import "env" "f" (func))', ImportRefused, "env::f"),
        ('(import "wasi_snapshot_preview1" "fd_write" (func (param i32)))', ImportRefused, "signature"),
    ],
)
def test_imports_are_checked_before_running(engine: Engine, tmp_path: Path, wat: str, error: type,
                                            text: str) -> None:
    wasm = wasmtime.wat2wasm(f'(module {wat} (memory (export "memory") 1) (func (export "_start")))')
    with pytest.raises(error, match=text):
        run(JobSpec(module=module_cid(wasm)), wasm, {}, tmp_path / "r", engine)


def test_imported_memory_is_refused(engine: Engine, tmp_path: Path) -> None:
    wasm = wasmtime.wat2wasm('(module (import "wasi_snapshot_preview1" "memory" (memory 1))'
                             ' (export "memory" (memory 0)) (func (export "_start")))')
    with pytest.raises(ImportRefused, match="memory"):
        run(JobSpec(module=module_cid(wasm)), wasm, {}, tmp_path / "r", engine)


def test_shared_memory_is_refused(engine: Engine, tmp_path: Path) -> None:
    wasm = wasmtime.wat2wasm('(module (memory (export "memory") 1 1 shared) (func (export "_start")))')
    with pytest.raises(ModuleError, match="not a valid WebAssembly module"):
        run(JobSpec(module=module_cid(wasm)), wasm, {}, tmp_path / "r", engine)


@pytest.mark.parametrize(
    ("wasm", "text"),
    [
        (b"#!/bin/sh\necho hi\n", "no \\\\0asm magic"),
        (b"\x00asm\x0d\x00\x01\x00", "component"),
        (b"\x00asm\x01\x00\x00\x00\x01\xff", "not a valid WebAssembly module"),
    ],
)
def test_bad_modules_get_one_clear_error(engine: Engine, tmp_path: Path, wasm: bytes, text: str) -> None:
    with pytest.raises(ModuleError, match=text):
        run(JobSpec(module=module_cid(wasm)), wasm, {}, tmp_path / "r", engine)


def test_missing_entry_point_and_memory(engine: Engine, tmp_path: Path) -> None:
    wasm = wasmtime.wat2wasm('(module (memory (export "memory") 1) (func (export "main")))')
    with pytest.raises(ModuleError, match="_start"):
        run(JobSpec(module=module_cid(wasm)), wasm, {}, tmp_path / "r", engine)
    wasm = wasmtime.wat2wasm('(module (func (export "_start")))')
    with pytest.raises(ModuleError, match="memory"):
        run(JobSpec(module=module_cid(wasm)), wasm, {}, tmp_path / "r", engine)


def test_module_bytes_must_match_the_spec(engine: Engine, tmp_path: Path) -> None:
    wasm = wasmtime.wat2wasm('(module (memory (export "memory") 1) (func (export "_start")))')
    other = JobSpec(module="bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e")
    with pytest.raises(ModuleError, match="hash to"):
        run(other, wasm, {}, tmp_path / "r", engine)


def test_concurrent_runs_keep_their_own_exits(engine: Engine, tmp_path: Path) -> None:
    # proc_exit travels as an exception through wasmtime: each thread must get its own back
    from concurrent.futures import ThreadPoolExecutor

    imports = '(import "wasi_snapshot_preview1" "args_sizes_get" (func $asz (param i32 i32) (result i32)))'
    body = """(func (export "_start")
        (drop (call $asz (i32.const 100) (i32.const 104)))
        (call $proc_exit (i32.load (i32.const 100))))"""
    wasm = wasmtime.wat2wasm(f"(module {imports} {PRELUDE} {body})")

    def one(n: int) -> int:
        spec = JobSpec(module=module_cid(wasm), args=tuple(f"a{i}" for i in range(1 + n % 5)))
        return run(spec, wasm, {}, tmp_path / f"r{n}", engine).exit_code

    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(one, range(60)))
    assert codes == [1 + n % 5 for n in range(60)]


def test_created_entries_are_capped(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cod.wasm import vfs

    monkeypatch.setattr(vfs, "MAX_OUTPUT_ENTRIES", 5)
    imports = """(import "wasi_snapshot_preview1" "path_open"
                   (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))"""
    # create /outputs/f0 .. /outputs/f9 (fd 3 is the only preopen); exit with the first errno
    body = """(data (i32.const 300) "f0")
      (func (export "_start") (local $i i32) (local $err i32)
        (loop $next
          (i32.store8 (i32.const 301) (i32.add (i32.const 48) (local.get $i)))
          (local.set $err (call $open (i32.const 3) (i32.const 0) (i32.const 300) (i32.const 2) (i32.const 1)
                                      (i64.const 66) (i64.const 0) (i32.const 0) (i32.const 400)))
          (if (local.get $err) (then (call $proc_exit (i32.add (i32.mul (local.get $i) (i32.const 100))
                                                                (local.get $err)))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $next (i32.lt_u (local.get $i) (i32.const 10)))))"""
    result = _run(engine, tmp_path, body, imports)
    assert result.exit_code == 5 * 100 + abi.ENOSPC  # the sixth creation fails, deterministically
    assert sorted(p.name for p in (result.results_dir / "outputs").iterdir()) == [f"f{i}" for i in range(5)]
