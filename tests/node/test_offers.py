"""Jobs go to the data (Stage 6): datasets that stay home, private modules, /v1/holdings, and
the verifier preferring (or, with require_local, only using) nodes that hold the content.

Real nodes on loopback; expected result CIDs and counts come from the vectors and from the
texts themselves.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import aiohttp
import pytest

from cod.content.unixfs import cid_of_tree, module_cid
from cod.jobspec import Input, JobSpec
from cod.local import PreparedJob, prepare
from cod.node.offers import Offers
from cod.node.server import RunningNode, start_node
from verifier import Records, verify
from verifier.verify import NotEnoughNodes

from ..helpers import VECTORS, ipfs_car_cid, load_vector

WORDCOUNT = VECTORS / "wordcount.wasm"
HELLO = VECTORS / "hello.wasm"
WORDCOUNT_RESULT = load_vector("wordcount")["expect"]["result_cid"]


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    copy = tmp_path / "corpus"
    shutil.copytree(VECTORS / "data" / "wordcount", copy)
    return copy


async def _start(tmp_path: Path, name: str, **options: object) -> RunningNode:
    return await start_node(tmp_path / name, concurrency=1, **options)  # type: ignore[arg-type]


def _by_cid(cid: str) -> PreparedJob:
    """The word-count job on input ``cid``, from a requester that holds no input bytes."""
    job = prepare(WORDCOUNT, [], inputs=[f"ipfs://{cid}:/inputs"])
    assert job.sources == {}
    return job


async def test_a_dataset_is_served_without_an_upload(tmp_path: Path, corpus: Path, records: Records,
                                                     http: aiohttp.ClientSession) -> None:
    cid = ipfs_car_cid(corpus, tmp_path / "c.car")  # the CID ipfs-car gives the directory
    node = await _start(tmp_path, "n", datasets=[corpus])
    try:
        async with http.get(f"{node.url}/v1/holdings") as resp:
            held = await resp.json()
        assert held["datasets"] == [cid] and held["truncated"] is False
        result = await verify(_by_cid(cid), [node.url], 1, records=records)
        assert result.result_cid == WORDCOUNT_RESULT
        assert node.node.blobs.tree(cid) is None  # mounted from the dataset, never stored as a blob
        async with http.get(f"{node.url}/v1/blobs/{cid}") as resp:  # public: peers may fetch it
            assert resp.status == 200 and resp.content_type == "application/vnd.ipld.car"
    finally:
        await node.stop()


async def test_a_changed_dataset_is_never_mounted_under_its_old_cid(tmp_path: Path, corpus: Path,
                                                                    records: Records,
                                                                    http: aiohttp.ClientSession) -> None:
    old = str(cid_of_tree(corpus))
    node = await _start(tmp_path, "n", datasets=[corpus])
    try:
        (corpus / "moby.txt").write_bytes(b"Call me Ishmael.\n")  # same name, new bytes
        new = ipfs_car_cid(corpus, tmp_path / "c.car")
        assert new != old
        wasm = WORDCOUNT.read_bytes()
        async with http.put(f"{node.url}/v1/blobs/{module_cid(wasm)}", data=wasm) as resp:
            assert resp.status in (200, 201)
        spec = JobSpec(module=module_cid(wasm), inputs=(Input(cid=old, path="/inputs"),))
        async with http.post(f"{node.url}/v1/jobs", json={"spec": spec.to_dict()}) as resp:
            body = await resp.json()
            assert resp.status == 409 and body["missing"] == [old], body
        async with http.get(f"{node.url}/v1/holdings") as resp:
            assert (await resp.json())["datasets"] == [new]
        result = await verify(_by_cid(new), [node.url], 1, records=records, output_dir=tmp_path / "out")
        assert result.answers[0].result_cid == result.result_cid
        assert "1 3 17 /inputs/moby.txt" in (tmp_path / "out" / "outputs" / "count.txt").read_text()
    finally:
        await node.stop()


def test_offers_notice_a_change_after_the_mount(corpus: Path) -> None:
    offers = Offers([corpus])
    (cid,) = offers.datasets
    assert offers.dataset(cid) == corpus.resolve()
    (corpus / "more" / "cod.txt").write_bytes(b"changed\n")
    assert offers.dataset(cid) is None and offers.dataset_cids() == [str(cid_of_tree(corpus))]


def test_a_dataset_that_is_not_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(Exception, match="not a directory"):
        Offers([tmp_path / "f"])


async def test_a_private_module_runs_and_is_never_served(tmp_path: Path, records: Records,
                                                         http: aiohttp.ClientSession) -> None:
    wasm = HELLO.read_bytes()
    cid = ipfs_car_cid(HELLO, tmp_path / "h.car")
    nodes = [await _start(tmp_path, f"n{i}", private_modules=[HELLO]) for i in range(2)]
    try:
        spec = JobSpec(module=cid, args=("hello.wasm",))
        job = PreparedJob(spec, b"")  # this requester has no bytes of the module
        result = await verify(job, [n.url for n in nodes], 2, records=records)
        assert result.outcome == "verified" and result.result_cid == load_vector("hello")["expect"]["result_cid"]
        for node in nodes:
            async with http.get(f"{node.url}/v1/blobs/{cid}") as resp:
                assert resp.status == 404
            async with http.get(f"{node.url}/v1/holdings", params={"cid": cid}) as resp:
                held = await resp.json()
            assert held["private_modules"] == [cid] and held["modules"] == [] and held["blobs"] == []
        assert module_cid(wasm) == cid
    finally:
        for node in nodes:
            await node.stop()


async def test_holdings_answer_about_the_cids_asked(tmp_path: Path, corpus: Path,
                                                   http: aiohttp.ClientSession) -> None:
    node = await _start(tmp_path, "n", datasets=[corpus])
    try:
        wasm = HELLO.read_bytes()
        async with http.put(f"{node.url}/v1/blobs/{module_cid(wasm)}", data=wasm) as resp:
            assert resp.status == 201
        dataset = str(cid_of_tree(corpus))
        absent = module_cid(b"\0asm\1\0\0\0")
        async with http.get(f"{node.url}/v1/holdings", params=[("cid", module_cid(wasm)), ("cid", absent)]) as resp:
            held = await resp.json()
        assert held == {"datasets": [], "modules": [module_cid(wasm)], "private_modules": [],
                        "blobs": [module_cid(wasm)], "inside": [], "truncated": False}
        async with http.get(f"{node.url}/v1/holdings", params={"cid": dataset}) as resp:
            assert (await resp.json())["datasets"] == [dataset]
        async with http.get(f"{node.url}/v1/holdings", params={"cid": "../etc"}) as resp:
            assert resp.status == 400
    finally:
        await node.stop()


async def test_the_verifier_goes_to_the_data(tmp_path: Path, corpus: Path, records: Records) -> None:
    """Three nodes, one holding the dataset: N=1 goes to it; require_local refuses N=2."""
    cid = str(cid_of_tree(corpus))
    bare = [await _start(tmp_path, f"bare{i}") for i in range(2)]
    holder = await _start(tmp_path, "holder", datasets=[corpus])
    urls = [n.url for n in bare] + [holder.url]
    try:
        for _ in range(2):  # whatever the reputation says, the holder comes first
            result = await verify(_by_cid(cid), urls, 1, records=records)
            assert [a.url for a in result.answers] == [holder.url]
            assert result.result_cid == WORDCOUNT_RESULT
        local = await verify(_by_cid(cid), urls, 1, records=records, require_local=True)
        assert [a.url for a in local.answers] == [holder.url]
        with pytest.raises(NotEnoughNodes) as refused:
            await verify(_by_cid(cid), urls, 2, records=records, require_local=True)
        assert "(--require-local)" in str(refused.value)
        # the bare nodes answered: they are left out for what they lack, not called unreachable
        assert "unreachable" not in str(refused.value) and f"left out: {bare[0].url} (does not hold " in str(
            refused.value)
        assert all(n.node.fetcher.fetched_bytes == 0 for n in bare + [holder])
    finally:
        for node in bare + [holder]:
            await node.stop()


async def test_a_node_local_path_is_never_verified_on_several_nodes(records: Records) -> None:
    from cod.errors import SpecError

    spec = JobSpec(module=module_cid(WORDCOUNT.read_bytes()), inputs=(Input(local=str(VECTORS / "data")),))
    with pytest.raises(SpecError, match=r"inputs\[0\]\.local") as refused:
        await verify(PreparedJob(spec, WORDCOUNT.read_bytes()), ["http://127.0.0.1:9"], 2, records=records)
    assert "cod serve --dataset" in (refused.value.hint or "")


async def test_a_private_module_job_goes_only_to_nodes_that_offer_it(tmp_path: Path, records: Records) -> None:
    cid = module_cid(HELLO.read_bytes())
    offering = [await _start(tmp_path, f"o{i}", private_modules=[HELLO]) for i in range(2)]
    plain = [await _start(tmp_path, f"p{i}") for i in range(2)]
    try:
        job = PreparedJob(JobSpec(module=cid, args=("hello.wasm",)), b"")
        urls = [n.url for n in plain] + [n.url for n in offering]
        result = await verify(job, urls, 2, records=records)
        assert result.outcome == "verified"
        assert sorted(a.url for a in result.answers) == sorted(n.url for n in offering)
        with pytest.raises(NotEnoughNodes) as refused:
            await verify(job, urls, 3, records=records)
        assert "does not offer the module" in str(refused.value)
    finally:
        for node in offering + plain:
            await node.stop()
