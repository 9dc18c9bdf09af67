"""How devstack liars lie (SPEC 11.8): the modes, the key, collusion, and real nodes signing each lie.

Expected lies are made apart from the nodes: the key by hashlib from the SPEC's words, the
faulted runs by the executor on this machine, the late lie by appending its line by hand.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from cod import Engine, JobSpec, cid_of_tree, run
from cod.errors import UsageError
from cod.local import PreparedJob
from cod.node import liar
from cod.node.app import Node
from cod.node.server import start_node
from cod.wasm.fault import Fault
from verifier import Records, verify

from ..helpers import VECTORS, load_vector

PROBE = load_vector("probe")
PROBE_CALLS = 9  # probe.c: 7 clock reads, 1 random_get, 1 time(NULL) (see tests/wasm/test_fault.py)


def _probe() -> PreparedJob:
    spec = JobSpec.from_dict(PROBE["spec"])
    sources = {item.path: str(VECTORS / PROBE["inputs"][item.path]) for item in spec.inputs}
    return PreparedJob(spec, (VECTORS / PROBE["module"]).read_bytes(), sources)


def _spec_key(seed: bytes, job_cid: str) -> int:
    return int.from_bytes(hashlib.sha256(b"cod-devstack-lie\x00" + seed + job_cid.encode("utf-8")).digest(), "big")


def test_modes_and_the_old_flag() -> None:
    assert [liar.mode_of(c) for c in (None, False, True, "late", "early", "random")] == [
        None, None, "late", "late", "early", "random"]
    with pytest.raises(UsageError) as info:
        liar.mode_of("sometimes")
    assert "late, early, random" in (info.value.hint or "")


def test_the_fault_of_each_mode_is_a_pure_function_of_mode_seed_job_and_calls() -> None:
    job = PROBE["job_cid"]
    assert liar.fault_for(None, b"", job, 9) is None and liar.fault_for("late", b"", job, 9) is None
    assert liar.fault_for("early", b"s", job, 0) == Fault(0) == liar.fault_for("early", b"t", job, 9)
    assert liar.key(b"s", job) == _spec_key(b"s", job)
    assert liar.fault_for("random", b"s", job, 9) == Fault(_spec_key(b"s", job) % 9)
    assert liar.fault_for("random", b"s", job, 9) == liar.fault_for("random", b"s", job, 9)
    assert liar.fault_for("random", b"s", job, 0) is None  # nothing to fault: the late lie
    points = {liar.fault_for("random", bytes([n]), job, 1000).at for n in range(20)}  # type: ignore[union-attr]
    assert len(points) > 10  # other seeds, other points
    assert liar.late_line(b"") == b"(a lie)\n" and liar.late_line(b"a") != liar.late_line(b"b")


async def test_a_node_keeps_the_old_cheat_flag(tmp_path: Path) -> None:
    made: list[Node] = []

    def node(name: str, **options: Any) -> Node:
        made.append(Node(tmp_path / name, **options))
        return made[-1]

    try:
        assert node("a", cheat=True).cheat == "late"
        assert node("b").cheat is None and node("c", cheat=False).cheat is None
        assert node("d", cheat="early").fault_for(PROBE["job_cid"]) == Fault(0)
        assert node("e", cheat=True).fault_for(PROBE["job_cid"]) is None
        with pytest.raises(LookupError):  # a random liar counts a job's calls when it runs it
            node("f", cheat="random").fault_for(PROBE["job_cid"])
        with pytest.raises(UsageError):
            node("g", cheat="often")
    finally:
        for each in made:
            await each.stop()


def _faulted(engine: Engine, tmp: Path, fault: Fault | None, late: bytes | None = None) -> str:
    job = _probe()
    out = tmp / f"expect-{len(list(tmp.glob('expect-*')))}"
    result = run(job.spec, job.wasm, job.sources, out, engine, fault=fault)
    if late is None:
        return result.result_cid
    with open(out / "stdout", "ab") as stdout:
        stdout.write(late)
    return str(cid_of_tree(out))


async def test_real_nodes_sign_each_lie(engine: Engine, tmp_path: Path) -> None:
    """Four nodes (honest, late, early, random) and two more random liars, one with the first's seed
    (colluding), one with its own: each signs the lie its mode and seed make."""
    modes = [(None, b""), ("late", b""), ("early", b""), ("random", b"x"), ("random", b"x"), ("random", b"y")]
    nodes = [await start_node(tmp_path / f"node-{i}", cheat=mode, lie_seed=seed, concurrency=1)
             for i, (mode, seed) in enumerate(modes)]
    try:
        result = await verify(_probe(), [n.url for n in nodes], len(nodes), records=Records(tmp_path / "r.db"),
                              referee="none")
        by_node = {node_id: cid for cid, ids in result.groups.items() for node_id in ids}
        signed = [by_node[n.node.identity.node_id] for n in nodes]
        job = PROBE["job_cid"]
        assert [n.node.fault_for(job) for n in nodes] == [
            None, None, Fault(0), Fault(_spec_key(b"x", job) % PROBE_CALLS), Fault(_spec_key(b"x", job) % PROBE_CALLS),
            Fault(_spec_key(b"y", job) % PROBE_CALLS)]
    finally:
        for node in nodes:
            await node.stop()
    assert signed[0] == PROBE["expect"]["result_cid"]
    assert signed[1] == _faulted(engine, tmp_path, None, b"(a lie)\n")
    assert signed[2] == _faulted(engine, tmp_path, Fault(0)) != signed[0]
    assert signed[3] == signed[4] != signed[0]  # same seed: the same lie
    for seed, cid in ((b"x", signed[3]), (b"y", signed[5])):
        at = _spec_key(seed, job) % PROBE_CALLS
        expect = _faulted(engine, tmp_path, Fault(at))
        if expect == signed[0]:  # this flip does not show in probe's output: the late lie on top
            expect = _faulted(engine, tmp_path, Fault(at), liar.late_line(seed))
        assert cid == expect


def _vector_job(name: str) -> PreparedJob:
    vector = load_vector(name)
    spec = JobSpec.from_dict(vector["spec"])
    sources = {item.path: str(VECTORS / vector["inputs"][item.path]) for item in spec.inputs}
    return PreparedJob(spec, (VECTORS / vector["module"]).read_bytes(), sources)


async def test_a_fault_that_never_fires_or_shows_nothing_becomes_the_late_lie(tmp_path: Path) -> None:
    """hello makes no countable call (C = 0: a random liar has no fault); wordcount's first read
    has a flipped letter that no count shows (an early liar's run gives the honest result): both
    tell the late lie instead, so they still lie. Expected: the vector's stdout plus the line."""
    nodes = [await start_node(tmp_path / f"node-{i}", cheat=mode, concurrency=1)
             for i, mode in enumerate((None, "random", "early"))]
    try:
        for name, lying in (("hello", nodes[1]), ("wordcount", nodes[2])):
            vector = load_vector(name)
            result = await verify(_vector_job(name), [nodes[0].url, lying.url], 2,
                                  records=Records(tmp_path / f"{name}.db"), referee="none")
            claims = {a.node_id: a.result_cid for a in result.answers}
            assert claims[nodes[0].node.identity.node_id] == vector["expect"]["result_cid"]
            assert claims[lying.node.identity.node_id] != vector["expect"]["result_cid"]
            done = lying.node.results / result.job_cid
            assert (done / "stdout").read_text() == vector["expect"]["stdout"] + "(a lie)\n"
            assert claims[lying.node.identity.node_id] == str(cid_of_tree(done))
        assert nodes[1].node.fault_for(load_vector("hello")["job_cid"]) is None  # counted: no call to fault
    finally:
        for node in nodes:
            await node.stop()
