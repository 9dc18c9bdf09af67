"""Entries: strict parsing, canonical bytes, signatures (checked with PyNaCl directly, not cod's verify)."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from typing import Any

import base58
import nacl.signing
import pytest
from hypothesis import given, settings, strategies as st

from cod.ledger import entries
from cod.ledger.entries import EntryRefused, parse_leaf, parse_signed
from tests.ledger.bkit import DATA, MOD, NODES, ORIGIN, RESULT, ROOTS, cid, key


def independent_canonical(value: Any) -> bytes:
    """Canonical JSON written here (sorted keys, no white space, UTF-8), not cod's canonical_json."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key_in(peer_id: str) -> bytes:
    raw = base58.b58decode(peer_id)
    assert raw[:6] == bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])
    return raw[6:]


def refused(obj: Any, kind: str | None = None) -> EntryRefused:
    with pytest.raises(EntryRefused) as info:
        parse_signed(obj, kind)
    return info.value


def decision(**over: Any) -> dict[str, Any]:
    fields = dict(job=cid("job"), result=RESULT, action="approve", datacap=1 << 40, reason="useful data",
                  eligibility=5, supersedes=None)
    fields.update(over)
    return entries.sign_decision(MOD, origin=ORIGIN, **fields)


def test_decision_bytes_signature_and_id_by_hand() -> None:
    signed = decision()
    statement = signed["statement"]
    assert statement == {"type": "cod/ledger/decision/v2", "job": cid("job"), "result": RESULT, "action": "approve",
                         "datacap": 1 << 40, "reason": "useful data", "moderator": MOD.node_id, "eligibility": 5,
                         "supersedes": None, "origin": "test.example/ledger"}
    # the signature is Ed25519 over the canonical bytes, by the key inside the moderator's peer ID
    nacl.signing.VerifyKey(key_in(MOD.node_id)).verify(independent_canonical(statement),
                                                       base64.b64decode(signed["signature"]))
    entry = parse_signed(signed, entries.DECISION)
    entry.verify()
    assert entries.leaf_bytes(entry) == independent_canonical(signed)
    # the leaf of a fixed statement, byte for byte (keys sorted, no spaces)
    assert entries.leaf_bytes(entry).startswith(b'{"signature":"') and b'"statement":{"action":"approve",' \
        b'"datacap":1099511627776,"eligibility":5,"job":"' in entries.leaf_bytes(entry)


def test_proposal_id_is_sha256_of_canonical_statement() -> None:
    signed = entries.sign_proposal(ROOTS[0], origin=ORIGIN, action="add", moderator=MOD.node_id, nonce="00" * 16)
    want = hashlib.sha256(independent_canonical(signed["statement"])).hexdigest()
    assert parse_signed(signed).body.proposal_id == want  # type: ignore[union-attr]
    text = ('{"action":"add","moderator":"%s","nonce":"%s","origin":"test.example/ledger","proposer":"%s",'
            '"type":"cod/ledger/proposal/v2"}' % (MOD.node_id, "00" * 16, ROOTS[0].node_id)).encode()
    assert want == hashlib.sha256(text).hexdigest()


@pytest.mark.parametrize("change, error", [
    (lambda s: s["statement"].pop("reason"), "lacks field 'reason'"),
    (lambda s: s["statement"].update(extra=1), "unknown field 'extra'"),
    (lambda s: s.update(extra=1), "unknown field 'extra'"),
    (lambda s: s["statement"].update(eligibility=True), "eligibility is not an integer"),
    (lambda s: s["statement"].update(eligibility="5"), "eligibility is not an integer"),
    (lambda s: s["statement"].update(eligibility=0), "out of range"),
    (lambda s: s["statement"].update(supersedes=False), "supersedes is not an integer"),
    (lambda s: s["statement"].update(reason="x" * 1001), "reason must be 1 to 1000"),
    (lambda s: s["statement"].update(reason=""), "reason must be 1 to 1000"),
    (lambda s: s["statement"].update(reason="a\nb"), "control character"),
    (lambda s: s["statement"].update(reason="a\x85b"), "control character"),
    (lambda s: s["statement"].update(reason="\ud800"), "lone surrogate"),
    (lambda s: s["statement"].update(action="approved"), "action is not one of"),
    (lambda s: s["statement"].update(job=cid("job").upper().replace("B", "b", 1)), "not in canonical form"),
    (lambda s: s["statement"].update(result="QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"),
         "not in canonical form (it is bafybei"),  # a CIDv0 reads as its CIDv1, which must be written
    (lambda s: s["statement"].update(moderator="12D3KooWnot"), "not an Ed25519 key ID"),
    (lambda s: s["statement"].update(moderator=MOD.node_id + "x"), "not an Ed25519 key ID"),
    (lambda s: s.update(signature="!!!!"), "not valid base64"),
    (lambda s: s.update(signature=base64.b64encode(bytes(63)).decode()), "canonical base64 of 64 bytes"),
    (lambda s: s.update(type="cod/ledger/bless/v1"), "the statement's type is not"),
    (lambda s: s["statement"].pop("origin"), "lacks field 'origin'"),
    (lambda s: s["statement"].update(origin="a b"), "origin holds white space"),
    (lambda s: s["statement"].update(origin="a+b"), "origin holds white space or '+'"),
    (lambda s: s["statement"].update(origin=""), "origin must be 1 to 255"),
    (lambda s: s["statement"].update(origin=None), "origin is not a string"),
    # a v1 decision (SPEC 12.4 "Versions") has no origin field
    (lambda s: s.update(type="cod/ledger/decision/v1") or s["statement"].update(type="cod/ledger/decision/v1"),
     "unknown field 'origin'"),
    (lambda s: s.update(statement=[]), "the statement's type is not"),
])
def test_malformed_decisions_are_400(change: Any, error: str) -> None:
    signed = decision()
    change(signed)
    exc = refused(signed)
    assert exc.status == 400 and exc.error == "BadEntry" and error in exc.message


