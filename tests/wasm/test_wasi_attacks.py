"""Red-team attacks by a hostile guest (Stage 3): host work the guest got without paying fuel.

Fuel metered wasm instructions only; a host function's work was not charged. A guest could
therefore buy seconds of host CPU for a handful of fuel, and repeat that until the wall-clock
safety net fired instead of the deterministic fuel cap. Measured before the fix (2 cores,
shared): one ``poll_oneoff`` with 3,000,000 subscriptions took 4.6 s of host time and the whole
job used 6 fuel; one ``random_get`` of 200,000,000 bytes took 0.37 s and used 4 fuel. SPEC 5.3
now prices host work (1 fuel a random byte, 1000 a subscription, 1000 a listed entry).

The floor in the first two tests is hand-derived, not read from the code: a host function that
walks n subscriptions or produces n bytes must charge at least n // 1024 fuel, while the guest
itself executes fewer than 10 wasm instructions (a few constants, one call, a drop). The exact
prices are checked by differences of two runs that differ only in n.
"""

from __future__ import annotations

from pathlib import Path

import wasmtime

from cod import Engine, JobSpec, Limits, RunResult, module_cid, run

_IMPORTS = """
 (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "random_get" (func $rnd (param i32 i32) (result i32)))"""
_PAGES = 400  # 25 MiB: room for the subscriptions (48 bytes each) plus the events (32 bytes each)
_SUBSCRIPTIONS = 200_000  # 16 MB of subscriptions + events: fits in 400 pages; ~0.3 s of host time
_RANDOM_BYTES = 20_000_000


def _run_call(engine: Engine, tmp: Path, call: str, fuel: int | None = None) -> RunResult:
    wat = f'(module {_IMPORTS} (memory (export "memory") {_PAGES}) (func (export "_start") (drop (call {call}))))'
    wasm = bytes(wasmtime.wat2wasm(wat))
    spec = JobSpec(module=module_cid(wasm), limits=Limits(fuel=fuel) if fuel else Limits())
    out = tmp / f"results-{len(list(tmp.iterdir()))}"
    return run(spec, wasm, {}, out, engine)


def test_poll_oneoff_with_many_subscriptions_is_charged_fuel(engine: Engine, tmp_path: Path) -> None:
    # all-zero subscriptions are clock subscriptions on clock 0 (realtime) with timeout 0: valid, cheap
    result = _run_call(engine, tmp_path, f"$poll (i32.const 0) (i32.const {_SUBSCRIPTIONS * 48}) "
                                         f"(i32.const {_SUBSCRIPTIONS}) (i32.const {_SUBSCRIPTIONS * 80})")
    assert result.exit_code == 0 and result.trap is None  # the call itself succeeded
    assert result.fuel_used >= _SUBSCRIPTIONS // 1024


def test_random_get_of_many_bytes_is_charged_fuel(engine: Engine, tmp_path: Path) -> None:
    result = _run_call(engine, tmp_path, f"$rnd (i32.const 0) (i32.const {_RANDOM_BYTES})")
    assert result.exit_code == 0 and result.trap is None
    assert result.fuel_used >= _RANDOM_BYTES // 1024


def test_the_guest_alone_uses_under_ten_fuel(engine: Engine, tmp_path: Path) -> None:
    # the control for the two tests above: with a zero-length request the host does no work, and the
    # fuel used is the guest's own handful of instructions, so the floors above can only be met by a charge
    result = _run_call(engine, tmp_path, "$rnd (i32.const 0) (i32.const 0)")
    assert result.exit_code == 0 and result.trap is None
    assert 0 < result.fuel_used < 10


def test_host_work_is_priced_exactly_as_spec_5_3_says(engine: Engine, tmp_path: Path) -> None:
    # two runs differ only in n: the difference of fuel_used is the price of the host work alone
    def poll(n: int) -> int:
        return _run_call(engine, tmp_path, f"$poll (i32.const 0) (i32.const {n * 48}) (i32.const {n}) "
                                           f"(i32.const {n * 80})").fuel_used

    def rnd(n: int) -> int:
        return _run_call(engine, tmp_path, f"$rnd (i32.const 0) (i32.const {n})").fuel_used

    assert poll(7) - poll(2) == 5 * 1000
    assert rnd(5000) - rnd(1000) == 4000


def test_host_work_past_the_fuel_limit_is_the_out_of_fuel_trap(engine: Engine, tmp_path: Path) -> None:
    """Work the run cannot pay for is not done: the store is emptied and the run ends exactly as
    a guest that ran out of fuel (exit 134, trap out_of_fuel, all fuel used), on any host."""
    first = _run_call(engine, tmp_path, f"$rnd (i32.const 0) (i32.const {_RANDOM_BYTES})", fuel=1000)
    again = _run_call(engine, tmp_path, f"$rnd (i32.const 0) (i32.const {_RANDOM_BYTES})", fuel=1000)
    assert (first.exit_code, first.trap, first.fuel_used) == (134, "out_of_fuel", 1000)
    assert first.result_cid == again.result_cid
    polled = _run_call(engine, tmp_path, "$poll (i32.const 0) (i32.const 480) (i32.const 10) (i32.const 960)",
                       fuel=5000)
    assert (polled.exit_code, polled.trap, polled.fuel_used) == (134, "out_of_fuel", 5000)
