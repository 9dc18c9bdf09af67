"""Traces and segments (SPEC 11.6): a whole run of the instrumented module with a state hash at
every checkpoint, and one segment of it re-run from a snapshot."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..jobspec import JobSpec
from ..wasm.engine import Engine
from . import state as states
from .errors import CheckpointError
from .machine import Machine
from .transform import DEFAULT_STRIDE

FINAL = -1
"""In ``keep``: retain the snapshot of the final state too (``Trace.final_snapshot``)."""


@dataclass
class Trace:
    """A run of the instrumented module, checkpointed every ``interval`` fuel.

    ``checkpoints``: (index, fuel consumed, state hash hex) in order, index from 0; checkpoint
    i falls at the first hook call at or after fuel i-th boundary (see :func:`trace`).
    """

    interval: int
    checkpoints: list[tuple[int, int, str]]
    result_cid: str
    exit_code: int
    trap: str | None
    fuel_used: int
    final_hash: str
    snapshots: dict[int, bytes] = field(default_factory=dict, repr=False)
    final_snapshot: bytes | None = field(default=None, repr=False)


def trace(spec: JobSpec, wasm: bytes, sources: Mapping[str, str | os.PathLike[str]], engine: Engine, interval: int,
          modules: Mapping[str, bytes] | None = None, fault: Any = None, keep: set[int] | None = None,
          stride: int = DEFAULT_STRIDE) -> Trace:
    """Run ``spec`` (module bytes ``wasm``, inputs ``sources`` as :func:`cod.wasm.executor.run`
    takes them) under the checkpoint transform, with a checkpoint at the first hook call whose
    fuel consumed is at or past the next boundary: 0 first, then after a checkpoint at fuel f,
    (f // interval + 1) * interval. ``keep``: the checkpoint indices whose snapshots are
    retained (FINAL: the final state's). ``stride``: the host sees the first hook call and then
    every stride-th (SPEC 11.6); it is a global of the state, so a resumed segment keeps it.
    Raises CheckpointError, and what a run raises."""
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise CheckpointError(f"a checkpoint interval is a positive number of fuel units, not {interval!r}")
    wanted = keep or set()
    boundary = [0]
    machine = Machine(spec, wasm, sources, engine, modules, fault, stride=stride)
    machine.due = lambda fuel: fuel >= boundary[0]
    points: list[tuple[int, int, str]] = []
    snapshots: dict[int, bytes] = {}
    with machine:
        while True:
            ending = machine.run()
            if ending is not None:
                break
            fuel = machine.unwound_at
            assert fuel is not None
            current = machine.capture(fuel, machine.asyncify)
            index = len(points)
            points.append((index, fuel, states.state_hash(current)))
            if index in wanted:
                snapshots[index] = states.encode(current)
            boundary[0] = (fuel // interval + 1) * interval
            machine.rewind(current.asyncify, machine.limit - fuel)
        fuel_used = machine.consumed()
        final = machine.capture(fuel_used, b"")
        result_cid = machine.finish(ending)
    return Trace(interval=interval, checkpoints=points, result_cid=result_cid, exit_code=ending.exit_code,
                 trap=ending.trap, fuel_used=fuel_used, final_hash=states.state_hash(final), snapshots=snapshots,
                 final_snapshot=states.encode(final) if FINAL in wanted else None)


def resume(spec: JobSpec, wasm: bytes, sources: Mapping[str, str | os.PathLike[str]], engine: Engine,
           snapshot: bytes, until_fuel: int, modules: Mapping[str, bytes] | None = None,
           fault: Any = None) -> tuple[str, int]:
    """Restore a fresh instance from ``snapshot`` and run to the first hook call after the
    snapshot's own whose fuel consumed is at or past ``until_fuel``: (the state hash there, or
    of the final state when the run ends first; the fuel the segment spent)."""
    if isinstance(until_fuel, bool) or not isinstance(until_fuel, int) or until_fuel < 0:
        raise CheckpointError(f"until_fuel is a fuel count, not {until_fuel!r}")
    start = states.decode(snapshot)
    if not start.asyncify:
        raise CheckpointError("the snapshot is of a final state: there is nothing to resume")
    machine = Machine(spec, wasm, sources, engine, modules, fault, base=False)
    with machine:
        machine.restore(start)
        machine.due = lambda fuel: fuel >= until_fuel
        ending = machine.run()
        if ending is None:
            fuel = machine.unwound_at
            assert fuel is not None
            reached = machine.capture(fuel, machine.asyncify)
        else:
            fuel = machine.consumed()
            reached = machine.capture(fuel, b"")
    return states.state_hash(reached), fuel - start.fuel
