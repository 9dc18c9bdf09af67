"""cod.ledger.note against golang.org/x/mod/sumdb/note's vectors, C2SP's examples, and attacks.

Vectors: vectors/tlog/signed-notes.json (origin, commit and licence named in the file)."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cod.ledger.note import (
    MAX_NOTE_BYTES, MAX_SIGNATURE_LINE_BYTES, MAX_SIGNATURES, CosignatureSigner, CosignatureVerifier,
    NoteError, Signer, Verifier, append_signatures, cosignature_vkey_of, open_note, parse_signature_line,
    split_note, verify_cosignature, vkey_of,
)

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "tlog" / "signed-notes.json"


def vec() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))
    return data


def go_signer(skey: str) -> Signer:
    """Go's PRIVATE+KEY+<name>+<id>+base64(0x01 || seed) as a Signer."""
    parts = skey.split("+", 4)
    assert parts[:2] == ["PRIVATE", "KEY"]
    raw = base64.b64decode(parts[4])
    assert raw[0] == 1
    return Signer(parts[2], nacl.signing.SigningKey(raw[1:]))


def test_go_vector_keys_ids_and_signature() -> None:
    g = vec()["golang_note"]
    peter = go_signer(g["peter_skey"])
    assert peter.vkey == g["peter_vkey"]
    # key ID written out: SHA-256("PeterNeumann" || 0x0A || 0x01 || pub)[:4] = c74f20a3
    assert hashlib.sha256(b"PeterNeumann\n\x01" + peter.public_key).digest()[:4].hex() == "c74f20a3"
    assert peter.key_id.hex() == "c74f20a3"
    assert vkey_of("PeterNeumann", peter.public_key) == g["peter_vkey"]
    # Ed25519 is deterministic: our note must equal Go's byte for byte
    assert peter.sign(g["text"]) == g["signed_by_peter"]


def test_go_vector_open() -> None:
    g = vec()["golang_note"]
    peter, enoch = Verifier.from_vkey(g["peter_vkey"]), Verifier.from_vkey(g["enoch_vkey"])
    both = (g["text"] + "\n" + g["peter_sig_line"] + "\n" + g["enoch_sig_line"] + "\n").encode()
    assert open_note(both, [peter]) == (g["text"], ["PeterNeumann"])
    assert open_note(both, [peter, enoch]) == (g["text"], ["PeterNeumann", "EnochRoot"])
    assert open_note(both, [enoch, enoch]) == (g["text"], ["EnochRoot"])  # the same key twice is one key
    with pytest.raises(NoteError, match="no signature of a known key"):
        open_note(both, [])
    # a signature of a known key that fails: the whole note is refused (Go: invalid signature)
    line = g["peter_sig_line"]
    bad = (g["text"] + "\n" + line[:60] + "ABCD" + line[60:] + "\n").encode()
    with pytest.raises(NoteError, match="does not verify"):
        open_note(bad, [peter])
    # 101 signatures: over the bound (Go refuses them too)
    many = (g["text"] + "\n" + (line + "\n") * (MAX_SIGNATURES + 1)).encode()
    with pytest.raises(NoteError, match="at most"):
        open_note(many, [peter])
    # duplicated valid signatures are fine and counted once
    dup = (g["text"] + "\n" + (line + "\n") * 3).encode()
    assert open_note(dup, [peter])[1] == ["PeterNeumann"]


@pytest.mark.parametrize("index", range(6))
def test_go_vector_malformed_notes(index: int) -> None:
    g = vec()["golang_note"]
    msg = g["malformed_notes"][index]
    with pytest.raises(NoteError):
        open_note(msg.encode(), [Verifier.from_vkey(g["peter_vkey"])])


def test_not_utf8_refused() -> None:
    g = vec()["golang_note"]
    with pytest.raises(NoteError, match="UTF-8"):
        open_note(b"\xff" + g["signed_by_peter"].encode(), [Verifier.from_vkey(g["peter_vkey"])])


