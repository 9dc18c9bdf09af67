"""Agreement is a strict majority: ties and minorities never verify (real nodes, two liars that agree)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cod.errors import UsageError
from cod.local import PreparedJob, prepare
from verifier import Devstack, Records, verify
from verifier.verify import DISAGREES, MISMATCH, QUORUM, Answer, _judge, check_quorum, statuses

from ..helpers import VECTORS, load_vector

HONEST = load_vector("wordcount")["expect"]["result_cid"]

# (N, K, allowed): K must satisfy N/2 < K <= N, by hand
QUORUMS = [(1, 1, True), (2, 1, False), (2, 2, True), (3, 1, False), (3, 2, True), (3, 3, True), (3, 5, False),
           (4, 2, False), (4, 3, True), (5, 2, False), (5, 3, True), (4, 0, False), (4, -1, False), (2, None, True)]


@pytest.mark.parametrize("n, quorum, allowed", QUORUMS)
def test_a_quorum_must_be_a_strict_majority(n: int, quorum: int | None, allowed: bool) -> None:
    if allowed:
        check_quorum(n, quorum)
        return
    with pytest.raises(UsageError) as caught:
        check_quorum(n, quorum)
    assert caught.value.code == 2 and "strict majority" in caught.value.message
    assert caught.value.hint == f"use --quorum between {n // 2 + 1} and {n}, or leave it out to need all {n}"


def test_zero_nodes_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="at least 1 node"):
        check_quorum(0, None)


def _answers(*results: str) -> list[Answer]:
    return [Answer(f"n{i}", "u", "p", result_cid=r, signature_valid=True) for i, r in enumerate(results)]


def test_a_tie_never_verifies_even_when_asked_for_half() -> None:
    job = prepare(VECTORS / "hello.wasm", [])
    # two honest nodes and two liars that agree: a tie, whichever CID sorts first
    for honest, lie in (("bafyA", "bafyB"), ("bafyB", "bafyA")):
        verdict = _judge(job, "job", _answers(honest, honest, lie, lie), 4, 2)
        assert (verdict.outcome, verdict.result_cid) == (MISMATCH, None)
        assert [s for s, _ in statuses(verdict)] == [DISAGREES] * 4
    verdict = _judge(job, "job", _answers("bafyA", "bafyA", "bafyA", "bafyB"), 4, 3)
    assert (verdict.outcome, verdict.result_cid) == (QUORUM, "bafyA")


def _wordcount() -> PreparedJob:
    return prepare(VECTORS / "wordcount.wasm", [], inputs=[str(VECTORS / "data" / "wordcount")])


async def test_two_honest_and_two_agreeing_liars_never_verify(records: Records, tmp_path: Path) -> None:
    job = _wordcount()
    async with Devstack(4, bad_nodes=2, base_dir=tmp_path / "stack") as stack:
        with pytest.raises(UsageError):  # refused before any node is asked
            await verify(job, stack.urls, 4, quorum=2, records=records)
        assert all(n.node.jobs.get(str(job.spec.cid)) is None for n in stack.nodes)
        split = await verify(job, stack.urls, 4, quorum=3, records=records, output_dir=tmp_path / "out")
        everyone = await verify(job, stack.urls, 4, records=records)
        honest_ids = {n.node.identity.node_id for n in stack.nodes[:2]}
        liar_ids = {n.node.identity.node_id for n in stack.nodes[2:]}
        majority = await verify(job, stack.urls[:3], 3, quorum=2, records=records)
    for result in (split, everyone):
        assert (result.outcome, result.result_cid, result.exit_code) == (MISMATCH, None, 10)
        assert {cid: set(ids) for cid, ids in result.groups.items()}[HONEST] == honest_ids
        (lie,) = set(result.groups) - {HONEST}
        assert set(result.groups[lie]) == liar_ids
        assert [s for s, _ in statuses(result)] == [DISAGREES] * 4
    assert not (tmp_path / "out").exists()
    assert (majority.outcome, majority.result_cid) == (QUORUM, HONEST)
    assert [r["outcome"] for r in records.runs(split.job_cid)] == [MISMATCH, MISMATCH, QUORUM]
