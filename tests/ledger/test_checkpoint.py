"""cod.ledger.checkpoint against C2SP tlog-checkpoint's example and strict parsing rules."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cod.ledger.checkpoint import MAX_TREE_SIZE, Checkpoint, CheckpointError
from cod.ledger.note import NoteError, split_note

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "tlog" / "signed-notes.json"
ROOT = base64.b64encode(bytes(range(32))).decode()


def test_c2sp_example() -> None:
    note = json.loads(VECTORS.read_text(encoding="utf-8"))["c2sp"]["checkpoint_note"]
    text, _ = split_note(note.encode())
    cp = Checkpoint.parse(text.encode())
    assert cp.origin == "example.com/behind-the-sofa"
    assert cp.size == 20852163
    assert cp.root == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert cp.body() == text.encode()


def test_body_bytes_written_out() -> None:
    cp = Checkpoint("cod.example/ledger", 0, bytes(32))
    assert cp.body() == b"cod.example/ledger\n0\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
    ext = Checkpoint.parse(b"o\n3\n" + ROOT.encode() + b"\nextension one\n")
    assert ext.extensions == ("extension one",) and ext.body().endswith(b"\nextension one\n")


@pytest.mark.parametrize("body", [
    b"o\n03\n" + ROOT.encode() + b"\n",            # leading zero
    b"o\n-3\n" + ROOT.encode() + b"\n",            # sign
    b"o\n+3\n" + ROOT.encode() + b"\n",
    b"o\n 3\n" + ROOT.encode() + b"\n",
    b"o\n\xd9\xa3\n" + ROOT.encode() + b"\n",      # a non-ASCII digit
    b"o\n3\n" + ROOT.encode(),                     # no final newline
    b"o\n3\n",                                     # no root line
    b"\n3\n" + ROOT.encode() + b"\n",              # empty origin
    b"o\n3\n" + base64.b64encode(bytes(31)) + b"\n",   # root of 31 bytes
    b"o\n3\n" + ROOT.rstrip("=").encode() + b"\n",     # unpadded base64
    b"o\n3\n" + ROOT.encode()[:-2] + b"9=\n",          # non-canonical trailing bits
    b"o\n3\n" + ROOT.encode() + b"\n\n",               # empty extension line
    b"o\xff\n3\n" + ROOT.encode() + b"\n",             # not UTF-8
    b"o\t\n3\n" + ROOT.encode() + b"\n",               # control character
    b"o\n" + str(MAX_TREE_SIZE + 1).encode() + b"\n" + ROOT.encode() + b"\n",
    b"o\n" + b"9" * 40 + b"\n" + ROOT.encode() + b"\n",
    b"o\n3\n" + ROOT.encode() + b"\n" + b"x" * 20000 + b"\n",
])
def test_malformed_refused(body: bytes) -> None:
    with pytest.raises(CheckpointError) as info:
        Checkpoint.parse(body)
    assert isinstance(info.value, NoteError)


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x2FFF, exclude_characters="+"), min_size=1,
               max_size=40),
       st.integers(0, MAX_TREE_SIZE), st.binary(min_size=32, max_size=32))
def test_round_trip(origin: str, size: int, root: bytes) -> None:
    cp = Checkpoint(origin, size, root)
    assert Checkpoint.parse(cp.body()) == cp
    lines = cp.body().decode().split("\n")
    assert lines == [origin, str(size), base64.b64encode(root).decode(), ""]