def test_go_vector_vkey_manglings_refused() -> None:
    g = vec()["golang_note"]
    vkey = g["peter_vkey"]
    Verifier.from_vkey(vkey)
    for bad in g["bad_vkeys"]:
        with pytest.raises(NoteError):
            Verifier.from_vkey(bad)
    for i in range(len(vkey) + 1):  # every proper substring (Go's TestNewVerifier)
        for j in range(i + 1, len(vkey) + 1):
            if (i, j) != (0, len(vkey)):
                with pytest.raises(NoteError):
                    Verifier.from_vkey(vkey[i:j])
    for i in range(len(vkey)):  # every one-character change
        with pytest.raises(NoteError):
            Verifier.from_vkey(vkey[:i] + chr(ord(vkey[i]) + 1) + vkey[i + 1:])


def test_c2sp_signed_note_example() -> None:
    c = vec()["c2sp"]
    v = Verifier.from_vkey(c["signed_note_vkey"])
    assert open_note(c["signed_note"].encode(), [v]) == ("This is an example message.\n", ["example.com/foo"])
    altered = c["signed_note"].replace("example message", "example massage")
    with pytest.raises(NoteError, match="does not verify"):
        open_note(altered.encode(), [v])


def test_c2sp_cosignature_layout_from_the_example() -> None:
    # tlog-cosignature.md: the cosignature line holds key ID || u64 timestamp || Ed25519 signature,
    # and the example's signed message says "time 1679315147".
    c = vec()["c2sp"]
    text, sigs = split_note(c["cosigned_checkpoint_note"].encode())
    witness = [s for s in sigs if s.name == "witness.example.com/w1"][0]
    assert len(witness.signature) == 8 + 64
    assert struct.unpack(">Q", witness.signature[:8])[0] == c["cosignature_example_timestamp"]
    assert c["cosigned_message_example"].endswith(text)


def test_wrong_key_id_is_an_unknown_key() -> None:
    key = nacl.signing.SigningKey(bytes(range(32)))
    s = Signer("log.example/a", key)
    note = s.sign("hello\n")
    sig = parse_signature_line(note.split("\n")[2])
    other_id = bytes([sig.key_id[0] ^ 1]) + sig.key_id[1:]
    forged = f"hello\n\n— log.example/a {base64.b64encode(other_id + sig.signature).decode()}\n"
    with pytest.raises(NoteError, match="no signature of a known key"):
        open_note(forged.encode(), [Verifier.from_vkey(s.vkey)])
    # same key ID, other name: also unknown
    renamed = note.replace("— log.example/a", "— log.example/b")
    with pytest.raises(NoteError, match="no signature of a known key"):
        open_note(renamed.encode(), [Verifier.from_vkey(s.vkey)])


def test_ambiguous_keys_refused() -> None:
    a = Verifier("n", b"\x00\x00\x00\x01", bytes(32))
    b = Verifier("n", b"\x00\x00\x00\x01", bytes([1]) * 32)
    with pytest.raises(NoteError, match="two different keys"):
        open_note(b"x\n\n\xe2\x80\x94 n AAAAAQA=\n", [a, b])


def test_bounds_and_syntax() -> None:
    s = Signer("log.example/a", nacl.signing.SigningKey(bytes(32)))
    v = Verifier.from_vkey(s.vkey)
    with pytest.raises(NoteError, match="at most"):
        open_note((("y" * MAX_NOTE_BYTES) + "\n\n" + s.signature_line("y\n") + "\n").encode(), [v])
    with pytest.raises(NoteError, match="at most"):
        s.sign("x" * MAX_NOTE_BYTES + "\n")
    long_line = "— other " + "A" * MAX_SIGNATURE_LINE_BYTES
    with pytest.raises(NoteError, match="at most"):
        open_note(s.sign("y\n").encode() + long_line.encode() + b"\n", [v])
    for bad_sig in ["— other AAAA!===", "— other QUJD", "— other", "—other QUJDREVG", "- other QUJDREVG",
                    "— other  QUJDREVG", "— other QUJDREVGRw"]:
        with pytest.raises(NoteError):
            open_note(s.sign("y\n").encode() + bad_sig.encode() + b"\n", [v])
    for bad_text in ["", "no newline", "tab\there\n", "cr\r\n"]:
        with pytest.raises(NoteError):
            s.sign(bad_text)
    for bad_name in ["", "a+b", "a b", "a\u00a0b", "a\nb"]:
        with pytest.raises(NoteError):
            Signer(bad_name, nacl.signing.SigningKey(bytes(32)))
    # a text may hold blank lines: the last blank line separates the signatures
    note = s.sign("a\n\nb\n")
    assert open_note(note.encode(), [v]) == ("a\n\nb\n", ["log.example/a"])


