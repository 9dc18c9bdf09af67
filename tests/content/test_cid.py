from __future__ import annotations

import pytest

from cod.content.cid import CID, DAG_PB, RAW, read_varint, varint
from cod.errors import CIDError


def test_raw_cid_of_hello_world_matches_kubo_fixture() -> None:
    # kubo test/cli/add_test.go: shortStringCidV1 (cidv1, raw, sha2-256 of "hello world")
    assert str(CID.of(RAW, b"hello world")) == "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"


def test_parse_round_trips() -> None:
    cid = CID.of(DAG_PB, b"some block")
    assert CID.parse(str(cid)) == cid
    assert CID.from_bytes(cid.binary) == cid
    assert cid.codec_name == "dag-pb"


@pytest.mark.parametrize("bad", ["", "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD" + "x", "QmOOOO" + "1" * 40,
                                 "b!!!!!!!!!!!!", "bafy"])
def test_parse_rejects_what_is_not_a_cidv1(bad: str) -> None:
    with pytest.raises(CIDError):
        CID.parse(bad)


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 2**35, 2**63 - 1])
def test_varint_round_trip(n: int) -> None:
    assert read_varint(varint(n)) == (n, len(varint(n)))


def test_varint_known_bytes() -> None:
    assert varint(300) == b"\xac\x02"
    with pytest.raises(CIDError):
        read_varint(b"\x80")
