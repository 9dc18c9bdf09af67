"""Modules by CID on real nodes (SPEC 5.4, 9.4): 409 MissingBlobs names each dependency as the
node discovers it, uploads complete the closure, and the signed result equals a local run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cod import Engine, JobSpec, module_cid
from cod.errors import MissingModules
from cod.local import prepare, run_prepared
from cod.node.server import RunningNode
from cod.statement import SignedStatement
from verifier import Devstack, Records, verify

from ..helpers import VECTORS
from ..wasm.test_linking import GREET, lib, root

LEAF = GREET  # writes "hi from lib\n" through its own memory
MIDDLE = lib(f'(import "{module_cid(LEAF)}" "greet" (func $g)) (func (export "twice") (call $g) (call $g))',
             memory=0)
ROOT_WASM = root(f'(import "{module_cid(MIDDLE)}" "twice" (func $twice))', "(call $twice)")
MODULES = {module_cid(LEAF): LEAF, module_cid(MIDDLE): MIDDLE}


async def _submit(http: aiohttp.ClientSession, url: str, spec: dict[str, Any]) -> tuple[int, Any]:
    async with http.post(url + "/v1/jobs?wait=true", json={"spec": spec}) as resp:
        return resp.status, await resp.json(content_type=None)


async def _put(http: aiohttp.ClientSession, url: str, cid: str, data: bytes) -> int:
    async with http.put(f"{url}/v1/blobs/{cid}", data=data,
                        headers={"Content-Type": "application/octet-stream"}) as resp:
        return resp.status


def _files(tmp: Path, modules: dict[str, bytes]) -> dict[str, Path]:
    """Each module as a file (prepare resolves content by CID to paths, like cod's store)."""
    (tmp / "lib").mkdir(exist_ok=True)
    for cid, data in modules.items():
        (tmp / "lib" / cid).write_bytes(data)
    return {cid: tmp / "lib" / cid for cid in modules}


def _local(tmp: Path, engine: Engine) -> Any:
    (tmp / "root.wasm").write_bytes(ROOT_WASM)
    job = prepare(tmp / "root.wasm", [], resolve=_files(tmp, MODULES).get)
    assert job.modules == MODULES
    return job, run_prepared(job, tmp / "local", engine)


async def test_a_node_asks_for_each_dependency_then_signs_the_local_result(
        node: RunningNode, http: aiohttp.ClientSession, engine: Engine, tmp_path: Path) -> None:
    job, local = _local(tmp_path, engine)
    assert (tmp_path / "local" / "stdout").read_bytes() == b"hi from lib\n" * 2
    spec = job.spec.to_dict()
    status, body = await _submit(http, node.url, spec)
    assert (status, body["missing"]) == (409, [job.spec.module])
    assert await _put(http, node.url, job.spec.module, ROOT_WASM) == 201
    status, body = await _submit(http, node.url, spec)  # found from the root's imports
    assert (status, body["error"], body["missing"]) == (409, "MissingBlobs", [module_cid(MIDDLE)])
    assert await _put(http, node.url, module_cid(MIDDLE), MIDDLE) == 201
    status, body = await _submit(http, node.url, spec)  # and from the middle module's
    assert (status, body["missing"]) == (409, [module_cid(LEAF)])
    assert await _put(http, node.url, module_cid(LEAF), LEAF) == 201
    status, done = await _submit(http, node.url, spec)
    assert status == 200 and done["state"] == "done", done
    statement = SignedStatement.from_json(done["statement"]).verify(str(job.spec.cid), node.node.identity.node_id)
    assert (statement.result, statement.exit_code, statement.fuel_used) == (
        local.result_cid, local.exit_code, local.fuel_used)


def test_prepare_without_a_resolver_names_the_missing_module(tmp_path: Path) -> None:
    (tmp_path / "root.wasm").write_bytes(ROOT_WASM)
    with pytest.raises(MissingModules) as info:
        prepare(tmp_path / "root.wasm", [])
    assert info.value.missing == [module_cid(MIDDLE)]
    assert "cod add FILE" in str(info.value)
    with pytest.raises(MissingModules) as info:
        prepare(tmp_path / "root.wasm", [], resolve=_files(tmp_path, {module_cid(MIDDLE): MIDDLE}).get)
    assert info.value.missing == [module_cid(LEAF)]


async def test_the_verifier_uploads_the_closure(records: Records, engine: Engine, tmp_path: Path) -> None:
    job, local = _local(tmp_path, engine)
    async with Devstack(2, base_dir=tmp_path / "stack") as stack:
        result = await verify(job, stack.urls, 2, records=records, output_dir=tmp_path / "out")
    assert result.outcome == "verified", result
    assert result.result_cid == local.result_cid
    assert (tmp_path / "out" / "stdout").read_bytes() == b"hi from lib\n" * 2
    assert JobSpec.from_dict(job.spec.to_dict()).cid == job.spec.cid


def test_cod_run_names_a_library_it_cannot_resolve(tmp_path: Path) -> None:
    # a library neither in the local store nor at a configured node: the CID and the hint
    from ..cli.test_cli import cod

    library = module_cid((VECTORS / "mathlib.wasm").read_bytes())
    proc = cod("run", str(VECTORS / "mixer.wasm"), "--output-dir", str(tmp_path / "r"), cwd=tmp_path)
    assert proc.returncode == 4, proc.stderr
    assert library in proc.stderr and "cod add FILE" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "r").exists()