def test_cosignature_hand_derived() -> None:
    seed = hashlib.sha256(b"witness seed").digest()
    key = nacl.signing.SigningKey(seed)
    w = CosignatureSigner("witness.example/w1", key)
    pub = bytes(key.verify_key)
    body = b"example.com/log\n5\n" + base64.b64encode(bytes(32)) + b"\n"
    line = w.cosign(body, 1700000000)
    name, value = line[len("— "):].split(" ")
    raw = base64.b64decode(value)
    assert name == "witness.example/w1" and len(raw) == 4 + 8 + 64
    assert raw[:4] == hashlib.sha256(b"witness.example/w1\n\x04" + pub).digest()[:4]
    assert raw[4:12] == (1700000000).to_bytes(8, "big")
    message = b"cosignature/v1\ntime 1700000000\n" + body
    nacl.signing.VerifyKey(pub).verify(message, raw[12:])  # independent check with PyNaCl
    v = CosignatureVerifier.from_vkey(w.vkey)
    assert w.vkey == cosignature_vkey_of("witness.example/w1", pub)
    assert verify_cosignature(line, body, v) == 1700000000
    assert verify_cosignature(line + "\n", body, v) == 1700000000
    with pytest.raises(NoteError, match="does not verify"):
        verify_cosignature(line, body.replace(b"\n5\n", b"\n6\n"), v)
    # a cosignature with its timestamp changed does not verify
    forged = base64.b64encode(raw[:4] + (1700000001).to_bytes(8, "big") + raw[12:]).decode()
    with pytest.raises(NoteError, match="does not verify"):
        verify_cosignature(f"— witness.example/w1 {forged}", body, v)
    other = CosignatureSigner("witness.example/w2", nacl.signing.SigningKey(bytes(32)))
    with pytest.raises(NoteError, match="not by"):
        verify_cosignature(line, body, CosignatureVerifier.from_vkey(other.vkey))
    # a note key is not a cosigner key and the other way round
    with pytest.raises(NoteError, match="0x04"):
        CosignatureVerifier.from_vkey(vkey_of("witness.example/w1", pub))
    with pytest.raises(NoteError, match="0x01"):
        Verifier.from_vkey(w.vkey)
    # a note signature (type 0x01) by the same key is not a cosignature
    plain = Signer("witness.example/w1", key).signature_line(body.decode())
    with pytest.raises(NoteError):
        verify_cosignature(plain, body, v)


def test_cosigned_checkpoint_opens_with_both_keys() -> None:
    log = Signer("example.com/log", nacl.signing.SigningKey(bytes([7]) * 32))
    w = CosignatureSigner("witness.example/w1", nacl.signing.SigningKey(bytes([8]) * 32))
    body = "example.com/log\n1\n" + base64.b64encode(bytes(32)).decode() + "\n"
    note = append_signatures(log.sign(body), [w.cosign(body.encode(), 42)])
    cv = CosignatureVerifier.from_vkey(w.vkey)
    assert open_note(note.encode(), [Verifier.from_vkey(log.vkey), cv]) == (body, ["example.com/log",
                                                                                 "witness.example/w1"])
    assert open_note(note.encode(), [cv])[1] == ["witness.example/w1"]
    with pytest.raises(NoteError):
        append_signatures(note, ["not a signature line"])


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_one_character_change_is_refused(data: st.DataObject) -> None:
    g = vec()["golang_note"]
    note = g["signed_by_peter"]
    v = Verifier.from_vkey(g["peter_vkey"])
    i = data.draw(st.integers(0, len(note) - 1))
    ch = data.draw(st.characters(min_codepoint=0x0A, max_codepoint=0x2100).filter(lambda c: c != note[i]))
    changed = note[:i] + ch + note[i + 1:]
    with pytest.raises(NoteError):
        open_note(changed.encode(), [v])
