"""The fraud proof's strict parse, canonical bytes and ID (cod.fraud.proof, SPEC 11.5).

Proofs are written out by hand (tests/fraud/kit.py) over the wordcount vector's job and
statements signed with real Ed25519 keys; the proof ID is recomputed here with hashlib and
base32, not with cod's CID code."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from typing import Any

import pytest

from cod.errors import FraudProofError
from cod.fraud import FRAUD_MAX_BYTES, FraudProof, build

from .kit import HONEST, LIE, SPEC, WORDCOUNT, key, proof_obj, signed


def raw_cid(data: bytes) -> str:
    """CIDv1, raw codec (0x55), sha2-256 multihash, base32 lower without padding: by hand."""
    binary = bytes([0x01, 0x55, 0x12, 0x20]) + hashlib.sha256(data).digest()
    return "b" + base64.b32encode(binary).decode().lower().rstrip("=")


def test_a_hand_written_proof_parses_and_its_id_is_the_raw_cid_of_its_canonical_bytes() -> None:
    liar = key(7)
    obj = proof_obj(signed(liar, LIE))
    proof = FraudProof.parse(obj)
    expected = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    assert proof.canonical_bytes() == expected and proof.to_json() == obj
    assert proof.proof_id == raw_cid(expected)
    assert (proof.liar, proof.job_cid, proof.profile) == (liar.node_id, WORDCOUNT["job_cid"], WORDCOUNT["profile"])
    assert FraudProof.from_bytes(expected).proof_id == proof.proof_id
    # build() gives the same document as writing it out by hand
    built = build(SPEC, signed(liar, LIE), result_cid=HONEST, exit_code=0, trap=None,
                  fuel_used=WORDCOUNT["expect"]["fuel_used"])
    assert built.canonical_bytes() == expected


def _refused(obj: Any, *words: str) -> str:
    with pytest.raises(FraudProofError) as caught:
        FraudProof.parse(obj)
    message = str(caught.value)
    assert caught.value.code == 28
    for word in words:
        assert word in message, message
    return message


def test_a_bad_signature_is_refused_naming_the_node() -> None:
    liar = key(7)
    obj = proof_obj(signed(liar, LIE))
    forged = copy.deepcopy(obj)
    forged["claim"]["statement"]["result"] = "bafybeihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    _refused(forged, "claim's signature", "does not verify", liar.node_id)
    other = copy.deepcopy(obj)  # signed by another key than the one its node ID names
    other["claim"]["signature"] = signed(key(8), LIE).to_json()["signature"]
    _refused(other, "does not verify", liar.node_id)


def test_a_job_cid_mismatch_is_refused() -> None:
    obj = proof_obj(signed(key(7), LIE))
    obj["job"] = dict(obj["job"], args=["main.wasm", "-v"])  # the spec the liar did not sign
    _refused(obj, "the claim is for job " + WORDCOUNT["job_cid"], "not the one the liar signed")


def test_a_node_id_that_holds_no_key_is_refused() -> None:
    claim = signed(key(7), LIE).to_json()
    claim["statement"]["node"] = "12D3KooWnotakey"
    _refused(proof_obj_raw(claim), "'12D3KooWnotakey' is not a node ID")


def proof_obj_raw(claim: dict[str, Any]) -> dict[str, Any]:
    obj = proof_obj(signed(key(7), LIE))
    obj["claim"] = claim
    return obj


@pytest.mark.parametrize("where, key_, value, words", [
    ((), "extra", 1, ["'(proof)'", "unknown key 'extra'"]),
    (("claim",), "note", "x", ["'claim'", "unknown key 'note'"]),
    (("claim", "statement"), "seen", 1, ["'claim.statement'", "unknown key 'seen'"]),
    (("referee",), "job_fuel", 1, ["'referee'", "unknown key 'job_fuel'"]),
])
def test_unknown_keys_are_refused_naming_where(where: tuple[str, ...], key_: str, value: Any,
                                                words: list[str]) -> None:
    obj = proof_obj(signed(key(7), LIE))
    target = obj
    for name in where:
        target = target[name]
    target[key_] = value
    _refused(obj, *words)


@pytest.mark.parametrize("path, value, words", [
    (("type",), "cod/fraud-proof/v2", ["'type'", "v2"]),
    (("referee", "method"), "vote", ["'referee.method'", "'vote'", "self, bisect, audit"]),
    (("referee", "exit_code"), True, ["'referee.exit_code'", "integer"]),
    (("referee", "fuel_used"), -1, ["'referee.fuel_used'", "outside"]),
    (("referee", "result_cid"), "not-a-cid", ["'referee.result_cid'"]),
    (("referee", "result_cid"), LIE, ["accuses nobody"]),
    (("segment",), {}, ["'segment'", "null for method 'self'"]),
    (("sources",), ["file:///etc/passwd"], ["'sources[0]'", "http"]),
    (("sources",), "http://x:1", ["'sources'", "a list"]),
    (("claim", "statement", "fuel_used"), "818", ["'claim.statement.fuel_used'", "integer"]),
    (("claim", "signature"), "!!", ["'claim.signature'", "base64"]),
])
def test_wrong_values_are_refused_naming_the_field(path: tuple[str, ...], value: Any, words: list[str]) -> None:
    obj = proof_obj(signed(key(7), LIE))
    target = obj
    for name in path[:-1]:
        target = target[name]
    target[path[-1]] = value
    _refused(obj, *words)


def test_missing_keys_and_a_job_not_in_canonical_form_are_refused() -> None:
    obj = proof_obj(signed(key(7), LIE))
    del obj["sources"]
    _refused(obj, "missing key 'sources'")
    short = proof_obj(signed(key(7), LIE))
    del short["job"]["limits"]  # the same job CID (defaults), but not the one canonical document
    _refused(short, "'job'", "canonical form")


def test_altered_proof_bytes_are_refused() -> None:
    data = FraudProof.parse(proof_obj(signed(key(7), LIE))).canonical_bytes()
    honest_at = data.index(HONEST.encode())
    flipped = data[:honest_at + 10] + b"1" + data[honest_at + 11:]  # not a base32 digit in the referee's CID
    with pytest.raises(FraudProofError, match="referee.result_cid"):
        FraudProof.from_bytes(flipped)
    # the referee's part is not signed: another well-formed CID there is another proof (another
    # ID), which check() judges by its own re-execution all the same (tests/fraud/test_check.py)
    other = data[:honest_at + 10] + b"x" + data[honest_at + 11:]
    assert FraudProof.from_bytes(other).proof_id == raw_cid(other) != raw_cid(data)
    lie_at = data.index(LIE.encode())
    changed = data[:lie_at] + HONEST.encode() + data[lie_at + len(LIE):]  # the claim made to say the truth
    with pytest.raises(FraudProofError, match="does not verify"):
        FraudProof.from_bytes(changed)
    with pytest.raises(FraudProofError, match="not strict JSON"):
        FraudProof.from_bytes(data[:-1])
    with pytest.raises(FraudProofError, match="not strict JSON.*appears twice|twice"):
        FraudProof.from_bytes(b'{"type":"a","type":"b"}')


def test_oversized_proofs_are_refused() -> None:
    with pytest.raises(FraudProofError, match=f"more than the {FRAUD_MAX_BYTES}"):
        FraudProof.from_bytes(b" " * (FRAUD_MAX_BYTES + 1))
    obj = proof_obj(signed(key(7), LIE))
    obj["job"] = dict(obj["job"], env={"PAD": "x" * FRAUD_MAX_BYTES})  # canonical but over the cap
    claim = signed(key(7), LIE, job=str(type(SPEC).from_dict(obj["job"]).cid))
    obj["claim"] = claim.to_json()
    _refused(obj, f"more than the {FRAUD_MAX_BYTES}")


def test_a_bisection_proof_needs_its_segment() -> None:
    claim = signed(key(7), LIE)
    segment = {"start_fuel": 1000, "end_fuel": 2000, "agreed_hash": "a" * 64, "claimed_hash": "b" * 64,
               "referee_hash": "c" * 64, "checkpoints": {"node": key(7).node_id, "hashes": ["b" * 64]}}
    obj = proof_obj(claim, method="bisect")
    obj["segment"] = segment
    proof = FraudProof.parse(obj)
    assert proof.method == "bisect" and proof.to_json()["segment"] == segment
    nulled = proof_obj(claim, method="bisect")
    _refused(nulled, "'segment'", "expected an object")
    for change, words in [({"end_fuel": 1000}, ["'segment.end_fuel'", "not after"]),
                          ({"agreed_hash": "A" * 64}, ["'segment.agreed_hash'", "hex"]),
                          ({"referee_hash": "b" * 64}, ["shows no lie"]),
                          ({"checkpoints": {"x": 1.5}}, ["'segment.checkpoints.x'", "float"])]:
        bad = proof_obj(claim, method="bisect")
        bad["segment"] = dict(segment, **change)
        _refused(bad, *words)
