from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cod.errors import BadSignature
from cod.identity import Identity, node_id_of, public_key_of
from cod.statement import SignedStatement, Statement

JOB = "bagaaierad2vy5w6czbfd6tevtvd4uho4awsn3nz3scu2i54gobktwqabg2vq"
RESULT = "bafybeiawqaz5kwjljoj6gvc65hxehhbq3cxtzrfdyqswk4wagdup6pwx7u"


def _statement(identity: Identity, **changes: object) -> Statement:
    base = Statement(job=JOB, result=RESULT, node=identity.node_id, profile="p", exit_code=0, trap=None,
                     fuel_used=10)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_node_id_is_a_libp2p_ed25519_peer_id(tmp_path: Path) -> None:
    identity = Identity.load_or_create(tmp_path)
    assert identity.node_id.startswith("12D3KooW")
    assert public_key_of(identity.node_id) == identity.public_key
    assert node_id_of(identity.public_key) == identity.node_id
    assert (tmp_path / "node.key").stat().st_mode & 0o777 == 0o600
    assert Identity.load_or_create(tmp_path).node_id == identity.node_id  # kept across restarts


def test_signed_statement_round_trip(tmp_path: Path) -> None:
    identity = Identity.load_or_create(tmp_path)
    signed = _statement(identity).sign(identity)
    again = SignedStatement.from_json(signed.to_json())
    assert again.verify(JOB, identity.node_id) == signed.statement


def test_altered_forged_and_replayed_statements_are_rejected(tmp_path: Path) -> None:
    node = Identity.load_or_create(tmp_path / "a")
    other = Identity.load_or_create(tmp_path / "b")
    signed = _statement(node).sign(node)
    wire = signed.to_json()
    wire["statement"]["result"] = RESULT[:-1] + "a"  # altered in one byte
    with pytest.raises(BadSignature, match="does not verify"):
        SignedStatement.from_json(wire).verify(JOB, node.node_id)
    forged = SignedStatement(_statement(node), other.sign(_statement(node).canonical_bytes()))
    with pytest.raises(BadSignature, match="does not verify"):
        forged.verify(JOB, node.node_id)  # signed by another key
    with pytest.raises(BadSignature, match="replayed"):
        signed.verify("bagaaieraotherjob", node.node_id)  # a statement for another job
    with pytest.raises(BadSignature, match="names node"):
        signed.verify(JOB, other.node_id)  # presented as another node's answer
    with pytest.raises(BadSignature, match="malformed"):
        SignedStatement.from_json({"statement": {"job": JOB}, "signature": "!!"})
