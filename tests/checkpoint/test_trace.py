"""Traces and segments (SPEC 11.6) on real vectors: the same spec gives the same hashes, the
snapshot of checkpoint i resumed to checkpoint i+1 gives exactly its traced hash, and the traced
run's result is the plain run's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cod import Engine, JobSpec, module_cid, run
from cod.checkpoint import FINAL, CheckpointError, Trace, available, resume, snapshot_hash, trace
from cod.checkpoint.state import decode

from ..helpers import VECTORS, load_vector
from .test_state import TINY

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))

INTERVALS = {"wordcount": 20_000, "wordfreq": 50_000, "fsprog": 100_000, "probe": 20_000}
"""wordcount (C, reads inputs), wordfreq (Rust), fsprog (C: files and fds of its own under /outputs),
probe (C: clocks, random bytes, a stat listing)."""
STRIDE = 64  # small jobs: the host sees every 64th hook call


def _job(name: str) -> tuple[JobSpec, bytes, dict[str, str]]:
    vector = load_vector(name)
    spec = JobSpec.from_dict(vector["spec"])
    sources = {item.path: str(VECTORS / vector["inputs"][item.path]) for item in spec.inputs}
    return spec, (VECTORS / vector["module"]).read_bytes(), sources


_TRACES: dict[str, tuple[Trace, Any]] = {}


def _traced(name: str, engine: Engine) -> tuple[Trace, Any]:
    if name not in _TRACES:
        spec, wasm, sources = _job(name)
        _TRACES[name] = (trace(spec, wasm, sources, engine, INTERVALS[name], keep=set(range(1000)) | {FINAL},
                                 stride=STRIDE),
                         (spec, wasm, sources))
    return _TRACES[name]


@pytest.mark.parametrize("name", sorted(INTERVALS))
def test_resumed_segments_reach_the_traced_hashes(name: str, engine: Engine) -> None:
    traced, (spec, wasm, sources) = _traced(name, engine)
    points = traced.checkpoints
    assert len(points) >= 4
    assert [i for i, _, _ in points] == list(range(len(points)))
    assert len({h for _, _, h in points}) == len(points)  # the state moves on
    for (_, before, _), (_, fuel, _) in zip(points, points[1:]):  # each at the first hook call due
        assert fuel >= (before // traced.interval + 1) * traced.interval
    # probe: every segment, so that some start with random bytes and clock readings behind them
    every = range(len(points) - 1) if name == "probe" else {0, 1, len(points) // 2, len(points) - 2}
    for i in sorted(every):
        index, fuel, digest = points[i]
        snapshot = traced.snapshots[index]
        assert snapshot_hash(snapshot) == digest
        reached, spent = resume(spec, wasm, sources, engine, snapshot, points[i + 1][1])
        assert reached == points[i + 1][2], f"{name}: checkpoint {i} resumed"
        assert spent == points[i + 1][1] - fuel
    # the last checkpoint resumed past the end reaches the final state
    index, fuel, _ = points[-1]
    reached, spent = resume(spec, wasm, sources, engine, traced.snapshots[index], traced.fuel_used + 1)
    assert reached == traced.final_hash
    assert spent == traced.fuel_used - fuel


@pytest.mark.parametrize("name", sorted(INTERVALS))
def test_the_traced_result_is_the_plain_result(name: str, engine: Engine, tmp_path: Path) -> None:
    traced, (spec, wasm, sources) = _traced(name, engine)
    plain = run(spec, wasm, sources, tmp_path / "plain", engine)
    assert (traced.result_cid, traced.exit_code, traced.trap) == (plain.result_cid, plain.exit_code, plain.trap)
    assert traced.result_cid == load_vector(name)["expect"]["result_cid"]
    assert traced.final_snapshot is not None
    final = decode(traced.final_snapshot)
    assert final.stdout == (tmp_path / "plain" / "stdout").read_bytes()
    assert final.fuel == traced.fuel_used > plain.fuel_used  # the instrumented module's own fuel


def test_the_same_spec_gives_the_same_hashes(engine: Engine) -> None:
    first, (spec, wasm, sources) = _traced("wordcount", engine)
    again = trace(spec, wasm, sources, engine, INTERVALS["wordcount"], stride=STRIDE)
    assert again.checkpoints == first.checkpoints
    assert (again.final_hash, again.fuel_used, again.result_cid) == (first.final_hash, first.fuel_used,
                                                                     first.result_cid)
    assert again.snapshots == {}  # none kept unless asked
    coarser = trace(spec, wasm, sources, engine, 2 * INTERVALS["wordcount"], stride=STRIDE)
    assert coarser.final_hash == first.final_hash  # checkpoints do not change the run
    # a checkpoint at the same hook call is the same state, whatever else was checkpointed
    assert len(coarser.checkpoints) < len(first.checkpoints)
    assert {p[2] for p in coarser.checkpoints} <= {p[2] for p in first.checkpoints}


def test_refusals(engine: Engine) -> None:
    traced, (spec, wasm, sources) = _traced("wordcount", engine)
    with pytest.raises(CheckpointError, match="interval"):
        trace(spec, wasm, sources, engine, 0)
    assert traced.final_snapshot is not None
    with pytest.raises(CheckpointError, match="final state"):
        resume(spec, wasm, sources, engine, traced.final_snapshot, 10**6)
    other, _ = _traced("wordfreq", engine)
    with pytest.raises(CheckpointError):  # a snapshot of another module
        resume(spec, wasm, sources, engine, other.snapshots[1], 10**6)


def test_the_host_sees_the_first_hook_call_then_every_stride_th(engine: Engine) -> None:
    spec = JobSpec(module=module_cid(TINY))
    every = trace(spec, TINY, {}, engine, 1, stride=1, keep=set(range(12)))
    assert len(every.checkpoints) == 12  # the entry, 10 loop headers, the end of the body
    fourth = trace(spec, TINY, {}, engine, 1, stride=4)
    assert len(fourth.checkpoints) == 3  # hook calls 1, 5 and 9
    assert fourth.final_hash != every.final_hash  # the stride and the countdown are state
    for i in range(11):  # every segment of the tiny run
        reached, _ = resume(spec, TINY, {}, engine, every.snapshots[i], every.checkpoints[i + 1][1])
        assert reached == every.checkpoints[i + 1][2]
    reached, _ = resume(spec, TINY, {}, engine, every.snapshots[11], every.fuel_used + 1)
    assert reached == every.final_hash
    with pytest.raises(CheckpointError, match="stride"):
        trace(spec, TINY, {}, engine, 1, stride=0)
