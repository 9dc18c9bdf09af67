"""Attacks on preparing a local run (cod.local): odd CID spellings of inputs and modules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cod.content.cid import CID, RAW
from cod.errors import InputError
from cod.local import prepare


def test_input_cid_edge_cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack 6: ipfs://CID/sub/path, ipfs:// alone, a CID-looking host path, a dangling
    CID-named symlink and a CIDv0 give clear errors or the right CID, never a traceback."""
    from cod.errors import CodError
    from cod.local import input_cid, parse_mount

    from .helpers import VECTORS

    text = b"x\n"
    cid = str(CID.of(RAW, text))
    monkeypatch.chdir(tmp_path)
    for bad in (f"ipfs://{cid}/sub/path", "ipfs://", "ipfs://nope", "ipfs://:/x", f"ipfs://{cid}?x=1"):
        with pytest.raises(CodError):
            src, _ = parse_mount(bad)
            input_cid(src)
    assert parse_mount(f"ipfs://{cid}:/in/f") == (f"ipfs://{cid}", "/in/f")
    assert input_cid(f"ipfs://{cid}/") == cid
    Path(cid).write_bytes(b"a host file named like a CID\n")
    assert input_cid(cid) is None  # the path wins
    assert input_cid(f"ipfs://{cid}") == cid
    os.unlink(cid)
    os.symlink("/nonexistent", cid)
    assert input_cid(cid) is None
    with pytest.raises(InputError):
        prepare(VECTORS / "wordcount.wasm", [], inputs=[cid])
    v0 = "QmSsw6EcnwEiTT9c4rnAGeSENvsJMepNHmbrgi2S9bXNJr"
    assert input_cid(v0) == str(CID.parse(v0)) and input_cid(v0).startswith("bafybei")  # type: ignore[union-attr]


def test_a_bad_ipfs_module_is_reported_as_the_module_not_as_an_input(tmp_path: Path) -> None:
    """Attack 6/7: `cod run ipfs://junk` said "-i 'ipfs://junk': ...", naming an option the
    user never gave."""
    with pytest.raises(InputError) as caught:
        prepare("ipfs://junk", [])
    assert "-i" not in caught.value.message and "module" in caught.value.message
