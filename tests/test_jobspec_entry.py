"""Every way a spec enters is strict (SPEC 2): the node's POST /v1/jobs parses its body with
jobspec.load_json, so what from_json refuses the node refuses too, with 400 SpecError."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from cod import module_cid
from cod.node.server import RunningNode, start_node

from .helpers import VECTORS

MODULE = module_cid((VECTORS / "hello.wasm").read_bytes())


@pytest.fixture()
async def node(tmp_path: Path) -> AsyncIterator[RunningNode]:
    running = await start_node(tmp_path / "node", concurrency=1, queue_size=1)
    yield running
    await running.stop()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"spec": {"module": "%s", "limits": {"fuel": 1, "fuel": 2}}}' % MODULE, "'fuel'"),  # json.loads keeps 2
        ('{"spec": {"module": "%s"}, "spec": {"module": "%s"}}' % (MODULE, MODULE), "'spec'"),
        ('{"spec": {"module": "%s", "args": ["\\ud800"]}}' % MODULE, "'args[0]'"),  # was a 500
        ('{"spec": {"module": "%s", "args": %s%s}}' % (MODULE, "[" * 100_000, "]" * 100_000), "'(document)'"),
        ('{"spec": {"module": "%s", "limits": {"memory_bytes": 4294967297}}}' % MODULE, "'limits.memory_bytes'"),
        ('{"spec": ', "'(document)'"),
    ],
)
async def test_the_node_refuses_what_the_spec_refuses(node: RunningNode, body: str, field: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(node.url + "/v1/jobs", data=body.encode("utf-8", "surrogatepass"),
                             headers={"Content-Type": "application/json"}) as resp:
            answer = await resp.json(content_type=None)
    assert resp.status == 400, answer
    assert answer["error"] == "SpecError"
    assert field in answer["message"]