def test_non_canonical_base64_signature_is_refused() -> None:
    signed = decision()
    raw = base64.b64decode(signed["signature"])
    text = base64.b64encode(raw).decode()
    assert text.endswith("==")
    # the last symbol before the padding carries 4 unused bits: set one, the bytes stay the same
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(text[-3])
    signed["signature"] = text[:-3] + alphabet[last | 1 if last % 2 == 0 else last & ~1] + "=="
    assert base64.b64decode(signed["signature"]) == raw
    assert "canonical" in refused(signed).message


def test_datacap_rules_are_422_bad_datacap() -> None:
    for action, datacap in (("approve", 0), ("approve", -1), ("approve", 2**60 + 1), ("reject", 1),
                            ("approve", True), ("approve", "1TiB")):
        exc = refused(decision(action=action, datacap=datacap))
        assert (exc.status, exc.error) == (422, "BadDatacap"), (action, datacap)
    assert parse_signed(decision(datacap=2**60)).body.datacap == 2**60  # type: ignore[union-attr]
    assert parse_signed(decision(action="reject", datacap=0)).body.action == "reject"  # type: ignore[union-attr]


def test_forged_and_altered_statements_fail_signature_check() -> None:
    signed = decision()
    altered = copy.deepcopy(signed)
    altered["statement"]["datacap"] = 1 << 50
    with pytest.raises(EntryRefused) as info:
        parse_signed(altered).verify()
    assert (info.value.status, info.value.error) == (422, "BadSignature")
    # a statement naming the moderator but signed by another key
    forged = entries.sign_decision(key(77), origin=ORIGIN, job=cid("job"), result=RESULT, action="approve", datacap=1,
                                   reason="r", eligibility=5, supersedes=None)
    forged["statement"]["moderator"] = MOD.node_id
    with pytest.raises(EntryRefused) as info:
        parse_signed(forged).verify()
    assert info.value.error == "BadSignature"


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["job", "result", "action", "datacap", "reason", "moderator", "eligibility", "supersedes"]),
       st.one_of(st.integers(-3, 2**61), st.text(max_size=70), st.none(), st.booleans()))
def test_any_changed_field_is_refused(field: str, value: Any) -> None:
    signed = decision()
    if signed["statement"][field] == value and type(signed["statement"][field]) is type(value):
        return
    signed["statement"][field] = value
    with pytest.raises(EntryRefused) as info:
        parse_signed(signed).verify()
    assert info.value.status in (400, 422)


def test_bless_batch_rules() -> None:
    good = entries.sign_bless_batch(MOD, {DATA: [9, 2, 2], cid("b"): []}, origin=ORIGIN)
    entry = parse_signed(good, entries.BLESS)
    assert [i.cid for i in entry.body.inputs] == sorted([DATA, cid("b")])  # type: ignore[union-attr]
    assert entry.body.inputs[[i.cid for i in entry.body.inputs].index(DATA)].deals == (2, 9)  # type: ignore
    for mutate, error in (
            (lambda s: s["statement"]["inputs"].reverse(), "sorted"),
            (lambda s: s["statement"]["inputs"].append(dict(s["statement"]["inputs"][-1])), "sorted"),
            (lambda s: s["statement"].update(inputs=[]), "1 to 1000"),
            (lambda s: s["statement"].update(source="csv"), "source"),
            (lambda s: s["statement"].update(nonce="A" * 32), "lowercase hex"),
            (lambda s: s["statement"]["inputs"][0].update(deals=[3, 1]), "sorted"),
            (lambda s: s["statement"]["inputs"][0].update(deals=[-1]), "out of range"),
            (lambda s: s["statement"]["inputs"][0].update(deals=[1.5]), "not an integer")):
        signed = copy.deepcopy(good)
        mutate(signed)
        assert error in refused(signed, entries.BLESS).message
    too_many = {cid(f"x{i}"): [] for i in range(1001)}
    assert "1 to 1000" in refused(entries.sign_bless_batch(MOD, too_many, origin=ORIGIN)).message


