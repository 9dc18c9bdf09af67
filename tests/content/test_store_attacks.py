"""Attacks on the requester's content store (cod.content.store) and `cod add`: bytes that no
longer hash to their CID, special files, a store inside what is added, odd COD_STORE values,
and a hostile gateway behind a local run.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from aiohttp import web

from cod.content.cid import CID
from cod.content.store import ContentStore
from cod.content.unixfs import cid_of_tree, module_cid
from cod.errors import InputError
from cod.local import prepare, run_prepared
from cod.wasm.engine import Engine

from ..hostile_gateway import Gateway, car_of
from ..node_kit import CAR_TYPE, car, raw


def _tamper(path: Path, data: bytes) -> None:
    os.chmod(path, 0o644)
    path.write_bytes(data)


def test_cod_run_cid_never_runs_store_bytes_that_do_not_hash_to_the_cid(tmp_path: Path) -> None:
    """Attack 6: `cod run CID` with a store file whose bytes were changed. The requester asked
    for module CID; a job of another module must not be prepared in its name."""
    from ..helpers import VECTORS

    store = ContentStore(tmp_path / "store")
    hello = VECTORS / "hello.wasm"
    cid = store.add(hello)
    found = store.get(cid)
    assert found is not None
    _tamper(found, (VECTORS / "wordcount.wasm").read_bytes())  # another valid module
    with pytest.raises(InputError):
        job = prepare(cid, [], resolve=store.get)
        assert job.spec.module == cid, f"asked for module {cid}, prepared {job.spec.module}"


def test_an_input_by_cid_never_mounts_store_bytes_that_do_not_hash_to_the_cid(tmp_path: Path,
                                                                               engine: Engine) -> None:
    """Attack 6: -i CID:/inputs/t.txt with the stored file changed: a local run would read the
    changed bytes under the spec's CID (the executor never re-hashes inputs)."""
    from ..helpers import VECTORS

    store = ContentStore(tmp_path / "store")
    text = tmp_path / "t.txt"
    text.write_bytes(b"one two three\n")
    cid = store.add(text)
    found = store.get(cid)
    assert found is not None
    _tamper(found, b"four\n")
    with pytest.raises(InputError):
        job = prepare(VECTORS / "wordcount.wasm", [], inputs=[f"{cid}:/inputs/t.txt"], resolve=store.get)
        result = run_prepared(job, tmp_path / "out", engine)
        stdout = (result.results_dir / "stdout").read_bytes()
        assert b"four" not in stdout and b" 1 " not in stdout, stdout


def test_a_tree_by_cid_never_mounts_store_bytes_that_do_not_hash_to_the_cid(tmp_path: Path) -> None:
    """Attack 6: the same with a stored directory whose file was changed in place."""
    from ..helpers import VECTORS

    store = ContentStore(tmp_path / "store")
    tree = tmp_path / "d"
    tree.mkdir()
    (tree / "a.txt").write_bytes(b"one two three\n")
    cid = store.add(tree)
    found = store.get(cid)
    assert found is not None and found.is_dir()
    os.chmod(found, 0o755)
    _tamper(found / "a.txt", b"four\n")
    with pytest.raises(InputError):
        prepare(VECTORS / "wordcount.wasm", [], inputs=[f"{cid}:/inputs"], resolve=store.get)


def test_cod_add_refuses_special_files_without_hanging(tmp_path: Path) -> None:
    """Attack 6: a FIFO (opening it would block for ever), a directory holding a socket or a
    FIFO, a /proc file (its bytes change between reads) and a symlink to the store itself."""
    import socket

    store = ContentStore(tmp_path / "store")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InputError):
        store.add(fifo)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a").write_bytes(b"a\n")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tree / "s"))
        with pytest.raises(InputError):
            store.add(tree)
    finally:
        sock.close()
    (tree / "s").unlink()
    os.mkfifo(tree / "p")
    with pytest.raises(InputError):
        store.add(tree)
    try:
        cid = store.add("/proc/self/stat")
    except InputError:
        pass
    else:  # it was still between reads: then what is stored is what the CID names
        found = store.get(cid)
        assert found is not None and str(cid_of_tree(found)) == cid
    assert not [p for p in (tmp_path / "store" / "tmp").iterdir()], "a spool file was left behind"


