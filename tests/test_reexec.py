"""Re-execution away from the nodes (cod.reexec): content gathered by CID from real nodes on
loopback, checked, bounded in bytes; then the job run here. Expected values are the vectors'."""

from __future__ import annotations

from pathlib import Path

from cod.content.store import ContentStore
from cod.local import prepare
from cod.reexec import gather, lacking, reexecute
from cod.wasm.engine import Engine
from verifier import Devstack, Records, verify

from .helpers import VECTORS, load_vector

WORDCOUNT = load_vector("wordcount")


async def test_gather_fetches_the_module_and_inputs_by_cid_and_the_rerun_equals_the_vector(
        records: Records, tmp_path: Path) -> None:
    job = prepare(VECTORS / "wordcount.wasm", [], inputs=[str(VECTORS / "data" / "wordcount")])
    async with Devstack(1, base_dir=tmp_path / "stack") as stack:
        done = await verify(job, stack.urls, 1, records=records)  # the node now holds module and input
        assert done.result_cid == WORDCOUNT["expect"]["result_cid"]
        store = ContentStore(tmp_path / "store")
        empty = await gather(job.spec, [], store)
        assert lacking(empty) == f"this requester does not hold the module {job.spec.module}"
        starved = await gather(job.spec, stack.urls, ContentStore(tmp_path / "small"), max_bytes=64)
        assert lacking(starved) is not None  # 64 bytes hold neither the module nor the input
        got = await gather(job.spec, stack.urls, store)
    assert lacking(got) is None and got.wasm == (VECTORS / "wordcount.wasm").read_bytes()
    ruling = reexecute(got, Engine(tmp_path / "cache").profile, cache_dir=tmp_path / "cache")
    assert ruling.refused is None and ruling.result_cid == WORDCOUNT["expect"]["result_cid"]


async def test_gather_never_takes_bytes_that_do_not_hash_to_the_module_cid(tmp_path: Path) -> None:
    """A store entry under the module's CID whose bytes changed is not the module: it stays missing."""
    job = prepare(VECTORS / "wordcount.wasm", [], inputs=[str(VECTORS / "data" / "wordcount")])
    store = ContentStore(tmp_path / "store")
    store.add(VECTORS / "wordcount.wasm")
    held = store.get(job.spec.module)
    assert held is not None
    held.chmod(0o644)
    held.write_bytes(b"\0asm\1\0\0\0")
    got = await gather(job.spec, [], store)
    assert got.wasm == b"" and lacking(got) == f"this requester does not hold the module {job.spec.module}"
