"""Stage 3 attacks on a compute node, each reproduced against a real node on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cod import JobSpec, Limits, module_cid
from cod.jobspec import Input
from cod.node.server import RunningNode, start_node
from cod import dagpb

from .node_kit import CAT_KEY_WAT, car, pb, put, wat


@pytest.fixture()
async def node(tmp_path: Path) -> AsyncIterator[RunningNode]:
    running = await start_node(tmp_path / "node", concurrency=1, queue_size=2)
    yield running
    await running.stop()


@pytest.fixture()
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _job(http: aiohttp.ClientSession, url: str, spec: JobSpec) -> tuple[int, Any]:
    async with http.post(url + "/v1/jobs?wait=true", json={"spec": spec.to_dict()}) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_a_symlink_rooted_car_cannot_steal_the_node_key(node: RunningNode,
                                                              http: aiohttp.ClientSession) -> None:
    """The attack: a CAR whose root is a UnixFS symlink to ``../..`` (from blobs/trees/<cid>,
    that is the data dir) mounted as /inputs, then a job that cats /inputs/node.key."""
    link_cid, link_block = pb(dagpb.SYMLINK, data=b"../..")
    status, body = await put(http, node.url, link_cid, car([link_cid], [(link_cid, link_block)]))
    assert status == 400 and body["error"] == "CIDError" and "symlink" in body["message"], body
    assert body["hint"]
    trees = node.node.data_dir / "blobs" / "trees"
    assert list(trees.iterdir()) == []  # nothing stored, not even a dangling link
    cat = wat(CAT_KEY_WAT)
    assert (await put(http, node.url, module_cid(cat), cat, "application/octet-stream"))[0] == 201
    spec = JobSpec(module=module_cid(cat), inputs=(Input(str(link_cid), "/inputs"),))
    status, body = await _job(http, node.url, spec)
    assert status == 409 and body["error"] == "MissingBlobs"  # the link is no input here


async def test_a_symlink_planted_in_the_store_is_never_followed(node: RunningNode,
                                                               http: aiohttp.ClientSession) -> None:
    """Even if a link got into the store (an older node's upload), it is not a tree or a file."""
    link_cid, _ = pb(dagpb.SYMLINK, data=b"../..")
    (node.node.data_dir / "blobs" / "trees" / str(link_cid)).symlink_to("../..")
    (node.node.data_dir / "blobs" / "files" / str(link_cid)).symlink_to("../../node.key")
    assert node.node.blobs.tree(str(link_cid)) is None and node.node.blobs.file(str(link_cid)) is None
    cat = wat(CAT_KEY_WAT)
    await put(http, node.url, module_cid(cat), cat, "application/octet-stream")
    status, body = await _job(http, node.url, JobSpec(module=module_cid(cat),
                                                      inputs=(Input(str(link_cid), "/inputs"),)))
    assert status == 409 and str(link_cid) in body["missing"]