async def test_a_local_run_never_takes_a_hostile_gateway_s_bytes_into_the_store(
        tmp_path: Path, gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack 2/6: a local run fetches a CID it lacks into the requester's store (the
    configured gateways). A gateway answering the module's CID with another module's CAR,
    or the input's with a CAR of other bytes, puts nothing in the store and runs nothing."""
    from cod.content.store import resolver

    from ..helpers import VECTORS

    monkeypatch.setenv("COD_STORE", str(tmp_path / "store"))
    hello = (VECTORS / "hello.wasm").read_bytes()
    other = (VECTORS / "wordcount.wasm").read_bytes()
    hello_cid = module_cid(hello)
    wanted, _ = car_of(b"wanted bytes\n")
    _, other_car = car_of(b"other bytes\n")
    module_car = car([CID.parse(module_cid(other))], [raw(other)]) if len(other) < 1 << 20 else b""
    assert module_car

    async def answer(request: web.Request) -> web.StreamResponse:
        body = module_car if hello_cid in request.path else other_car
        return web.Response(body=body, content_type=CAR_TYPE)

    gateway.handler = answer
    resolve = resolver([], [gateway.url])
    with pytest.raises(InputError):
        await asyncio.to_thread(prepare, f"ipfs://{hello_cid}", [], resolve=resolve)
    job = await asyncio.to_thread(prepare, VECTORS / "wordcount.wasm", [], inputs=[f"{wanted}:/inputs/f"],
                                  resolve=resolve)
    assert job.sources == {}  # not fetched: nothing to mount here
    assert len(gateway.requests) >= 2
    store = ContentStore(tmp_path / "store")
    assert not store.has(hello_cid) and not store.has(wanted) and not store.has(module_cid(other))


def test_cod_add_of_a_directory_holding_the_store_is_refused_clearly(tmp_path: Path) -> None:
    """Attack 6: `cod add ~` with the store under ~ (the default): the store's own spool file
    changed the tree while it was added, so it always failed with "changed while it was
    added ... add it again" (it never can be), after hashing every stored copy."""
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    (home / "data" / "a").write_bytes(b"a\n")
    store = ContentStore(home / ".local" / "store")
    store.add(home / "data")
    with pytest.raises(InputError) as caught:
        store.add(home)
    assert "again" not in (caught.value.hint or "") and "store" in caught.value.message
    with pytest.raises(InputError):
        store.add(home / ".local" / "store" / "trees")


def test_cod_store_pointing_at_a_symlink_a_file_or_a_node_blob_dir(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack 6: COD_STORE naming a symlink to a directory works (through the link), a regular
    file is a clear InputError, and a node's blob directory is a store whose entries are
    still checked against their CIDs on the way in and out."""
    from cod.content.store import default_root, lookup

    real = tmp_path / "real-store"
    real.mkdir()
    link = tmp_path / "link-store"
    link.symlink_to(real)
    text = tmp_path / "t.txt"
    text.write_bytes(b"stored\n")
    monkeypatch.setenv("COD_STORE", str(link))
    assert default_root() == link
    cid = ContentStore().add(text)
    assert lookup(cid) is not None and (real / "files" / cid).read_bytes() == b"stored\n"
    afile = tmp_path / "a-file"
    afile.write_bytes(b"")
    monkeypatch.setenv("COD_STORE", str(afile))
    with pytest.raises(InputError):
        ContentStore().add(text)
    node_blobs = tmp_path / "node" / "blobs"
    monkeypatch.setenv("COD_STORE", str(node_blobs))
    cid = ContentStore().add(text)
    found = lookup(cid)
    assert found is not None
    _tamper(found, b"tampered\n")
    from ..helpers import VECTORS

    with pytest.raises(InputError):
        prepare(VECTORS / "wordcount.wasm", [], inputs=[f"{cid}:/inputs/t.txt"], resolve=lookup)
