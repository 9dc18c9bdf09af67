"""A wasm ``start`` function runs under exactly the rules of ``_start`` (SPEC 6).

Each case is written in WAT: the start function runs during instantiation, before the entry
point; before Stage 3 its traps, proc_exit and fuel exhaustion escaped as raw wasmtime or
Python exceptions.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime

from cod import Engine, JobSpec, Limits, RunResult, module_cid, run
from cod.errors import Indeterminate, OutputLimitExceeded

PRELUDE = """
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "from start\\n")
  (func $say (i32.store (i32.const 0) (i32.const 64)) (i32.store (i32.const 4) (i32.const 11))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start") (call $proc_exit (i32.const 99)))  ;; never reached when start ends the run
"""


def _run(engine: Engine, tmp: Path, start_body: str, **spec: object) -> RunResult:
    wasm = bytes(wasmtime.wat2wasm(f"(module {PRELUDE} (func $init {start_body}) (start $init))"))
    job = JobSpec(module=module_cid(wasm), **spec)  # type: ignore[arg-type]
    return run(job, wasm, {}, tmp / "results", engine)


def test_trap_in_start_is_a_result(engine: Engine, tmp_path: Path) -> None:
    result = _run(engine, tmp_path, "(call $say) unreachable")
    assert (result.exit_code, result.trap) == (134, "unreachable")
    assert (result.results_dir / "trap").read_text() == "unreachable\n"
    assert (result.results_dir / "stdout").read_bytes() == b"from start\n"  # host calls work in start


def test_integer_division_by_zero_in_start(engine: Engine, tmp_path: Path) -> None:
    result = _run(engine, tmp_path, "(drop (i32.div_u (i32.const 1) (i32.const 0)))")
    assert (result.exit_code, result.trap) == (134, "integer_division_by_zero")


def test_proc_exit_in_start_is_the_exit_code(engine: Engine, tmp_path: Path) -> None:
    result = _run(engine, tmp_path, "(call $say) (call $proc_exit (i32.const 7))")
    assert (result.exit_code, result.trap) == (7, None)
    assert (result.results_dir / "exitCode").read_text() == "7"
    assert (result.results_dir / "stdout").read_bytes() == b"from start\n"


def test_start_that_returns_goes_on_to_the_entry_point(engine: Engine, tmp_path: Path) -> None:
    result = _run(engine, tmp_path, "(call $say)")
    assert result.exit_code == 99  # _start's proc_exit


def test_out_of_fuel_in_start_is_the_out_of_fuel_trap(engine: Engine, tmp_path: Path) -> None:
    result = _run(engine, tmp_path, "(loop (br 0))", limits=Limits(fuel=100_000))
    assert (result.exit_code, result.trap) == (134, "out_of_fuel")
    assert result.fuel_used == 100_000


def test_stack_overflow_in_start_is_indeterminate(engine: Engine, tmp_path: Path) -> None:
    wasm = bytes(wasmtime.wat2wasm(f"(module {PRELUDE} (func $deep (call $deep)) (start $deep))"))
    with pytest.raises(Indeterminate, match="stack-overflow"):
        run(JobSpec(module=module_cid(wasm)), wasm, {}, tmp_path / "results", engine)
    assert not (tmp_path / "results").exists()
    assert list(tmp_path.iterdir()) == []  # no staging left behind


def test_timeout_in_start_is_indeterminate(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(Indeterminate, match="timeout"):
        _run(engine, tmp_path, "(loop (br 0))", limits=Limits(fuel=10**15, timeout_ms=100))
    assert list(tmp_path.iterdir()) == []


def test_caps_in_start_end_the_run_without_a_result(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(OutputLimitExceeded, match="stdout"):
        _run(engine, tmp_path, "(call $say)", limits=Limits(stdout_bytes=4))
    assert list(tmp_path.iterdir()) == []


def test_fuel_used_counts_the_start_function(engine: Engine, tmp_path: Path) -> None:
    # wasmtime charges one unit per operator except nop, drop, block, loop, end and a few
    # others (its fuel accounting): each (drop (i32.const 0)) pair costs exactly 1 unit.
    pairs = " ".join(["(drop (i32.const 0))"] * 100)
    plain = _run(engine, tmp_path / "a", "")
    busy = _run(engine, tmp_path / "b", pairs)
    assert plain.exit_code == busy.exit_code == 99
    assert busy.fuel_used - plain.fuel_used == 100
