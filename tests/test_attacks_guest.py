"""Red-team attacks by a hostile guest (Stage 3): host work the guest gets without paying fuel.

Fuel meters wasm instructions only (SPEC 5); a host function's work is not charged. A guest can
therefore buy seconds of host CPU for a handful of fuel, and repeat that until the wall-clock
safety net fires instead of the deterministic fuel cap. Measured on the merge (2 cores, shared):
one ``poll_oneoff`` with 3,000,000 subscriptions took 4.6 s of host time and the whole job used
6 fuel; one ``random_get`` of 200,000,000 bytes took 0.37 s and the job used 4 fuel.

The expected bound in each test is a hand-derived floor, not a value read from the code: a host
function that walks n subscriptions or produces n bytes must charge at least n // 1024 fuel
(any per-unit price >= 1/1024 would do), while the guest itself executes fewer than 10 wasm
instructions (a few constants, one call, a drop), i.e. fewer than 10 fuel.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime

from cod import Engine, JobSpec, RunResult, module_cid, run

_IMPORTS = """
 (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "random_get" (func $rnd (param i32 i32) (result i32)))"""
_PAGES = 400  # 25 MiB: room for the subscriptions (48 bytes each) plus the events (32 bytes each)
_SUBSCRIPTIONS = 200_000  # 16 MB of subscriptions + events: fits in 400 pages; ~0.3 s of host time
_RANDOM_BYTES = 20_000_000


def _run_call(engine: Engine, tmp: Path, call: str) -> RunResult:
    wat = f'(module {_IMPORTS} (memory (export "memory") {_PAGES}) (func (export "_start") (drop (call {call}))))'
    wasm = bytes(wasmtime.wat2wasm(wat))
    return run(JobSpec(module=module_cid(wasm)), wasm, {}, tmp / "results", engine)


@pytest.mark.xfail(strict=True, reason=(
    "hole: poll_oneoff walks every subscription in host code without charging fuel, so a guest gets "
    "O(nsubscriptions) host work (4.6 s for 3M) for ~6 fuel and can loop until the wall-clock timeout; "
    "fix needs a per-subscription fuel charge (or a cap on nsubscriptions) defined in SPEC 2.3/5, which "
    "changes fuel_used of existing vectors"))
def test_poll_oneoff_with_many_subscriptions_is_charged_fuel(engine: Engine, tmp_path: Path) -> None:
    # all-zero subscriptions are clock subscriptions on clock 0 (realtime) with timeout 0: valid, cheap
    result = _run_call(engine, tmp_path, f"$poll (i32.const 0) (i32.const {_SUBSCRIPTIONS * 48}) "
                                         f"(i32.const {_SUBSCRIPTIONS}) (i32.const {_SUBSCRIPTIONS * 80})")
    assert result.exit_code == 0 and result.trap is None  # the call itself succeeded
    assert result.fuel_used >= _SUBSCRIPTIONS // 1024


@pytest.mark.xfail(strict=True, reason=(
    "hole: random_get generates any number of bytes in host code without charging fuel (200 MB for 4 fuel, "
    "0.37 s); fix needs a per-byte fuel charge for host-produced bytes defined in SPEC 5, which changes "
    "fuel_used of existing vectors"))
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
