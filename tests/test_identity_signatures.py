"""cod's one Ed25519 rule (SPEC 1, cod.identity.signature_valid) against C2SP CCTV's edge cases.

The expectation of each of the 914 vectors comes from its flags alone (CCTV's ed25519/README.md):
cod rejects a small-order A or R, a non-canonical encoding of A or R, and a signature that holds
only when the equation is multiplied by the cofactor; it accepts everything else, mixed-order
points included. Every part of cod that checks a signature goes through that one function: the
node's and requester's statements, ledger entries, signed notes and cosignatures; a signature
with S + L (valid for a verifier that does not check S < L) is refused by each of them alike.
"""

from __future__ import annotations

import ast
import base64
import json
import struct
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from cod.errors import BadSignature
from cod.identity import Identity, signature_valid, verify
from cod.ledger.entries import EntryRefused, parse_signed, sign_approval
from cod.ledger.note import CosignatureSigner, CosignatureVerifier, NoteError, Signer, Verifier, open_note
from cod.statement import SignedStatement, Statement

from .helpers import ROOT

VECTORS = json.loads((ROOT / "vectors" / "ed25519" / "ed25519vectors.json").read_text())
REJECTED = {"low_order_A", "low_order_R", "non_canonical_A", "non_canonical_R", "low_order_residue"}
L = 2**252 + 27742317777372353535851937790883648493  # the order of the base point (RFC 8032 5.1)


def expected(vector: dict[str, Any]) -> bool:
    return not REJECTED & set(vector["flags"] or [])


def test_the_vectors_are_all_there() -> None:
    assert len(VECTORS) == 914 and [v["number"] for v in VECTORS] == list(range(914))
    assert sum(map(expected, VECTORS)) == 43  # ORIGIN.md's count, from the flags


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"{v['number']}-{'+'.join(v['flags'] or ['plain'])}")
def test_each_cctv_vector_is_judged_by_the_rule_spec_1_states(vector: dict[str, Any]) -> None:
    key, sig, msg = bytes.fromhex(vector["key"]), bytes.fromhex(vector["sig"]), vector["msg"].encode()
    assert signature_valid(key, msg, sig) is expected(vector)


def _malleated(signature: bytes) -> bytes:
    """The same signature with S + L: equal modulo L, so only the S < L check refuses it."""
    s = int.from_bytes(signature[32:], "little") + L
    assert s < 2**256
    return signature[:32] + s.to_bytes(32, "little")


def test_s_plus_l_is_refused_by_every_path_that_checks_a_signature() -> None:
    identity = Identity(nacl.signing.SigningKey(bytes(range(32))))
    message = b"cod"
    good = identity.sign(message)
    assert signature_valid(identity.public_key, message, good)
    assert not signature_valid(identity.public_key, message, _malleated(good))
    with pytest.raises(BadSignature):
        verify(identity.node_id, message, _malleated(good))
    # a node's statement, as the requester and the ledger check it
    statement = Statement(job="bagaaierajob", result="bafyresult", node=identity.node_id, profile="p", exit_code=0,
                          trap=None, fuel_used=1)
    signed = statement.sign(identity)
    assert signed.verify("bagaaierajob", identity.node_id) == statement
    with pytest.raises(BadSignature):
        SignedStatement(statement, _malleated(signed.signature)).verify("bagaaierajob", identity.node_id)
    # a ledger entry (governance, decisions, blessings, refusals are all Signed)
    entry = sign_approval(identity, "a" * 64, origin="example.com/ledger")
    parse_signed(entry).verify()
    forged = dict(entry, signature=base64.b64encode(_malleated(base64.b64decode(entry["signature"]))).decode())
    with pytest.raises(EntryRefused):
        parse_signed(forged).verify()
    # a signed note (checkpoints) and a witness cosignature
    signer = Signer("example.com/log", nacl.signing.SigningKey(bytes(range(1, 33))))
    text = "example.com/log\n1\nAAAA\n"
    note = signer.sign(text)
    name, line = note.rsplit("\n", 2)[1].split(" ", 2)[1:]
    raw = base64.b64decode(line)
    assert open_note(note.encode(), [Verifier.from_vkey(signer.vkey)])
    bad_note = note.replace(line, base64.b64encode(raw[:4] + _malleated(raw[4:])).decode())
    with pytest.raises(NoteError):
        open_note(bad_note.encode(), [Verifier.from_vkey(signer.vkey)])
    witness = CosignatureSigner("witness.example", nacl.signing.SigningKey(bytes(range(2, 34))))
    cosigned = base64.b64decode(witness.cosign(text.encode(), 1700000000).split(" ")[-1])
    verifier = CosignatureVerifier.from_vkey(witness.vkey)
    assert verifier.timestamp_of(text.encode(), cosigned[4:]) == 1700000000
    assert struct.unpack(">Q", cosigned[4:12]) == (1700000000,)
    assert verifier.timestamp_of(text.encode(), cosigned[4:12] + _malleated(cosigned[12:])) is None
    assert name == "example.com/log"


def test_no_module_but_cod_identity_verifies_an_ed25519_signature_itself() -> None:
    """The one rule is one function: nothing else calls PyNaCl's or cryptography's verification."""
    offenders = []
    for path in sorted([*(ROOT / "cod").rglob("*.py"), *(ROOT / "verifier").rglob("*.py")]):
        if path == ROOT / "cod" / "identity.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            name = (node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else "")
            if name in ("VerifyKey", "crypto_sign_open", "crypto_sign_verify_detached", "Ed25519PublicKey"):
                offenders.append(f"{Path(path).relative_to(ROOT)}:{node.lineno} {name}")
    assert offenders == []