def test_bless_batches_split_so_every_leaf_fits() -> None:
    inputs = {cid(f"in {i}"): [i, i + 1] for i in range(2500)}
    batches = entries.bless_batches(MOD, inputs, origin=ORIGIN)
    assert len(batches) > 3
    seen = []
    for b in batches:
        leaf = entries.leaf_bytes(parse_signed(b, entries.BLESS))
        assert len(leaf) <= 65535
        seen += [i["cid"] for i in b["statement"]["inputs"]]
    assert seen == sorted(inputs)


def test_leaf_must_be_canonical_strict_and_small() -> None:
    signed = decision()
    leaf = independent_canonical(signed)
    assert isinstance(parse_leaf(leaf), entries.Signed)
    spaced = json.dumps(signed).encode()
    assert "not canonical" in _leaf_error(spaced).message
    dup = leaf[:-1] + b',"type":"cod/ledger/decision/v1"}'
    assert "not canonical" in _leaf_error(dup).message     # a repeated key never survives re-encoding
    assert "not strict JSON" in _leaf_error(b'{"a":1.5}').message
    assert "not strict JSON" in _leaf_error(b'{"a":NaN}').message
    assert "not strict JSON" in _leaf_error(b"\xff").message
    assert "not strict JSON" in _leaf_error(b"[" * 5000 + b"]" * 5000).message   # deeper than json recurses
    big = _leaf_error(b" " * 65536)
    assert (big.status, big.error) == (413, "TooLarge")


def _leaf_error(leaf: bytes) -> EntryRefused:
    with pytest.raises(EntryRefused) as info:
        parse_leaf(leaf)
    return info.value


def test_refusal_helper_matches_the_nodes_own() -> None:
    from cod.node.policy import sign_refusal as node_sign
    signed = node_sign(NODES[0], job=cid("job"), policy="fil-plus-only", inputs=[DATA, cid("x"), DATA], reason="no")
    entry = parse_signed(signed, entries.REFUSAL)
    entry.verify()
    assert entry.body.inputs == tuple(sorted({DATA, cid("x")}))  # type: ignore[union-attr]
    ours = entries.sign_refusal(NODES[0], job=cid("job"), policy="fil-plus-only", inputs=[DATA], reason="no",
                                nonce=signed["statement"]["nonce"])
    assert sorted(ours["statement"]) == sorted(signed["statement"])


def test_genesis_rules() -> None:
    from cod.ledger.entries import Genesis
    ids = sorted(r.node_id for r in ROOTS)
    g = Genesis("log.example", "log.example+01020304+AAAA", tuple(ids), 2)
    assert entries.parse_entry(g.to_json()) == g
    for change in ({"threshold": 0}, {"threshold": 4}, {"threshold": True}, {"root_keys": ids[::-1]},
                   {"root_keys": [ids[0], ids[0]]}, {"root_keys": []}, {"origin": "a b"}, {"origin": "a+b"}):
        with pytest.raises(EntryRefused):
            entries.parse_entry({**g.to_json(), **change})


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 58), st.sampled_from("abcdefghijklmnopqrstuvwxyz234567ABZ=01!"), st.integers(0, 2),
       st.binary(min_size=0, max_size=4), st.binary(min_size=30, max_size=34), st.sampled_from([b"\x12\x20", b"\x12\x1f"]))
def test_fast_cid_check_never_accepts_what_the_full_parse_refuses(pos: int, char: str, codec_pick: int, varint: bytes,
                                                                  digest: bytes, multihash: bytes) -> None:
    """check_cid's fast path (int(..., 32) in C) against cod.content.cid.CID.parse + str(): text and binary mutations."""
    from cod.content.cid import CID, DAG_PB, JSON, RAW
    from cod.errors import CIDError
    from cod.ledger.entries import _fast_cid

    def slow(text: str) -> bool:
        try:
            return str(CID.parse(text)) == text
        except CIDError:
            return False

    text = str(CID.of((RAW, DAG_PB, JSON)[codec_pick], b"x"))
    assert _fast_cid(text) and slow(text)
    mutated = text[:pos] + char + text[pos + 1:]
    assert not _fast_cid(mutated) or slow(mutated)
    raw = b"\x01" + varint + multihash + digest
    built = "b" + base64.b32encode(raw).decode().lower().rstrip("=")
    assert not _fast_cid(built) or slow(built)


json_values = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                                     max_size=4), max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_the_shared_encoder_writes_cods_canonical_json(value: Any) -> None:
    from cod.jobspec import canonical_json
    assert entries.canonical(value) == canonical_json(value) == independent_canonical(value)
