"""Modules by CID (SPEC 5.4) with content by CID (Stage 6): `cod run` finds a library in the
local store (`cod add`), fetches one it lacks from a configured node; a verified job whose
library only some nodes offer (a private module) goes only to them; a node fetches a
dependency from a peer.

Expected stdout and result CIDs come from vectors/linked.json (stdout derived by hand from
vectors/src/mixer.c and mathlib.c; result CID pinned when the vector was built)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cod.content.unixfs import module_cid
from cod.local import prepare
from cod.node.server import RunningNode, start_node
from verifier import Records, verify
from verifier.verify import NotEnoughNodes

from .helpers import VECTORS, cod_env, load_vector

MIXER = VECTORS / "mixer.wasm"
MATHLIB = VECTORS / "mathlib.wasm"
LIBRARY = module_cid(MATHLIB.read_bytes())
LINKED = load_vector("linked")["expect"]


def _cod(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cod", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


async def _node(tmp_path: Path, name: str, **options: Any) -> RunningNode:
    return await start_node(tmp_path / name, concurrency=1, **options)


def test_cod_add_makes_the_library_resolvable_for_cod_run(tmp_path: Path) -> None:
    env = cod_env(tmp_path)
    proc = _cod(env, "run", str(MIXER), "--output-dir", "r0", cwd=tmp_path)
    assert proc.returncode == 4 and LIBRARY in proc.stderr and "cod add FILE" in proc.stderr, proc.stderr
    added = _cod(env, "add", str(MATHLIB), cwd=tmp_path)
    assert added.returncode == 0 and LIBRARY in added.stdout, added.stderr
    proc = _cod(env, "run", str(MIXER), "--json", "--output-dir", "r1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert (got["result_cid"], got["stdout"]) == (LINKED["result_cid"], LINKED["stdout"])
    # the program itself by CID, from the store too
    mixer = module_cid(MIXER.read_bytes())
    assert mixer in _cod(env, "add", str(MIXER), cwd=tmp_path).stdout
    proc = _cod(env, "run", f"ipfs://{mixer}", "--json", "--output-dir", "r2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["stdout"] == LINKED["stdout"]


def test_a_library_changed_in_the_store_is_never_linked(tmp_path: Path) -> None:
    env = cod_env(tmp_path)
    assert _cod(env, "add", str(MATHLIB), cwd=tmp_path).returncode == 0
    stored = next((tmp_path / "home" / "store").rglob(LIBRARY))
    stored.chmod(0o644)
    stored.write_bytes(MIXER.read_bytes())  # other bytes under the library's name
    proc = _cod(env, "run", str(MIXER), "--output-dir", "r", cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "r").exists()


async def test_a_local_run_fetches_the_library_from_a_configured_node(tmp_path: Path,
                                                                      http: aiohttp.ClientSession) -> None:
    holder = await _node(tmp_path, "holder")
    try:
        async with http.put(f"{holder.url}/v1/blobs/{LIBRARY}", data=MATHLIB.read_bytes(),
                            headers={"Content-Type": "application/octet-stream"}) as resp:
            assert resp.status == 201
        env = cod_env(tmp_path, COD_NODES=holder.url)
        proc = await asyncio.to_thread(_cod, env, "run", str(MIXER), "--json", "--output-dir", "r", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["result_cid"] == LINKED["result_cid"]
        assert list((tmp_path / "home" / "store").rglob(LIBRARY))  # kept for next time
    finally:
        await holder.stop()


async def test_a_private_library_keeps_the_job_to_the_nodes_that_offer_it(tmp_path: Path,
                                                                          records: Records) -> None:
    private = tmp_path / "private" / "mathlib.wasm"
    private.parent.mkdir()
    shutil.copyfile(MATHLIB, private)
    offering = [await _node(tmp_path, f"o{i}", private_modules=[private]) for i in range(2)]
    plain = [await _node(tmp_path, f"p{i}") for i in range(2)]
    try:
        job = prepare(MIXER, [], resolve=lambda cid: None, remote=True)
        assert job.missing_modules == (LIBRARY,) and job.modules == {}
        urls = [n.url for n in plain] + [n.url for n in offering]
        result = await verify(job, urls, 2, records=records)
        assert result.outcome == "verified" and result.result_cid == LINKED["result_cid"]
        assert sorted(a.url for a in result.answers) == sorted(n.url for n in offering)
        with pytest.raises(NotEnoughNodes) as refused:
            await verify(job, urls, 3, records=records)
        assert f"does not offer the module {LIBRARY}" in str(refused.value)
        for node in offering:  # the library's bytes never left them
            assert node.node.blobs.file(LIBRARY) is None
        # without the library, prepare for a local run names it
        with pytest.raises(Exception, match=LIBRARY):
            prepare(MIXER, [], resolve=lambda cid: None)
    finally:
        for node in offering + plain:
            await node.stop()


async def test_a_node_fetches_a_dependency_from_a_peer(tmp_path: Path, records: Records,
                                                       http: aiohttp.ClientSession) -> None:
    holder = await _node(tmp_path, "holder")
    runner = None
    try:
        async with http.put(f"{holder.url}/v1/blobs/{LIBRARY}", data=MATHLIB.read_bytes(),
                            headers={"Content-Type": "application/octet-stream"}) as resp:
            assert resp.status == 201
        runner = await _node(tmp_path, "runner", peers=[holder.url])
        job = prepare(MIXER, [], resolve=lambda cid: None, remote=True)
        result = await verify(job, [runner.url], 1, records=records)  # no candidate lists it: no filter
        assert result.result_cid == LINKED["result_cid"] and result.note == "one node proves nothing", result
        assert runner.node.blobs.file(LIBRARY) is not None  # fetched from the peer, checked
    finally:
        if runner is not None:
            await runner.stop()
        await holder.stop()
