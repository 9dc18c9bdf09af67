"""One honest node against 2, 4 and 9 colluding liars, every way of lying (SPEC 11.8), refereed.

One devstack of 10 nodes (1 honest, 9 liars) serves every case; the liars' mode is switched
between cases (Devstack.lie) and each case runs a job of its own (probe with an argument of its own),
so no node answers from an earlier record. The honest result's stdout comes from the probe
vector with the argument line changed by hand; the honest node's claim must be the one accepted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from cod.jobspec import JobSpec
from cod.local import PreparedJob
from verifier import Devstack, Records, verify

from ..helpers import VECTORS, load_vector

pytestmark = pytest.mark.asyncio(loop_scope="module")
PROBE = load_vector("probe")
LIARS = (2, 4, 9)
MODES = ("late", "early", "random")
METHODS = ("self", "bisect")


def _job(word: str) -> PreparedJob:
    """The probe vector with its second argument ``word`` (a job CID of its own; probe only prints it)."""
    spec = JobSpec.from_dict(PROBE["spec"])
    assert spec.args[2] == "two words" and len(spec.args) == 3
    spec = dataclasses.replace(spec, args=(*spec.args[:2], word))
    sources = {item.path: str(VECTORS / PROBE["inputs"][item.path]) for item in spec.inputs}
    return PreparedJob(spec, (VECTORS / PROBE["module"]).read_bytes(), sources)


def _honest_stdout(word: str) -> str:
    return PROBE["expect"]["stdout"].replace("arg 2 two words\n", f"arg 2 {word}\n", 1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Devstack]:
    async with Devstack(1 + max(LIARS), bad_nodes=max(LIARS), base_dir=tmp_path_factory.mktemp("stack")) as running:
        yield running


def _referee(method: str) -> None:
    if method == "bisect":  # the bisection referee is another slice of Stage 11
        pytest.importorskip("verifier.bisect", reason="verifier.bisect (--referee bisect) does not exist yet")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("liars", LIARS)
async def test_one_honest_node_beats_colluding_liars(liars: int, mode: str, method: str, stack: Devstack,
                                                     tmp_path: Path) -> None:
    _referee(method)
    stack.lie(mode)
    honest, *others = stack.nodes[:1] + stack.liars[:liars]
    assert not honest.node.cheat and all(o.node.cheat == mode for o in others) and len(others) == liars
    word = f"{mode}-{liars}-{method}"
    urls = [honest.url] + [o.url for o in others]
    result = await verify(_job(word), urls, len(urls), records=Records(tmp_path / "r.db"), referee=method,
                          output_dir=tmp_path / "out")
    claims = {a.node_id: a.result_cid for a in result.answers}
    truth = claims[honest.node.identity.node_id]
    assert (result.outcome, result.result_cid) == ("verified-by-referee", truth), result.note
    assert (tmp_path / "out" / "stdout").read_text() == _honest_stdout(word)
    assert sorted(result.liars) == sorted(o.node.identity.node_id for o in others)
    lies = {claims[o.node.identity.node_id] for o in others}
    assert len(lies) == 1 and truth not in lies  # they collude: one lie
    assert result.referee is not None and result.referee["method"] == method


async def test_the_lie_enters_where_the_mode_says(stack: Devstack, tmp_path: Path) -> None:
    """An early liar's run read a flipped first clock byte (the low byte of the epoch, as
    tests/wasm/test_fault.py finds it); a late liar's stdout is the honest one plus a line."""
    epoch = PROBE["spec"]["clock"]["epoch_ns"]
    honest_line = f"realtime {epoch // 10**9}.{epoch % 10**9:09d}\n"
    flipped = (epoch ^ 0xFF)
    expect = {"late": lambda out: out + "(a lie)\n",
              "early": lambda out: out.replace(honest_line, f"realtime {flipped // 10**9}.{flipped % 10**9:09d}\n")}
    for mode, change in expect.items():
        stack.lie(mode)
        word = f"where-{mode}"
        liar = stack.liars[0].node
        result = await verify(_job(word), [stack.nodes[0].url, stack.liars[0].url], 2,
                              records=Records(tmp_path / f"{mode}.db"), referee="none")
        claims = {a.node_id: a.result_cid for a in result.answers}
        assert claims[liar.identity.node_id] != claims[stack.nodes[0].node.identity.node_id]
        assert honest_line in _honest_stdout(word)
        assert (liar.results / result.job_cid / "stdout").read_text() == change(_honest_stdout(word))


async def test_a_devstack_refuses_a_mode_it_does_not_know() -> None:
    from cod.errors import UsageError

    with pytest.raises(UsageError) as info:
        Devstack(3, 1, bad_mode="sometimes")
    assert "late, early, random" in (info.value.hint or "")


async def test_liars_that_do_not_collude_tell_lies_of_their_own(tmp_path: Path) -> None:
    async with Devstack(3, bad_nodes=2, base_dir=tmp_path / "stack", collude=False) as own:
        assert own.liars[0].node.lie_seed != own.liars[1].node.lie_seed
        liars = sorted(n.node.identity.node_id for n in own.liars)
        result = await verify(_job("alone"), own.urls, 3, records=Records(tmp_path / "r.db"), referee="self")
    assert result.outcome == "verified-by-referee" and len(result.groups) == 3  # the truth and two lies
    assert sorted(result.liars) == liars
