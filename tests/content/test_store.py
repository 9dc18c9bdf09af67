"""Content by CID (Stage 6): the local store and `cod add`, inputs by CID and single-file
mounts, and nodes fetching what they lack from other nodes and from an IPFS trustless gateway.

The gateway is tests/js/gateway.mjs serving CARs that ipfs-car packed (CIDs from ipfs-car,
never from cod); the word counts the jobs print are derived here from the texts.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cod.content.cid import CID
from cod.content.store import ContentStore
from cod.content.unixfs import module_cid
from cod.errors import InputError
from cod.jobspec import Input, JobSpec
from cod.local import prepare
from cod.node.server import RunningNode, start_node
from cod.wasm.engine import Engine
from cod.wasm.executor import run
from verifier import Records, verify

from ..helpers import JS, ROOT, VECTORS, cod_env, ipfs_car_cid, load_vector

WORDCOUNT = VECTORS / "wordcount.wasm"
TEXT = b"the quick brown fox\njumps over\n"
TWO = b"two words\n"


def _counts(text: bytes) -> str:
    """wc's line, word and byte counts, as wordcount prints them (derived here, not by cod)."""
    lines = text.count(b"\n")
    return f"{lines} {len(text.split())} {len(text)}"


def _cod(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cod", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


# -- CIDs and the store ----------------------------------------------------------------------


def test_cidv0_is_read_as_the_cidv1_of_the_same_block() -> None:
    """multiformats (JS) converts the same CIDv0 to CIDv1; cod must agree."""
    v0 = "QmSsw6EcnwEiTT9c4rnAGeSENvsJMepNHmbrgi2S9bXNJr"
    script = f"import {{ CID }} from 'multiformats/cid'; console.log(CID.parse('{v0}').toV1().toString())"
    expected = subprocess.run(["node", "--input-type=module", "-e", script], cwd=JS, capture_output=True, text=True,
                              check=True).stdout.strip()
    assert str(CID.parse(v0)) == expected
    for bad in ("Qm" + "0" * 44, "Qm" + "1" * 44):  # not base58btc; not a sha2-256 multihash
        with pytest.raises(Exception, match="base58|CIDv0"):
            CID.parse(bad)


def test_cod_add_names_content_as_ipfs_car_does(tmp_path: Path) -> None:
    env = cod_env(tmp_path)
    data = VECTORS / "data" / "wordcount"
    proc = _cod(env, "add", str(data), str(VECTORS / "hello.wasm"), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    added = json.loads(proc.stdout)
    assert added[str(data)] == ipfs_car_cid(data, tmp_path / "d.car")
    assert added[str(VECTORS / "hello.wasm")] == ipfs_car_cid(VECTORS / "hello.wasm", tmp_path / "h.car")
    store = tmp_path / "home" / "store"
    assert (store / "trees" / added[str(data)]).is_dir()
    assert (store / "files" / added[str(VECTORS / "hello.wasm")]).read_bytes() == (VECTORS / "hello.wasm").read_bytes()
    again = _cod(env, "add", "-q", str(data), cwd=tmp_path)  # adding twice changes nothing
    assert again.returncode == 0 and again.stdout.strip() == added[str(data)]


def test_cod_run_by_cid_and_inputs_by_cid(tmp_path: Path) -> None:
    env = cod_env(tmp_path)
    hello = _cod(env, "add", "-q", str(VECTORS / "hello.wasm"), cwd=tmp_path).stdout.strip()
    data = _cod(env, "add", "-q", str(VECTORS / "data" / "wordcount"), cwd=tmp_path).stdout.strip()
    proc = _cod(env, "run", hello, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["stdout"] == "hello from cod\n"
    vector = load_vector("wordcount")
    for src in (data, f"ipfs://{data}"):
        proc = _cod(env, "run", "-i", f"{src}:/inputs", str(WORDCOUNT), "--json", "--output-dir",
                    str(tmp_path / src.replace("/", "_")), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["result_cid"] == vector["expect"]["result_cid"]  # as if mounted from disk


def test_a_cid_nobody_has_is_a_clear_error(tmp_path: Path) -> None:
    env = cod_env(tmp_path)
    absent = ipfs_car_cid(VECTORS / "fsprog.wasm", tmp_path / "x.car")  # a real CID, never added
    proc = _cod(env, "run", absent, cwd=tmp_path)
    assert proc.returncode == InputError.code
    assert proc.stderr.splitlines()[0] == f"error: module {absent} is not in the local content store"
    proc = _cod(env, "run", "-i", f"{absent}:/data", str(WORDCOUNT), cwd=tmp_path)
    assert proc.returncode == InputError.code and "cod add" in proc.stderr and "Traceback" not in proc.stderr
    proc = _cod(env, "run", "-i", "ipfs://not-a-cid:/data", str(WORDCOUNT), cwd=tmp_path)
    assert proc.returncode == InputError.code and "ipfs://CID" in proc.stderr


def test_a_local_path_named_like_a_cid_is_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cid = ipfs_car_cid(VECTORS / "fsprog.wasm", tmp_path / "x.car")
    (tmp_path / cid).write_bytes(TEXT)
    job = prepare(WORDCOUNT, [], inputs=[cid])
    assert job.spec.inputs == (Input(cid=module_cid(TEXT), path=f"/inputs/{cid}"),)


# -- single-file mounts -----------------------------------------------------------------------


def test_a_file_mounts_as_a_file(tmp_path: Path) -> None:
    (tmp_path / "fox.txt").write_bytes(TEXT)
    env = cod_env(tmp_path)
    proc = _cod(env, "run", "-i", "fox.txt:/data/foo.txt", str(WORDCOUNT), "/data", "--json",
                "--output-dir", "r", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    view = json.loads(proc.stdout)
    assert view["stdout"] == f"{_counts(TEXT)} total\n"
    assert (tmp_path / "r" / "outputs" / "count.txt").read_text() == f"{_counts(TEXT)} /data/foo.txt\n"
    by_default = prepare(WORDCOUNT, [], inputs=[str(tmp_path / "fox.txt")])
    assert by_default.spec.inputs == (Input(cid=ipfs_car_cid(tmp_path / "fox.txt", tmp_path / "f.car"),
                                            path="/inputs/fox.txt"),)


def test_file_mounts_share_their_directory_and_nothing_else(tmp_path: Path, engine: Engine) -> None:
    """Two files under /data: the job lists exactly them, in name order; stat says files."""
    (tmp_path / "b.txt").write_bytes(TWO)
    (tmp_path / "a.txt").write_bytes(TEXT)
    job = prepare(WORDCOUNT, ["/data"], inputs=[f"{tmp_path / 'b.txt'}:/data/z.txt",
                                                f"{tmp_path / 'a.txt'}:/data/a.txt"])
    result = run(job.spec, job.wasm, job.sources, tmp_path / "out", engine)
    assert (tmp_path / "out" / "outputs" / "count.txt").read_text() == (
        f"{_counts(TEXT)} /data/a.txt\n{_counts(TWO)} /data/z.txt\n")
    assert result.exit_code == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cod-staging")]  # the empty dir is gone


def test_a_symlinked_file_source_is_refused_by_the_executor(tmp_path: Path, engine: Engine) -> None:
    (tmp_path / "real.txt").write_bytes(TEXT)
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    spec = JobSpec(module=module_cid(WORDCOUNT.read_bytes()), inputs=(Input(cid=module_cid(TEXT), path="/d/x"),))
    with pytest.raises(InputError, match="symlink"):
        run(spec, WORDCOUNT.read_bytes(), {"/d/x": str(tmp_path / "link.txt")}, tmp_path / "out", engine)
    assert not (tmp_path / "out").exists()


def test_a_file_cannot_sit_inside_a_directory_mount(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_bytes(TEXT)
    with pytest.raises(Exception, match="nest"):
        prepare(WORDCOUNT, [], inputs=[str(VECTORS / "data" / "wordcount") + ":/data",
                                       str(tmp_path / "f.txt") + ":/data/f.txt"])


# -- nodes fetching what they lack --------------------------------------------------------------


@pytest.fixture()
def gateway(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """tests/js/gateway.mjs over tmp_path/cars: (base URL, the CAR directory)."""
    cars = tmp_path / "cars"
    cars.mkdir()
    proc = subprocess.Popen(["node", str(JS / "gateway.mjs"), str(cars)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening "), line
        yield f"http://127.0.0.1:{line.split()[1]}", cars
    finally:
        proc.kill()
        proc.wait()


def _pack(path: Path, cars: Path) -> str:
    """Pack ``path`` with ipfs-car into cars/{root}.car; returns ipfs-car's root CID."""
    scratch = cars.parent / "packing.car"
    root = ipfs_car_cid(path, scratch)
    scratch.rename(cars / f"{root}.car")
    return root


async def _nodes(tmp_path: Path, count: int, **options: Any) -> list[RunningNode]:
    return [await start_node(tmp_path / f"node{n}", concurrency=1, **options) for n in range(count)]


async def test_nodes_fetch_inputs_from_a_trustless_gateway(tmp_path: Path, gateway: tuple[str, Path],
                                                           records: Records) -> None:
    url, cars = gateway
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "fox.txt").write_bytes(TEXT)
    (tmp_path / "text" / "two.txt").write_bytes(TWO)  # ipfs-car --no-wrap unwraps a one-file directory
    tree = _pack(tmp_path / "text", cars)
    (tmp_path / "one.txt").write_bytes(b"a single file\n")
    single = _pack(tmp_path / "one.txt", cars)
    nodes = await _nodes(tmp_path, 2, gateways=[url])
    try:  # the requester holds neither: only the gateway does
        both = f"{_counts(TEXT)} /inputs/fox.txt\n{_counts(TWO)} /inputs/two.txt\n"
        one = f"{_counts(b'a single file' + bytes([10]))} /inputs/one.txt\n"
        for src, count in ((tree, both), (f"ipfs://{single}:/inputs/one.txt", one)):
            job = prepare(WORDCOUNT, [], inputs=[src])
            assert job.sources == {}
            out = tmp_path / f"out-{len(count)}"
            result = await verify(job, [n.url for n in nodes], 2, records=records, output_dir=out)
            assert result.outcome == "verified", (result.note, result.answers)
            assert (out / "outputs" / "count.txt").read_text() == count
        for node in nodes:
            assert node.node.blobs.tree(tree) is not None and node.node.blobs.file(single) is not None
        async with aiohttp.ClientSession() as http, http.get(f"{url}/requests") as resp:
            asked = await resp.json()
        for cid in (tree, single):  # each node asked once for each input; the module too, which it lacked
            assert asked.count(f"/ipfs/{cid}?format=car&dag-scope=all") == 2, asked
        assert asked.count(f"/ipfs/{module_cid(WORDCOUNT.read_bytes())}?format=car&dag-scope=all") == 2, asked
    finally:
        for node in nodes:
            await node.stop()


async def test_a_gateway_that_lies_gives_nothing(tmp_path: Path, gateway: tuple[str, Path],
                                                 http: aiohttp.ClientSession) -> None:
    """A CAR whose block does not hash to its CID, or whose root is another CID: refused, 409."""
    url, cars = gateway
    (tmp_path / "f.txt").write_bytes(TEXT)
    honest = _pack(tmp_path / "f.txt", cars)
    (tmp_path / "g.txt").write_bytes(b"something else entirely\n")
    other = _pack(tmp_path / "g.txt", cars)
    car = (cars / f"{honest}.car").read_bytes()
    tampered = car.replace(b"quick", b"quack")
    assert tampered != car
    (cars / f"{honest}.car").write_bytes(tampered)
    (tmp_path / "h.txt").write_bytes(b"swapped\n")
    swapped = ipfs_car_cid(tmp_path / "h.txt", tmp_path / "h.car")
    (cars / f"{swapped}.car").write_bytes((cars / f"{other}.car").read_bytes())  # the right CAR for another CID
    (node,) = await _nodes(tmp_path, 1, gateways=[url])
    try:
        wasm = WORDCOUNT.read_bytes()
        async with http.put(f"{node.url}/v1/blobs/{module_cid(wasm)}", data=wasm) as resp:
            assert resp.status in (200, 201)
        for cid in (honest, swapped):
            spec = JobSpec(module=module_cid(wasm), inputs=(Input(cid=cid, path="/inputs/x"),))
            async with http.post(f"{node.url}/v1/jobs", json={"spec": spec.to_dict()}) as resp:
                body = await resp.json()
                assert resp.status == 409 and body["missing"] == [cid], body
            assert not node.node.blobs.has(cid)
        assert sorted(os.listdir(node.node.blobs.tmp)) == []  # no spool left behind
    finally:
        await node.stop()


async def test_a_node_fetches_from_a_peer_that_holds_the_content(tmp_path: Path, records: Records) -> None:
    holder, = await _nodes(tmp_path / "a", 1)
    store = ContentStore(tmp_path / "store")
    data = store.add(VECTORS / "data" / "wordcount")
    try:
        seeded = prepare(WORDCOUNT, [], inputs=[f"{data}:/inputs"], resolve=store.get)
        first = await verify(seeded, [holder.url], 1, records=records)
        assert first.result_cid == load_vector("wordcount")["expect"]["result_cid"], first.answers
        asker, = await _nodes(tmp_path / "b", 1, peers=[holder.url])
        try:
            bare = prepare(WORDCOUNT, [], inputs=[f"{data}:/inputs"])  # this requester cannot upload it
            assert bare.sources == {}
            second = await verify(bare, [asker.url], 1, records=records)
            assert second.result_cid == load_vector("wordcount")["expect"]["result_cid"]
            assert asker.node.fetcher.fetched_bytes > 0
        finally:
            await asker.stop()
    finally:
        await holder.stop()


async def test_a_requester_without_the_content_says_so(tmp_path: Path, records: Records) -> None:
    node, = await _nodes(tmp_path, 1)
    try:
        absent = ipfs_car_cid(VECTORS / "data" / "wordcount", tmp_path / "x.car")
        job = prepare(WORDCOUNT, [], inputs=[f"{absent}:/inputs"])
        result = await verify(job, [node.url], 1, records=records)
        assert result.outcome != "verified"
        assert any("neither does this requester" in (a.error or "") for a in result.answers), result.answers
    finally:
        await node.stop()


def test_the_store_is_where_cod_home_says(tmp_path: Path) -> None:
    env = cod_env(tmp_path, COD_STORE=str(tmp_path / "elsewhere"))
    proc = _cod(env, "add", "-q", str(VECTORS / "hello.wasm"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "elsewhere" / "files" / proc.stdout.strip()).is_file()
    assert str(ROOT)  # the repository is the PYTHONPATH of these runs


def test_a_local_run_fetches_a_cid_from_a_configured_gateway(tmp_path: Path, gateway: tuple[str, Path]) -> None:
    url, cars = gateway
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "fox.txt").write_bytes(TEXT)
    (tmp_path / "text" / "two.txt").write_bytes(TWO)
    tree = _pack(tmp_path / "text", cars)
    env = cod_env(tmp_path, COD_GATEWAYS=url)
    proc = _cod(env, "run", "-i", f"{tree}:/inputs", str(WORDCOUNT), "--json", "--output-dir", "r", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "r" / "outputs" / "count.txt").read_text() == (
        f"{_counts(TEXT)} /inputs/fox.txt\n{_counts(TWO)} /inputs/two.txt\n")
    assert (tmp_path / "home" / "store" / "trees" / tree).is_dir()  # kept in the store for next time
    proc = _cod(cod_env(tmp_path), "run", "-i", f"{tree}:/inputs", str(WORDCOUNT), "--output-dir", "r2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr  # no gateway now: the store has it


async def test_a_local_run_fetches_a_cid_from_a_configured_node(tmp_path: Path) -> None:
    holder, = await _nodes(tmp_path, 1, datasets=[VECTORS / "data" / "wordcount"])
    try:
        data = ipfs_car_cid(VECTORS / "data" / "wordcount", tmp_path / "d.car")
        env = cod_env(tmp_path, COD_NODES=holder.url)
        proc = await asyncio.to_thread(_cod, env, "run", "-i", f"ipfs://{data}:/inputs", str(WORDCOUNT), "--json",
                                       cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["result_cid"] == load_vector("wordcount")["expect"]["result_cid"]
    finally:
        await holder.stop()


async def test_a_gateway_streaming_garbage_is_dropped_at_the_header(tmp_path: Path) -> None:
    """An endless answer whose first bytes are not the CAR header of the CID is given up at once."""
    from aiohttp import web

    from cod.content.blobs import BlobStore
    from cod.content.fetcher import Fetcher

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/vnd.ipld.car"})
        await resp.prepare(request)
        while True:
            await resp.write(b"\x00" * 65536)

    app = web.Application()
    app.router.add_get("/ipfs/{cid}", endless)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fetcher = Fetcher(BlobStore(tmp_path / "blobs"), gateways=[f"http://127.0.0.1:{port}"])
    try:
        cid = module_cid(TEXT)
        assert await asyncio.wait_for(fetcher.fetch(cid), 10) is False
        assert fetcher.fetched_bytes < 4 << 20  # not the 8 GiB upload cap
        assert os.listdir(tmp_path / "blobs" / "tmp") == []
    finally:
        await fetcher.close()
        await runner.cleanup()
