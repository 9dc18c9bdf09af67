"""C2SP signed notes (Ed25519, type 0x01) and C2SP tlog-cosignature/v1 (Ed25519, type 0x04).

A signed note is a text ending in a newline, a blank line, then one or more signature lines
``— <key name> <base64(4-byte key ID || signature)>\\n``. The key ID of an Ed25519 key is
SHA-256(name || 0x0A || type || public key)[:4]; a verifier key (vkey) is
``<name>+<hex key ID>+<base64(type || public key)>``.

A cosignature is a note signature of type 0x04 whose signed message is
``cosignature/v1\\ntime <T>\\n`` followed by the checkpoint body, and whose signature bytes are
the 8-byte big-endian timestamp T followed by the Ed25519 signature. A ``CosignatureVerifier``
plugs into ``open_note`` like a note verifier, so a cosigned checkpoint opens in one call.

In this API a signature *line* never carries its final newline.
Every refusal is a ``NoteError`` naming what was wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import nacl.signing

from ..identity import signature_valid

ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04
KEY_ID_SIZE = 4
ED25519_PUBLIC_SIZE = 32
ED25519_SIGNATURE_SIZE = 64
TIMESTAMP_SIZE = 8
SIG_PREFIX = "— "  # U+2014 EM DASH, space
MAX_NOTE_BYTES = 65536          # a checkpoint with 100 cosignatures is ~15 KiB
MAX_SIGNATURES = 100            # as golang.org/x/mod/sumdb/note; C2SP asks for at least 16
MAX_SIGNATURE_LINE_BYTES = 8192  # room for unknown post-quantum (ML-DSA-44) cosignatures we ignore
MAX_TIMESTAMP = 2**63 - 1
COSIGNATURE_HEADER = b"cosignature/v1\n"


class NoteError(ValueError):
    """A note, vkey, signature line or cosignature is malformed or does not verify."""


class NoteVerifier(Protocol):
    """What ``open_note`` needs of a key: its name, its key ID, and a check of note text."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def verify(self, text: bytes, signature: bytes) -> bool: ...


def check_name(name: str) -> None:
    """A key name is non-empty, without Unicode spaces, '+', or control characters."""
    if not name or "+" in name or any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        raise NoteError(f"{name!r} is not a key name: it must be non-empty, with no spaces, '+' or "
                        "control characters")


def key_id(name: str, alg: int, public_key: bytes) -> bytes:
    """SHA-256(name || 0x0A || alg || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public_key).digest()[:KEY_ID_SIZE]


def _vkey(name: str, alg: int, public_key: bytes) -> str:
    check_name(name)
    if len(public_key) != ED25519_PUBLIC_SIZE:
        raise NoteError("an Ed25519 public key has 32 bytes")
    kid = key_id(name, alg, public_key)
    return f"{name}+{kid.hex()}+{base64.b64encode(bytes([alg]) + public_key).decode()}"


def vkey_of(name: str, public_key: bytes) -> str:
    """The vkey of an Ed25519 note key (type 0x01)."""
    return _vkey(name, ALG_ED25519, public_key)


def cosignature_vkey_of(name: str, public_key: bytes) -> str:
    """The vkey of an Ed25519 cosigner key (type 0x04)."""
    return _vkey(name, ALG_COSIGNATURE_V1, public_key)


def b64decode_strict(text: str, what: str) -> bytes:
    """Standard padded base64 that re-encodes to itself; NoteError otherwise."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise NoteError(f"{what} is not standard base64") from None
    if base64.b64encode(raw).decode() != text:
        raise NoteError(f"{what} is not canonical base64")
    return raw


def parse_vkey(vkey: str) -> tuple[str, bytes, int, bytes]:
    """(name, key ID, type, public key) of a vkey; NoteError unless well formed and self-consistent."""
    parts = vkey.split("+", 2)  # the base64 key may itself hold '+'
    if len(parts) != 3:
        raise NoteError(f"{vkey!r} is not a vkey: want <name>+<8 hex key ID>+<base64 key>")
    name, kid_hex, key64 = parts
    check_name(name)
    if len(kid_hex) != 2 * KEY_ID_SIZE or any(c not in "0123456789abcdef" for c in kid_hex):
        raise NoteError(f"vkey {vkey!r}: the key ID is not 8 lowercase hex digits")
    material = b64decode_strict(key64, f"vkey {vkey!r}: the key")
    if len(material) != 1 + ED25519_PUBLIC_SIZE:
        raise NoteError(f"vkey {vkey!r}: the key is not a type byte and a 32-byte Ed25519 key")
    alg, pub = material[0], material[1:]
    if key_id(name, alg, pub) != bytes.fromhex(kid_hex):
        raise NoteError(f"vkey {vkey!r}: the key ID does not match the name and key")
    return name, bytes.fromhex(kid_hex), alg, pub


@dataclass(frozen=True)
class Verifier:
    """An Ed25519 note key (type 0x01)."""

    name: str
    key_id: bytes
    public_key: bytes

    @classmethod
    def from_vkey(cls, vkey: str) -> Verifier:
        name, kid, alg, pub = parse_vkey(vkey)
        if alg != ALG_ED25519:
            raise NoteError(f"vkey {vkey!r} is of type {alg:#04x}, not an Ed25519 note key (0x01)")
        return cls(name, kid, pub)

    @property
    def vkey(self) -> str:
        return vkey_of(self.name, self.public_key)

    def verify(self, text: bytes, signature: bytes) -> bool:
        return signature_valid(self.public_key, text, signature)


class Signer:
    """Signs note texts with an Ed25519 key under a key name."""

    def __init__(self, name: str, signing_key: nacl.signing.SigningKey) -> None:
        check_name(name)
        self.name = name
        self._key = signing_key
        self.public_key = bytes(signing_key.verify_key)
        self.key_id = key_id(name, ALG_ED25519, self.public_key)
        self.vkey = vkey_of(name, self.public_key)

    def sign_bytes(self, data: bytes) -> bytes:
        """The bare Ed25519 signature of ``data`` (the ledger's audit draws, SPEC.md 12.10)."""
        return bytes(self._key.sign(data).signature)

    def signature_line(self, text: str) -> str:
        """The signature line (no newline) of this key over ``text``."""
        raw = check_text(text)
        sig = bytes(self._key.sign(raw).signature)
        return f"{SIG_PREFIX}{self.name} {base64.b64encode(self.key_id + sig).decode()}"

    def sign(self, text: str) -> str:
        """The signed note: ``text``, a blank line, this key's signature line."""
        return f"{text}\n{self.signature_line(text)}\n"


def check_text(text: str) -> bytes:
    """A note text: non-empty, ends in a newline, no control characters but newline, bounded."""
    try:
        raw = text.encode("utf-8", "strict")
    except UnicodeEncodeError:
        raise NoteError("a note text is UTF-8 (it holds a lone surrogate)") from None
    if not raw or not raw.endswith(b"\n"):
        raise NoteError("a note text is not empty and ends with a newline")
    if len(raw) > MAX_NOTE_BYTES:
        raise NoteError(f"a note text is at most {MAX_NOTE_BYTES} bytes")
    if any(c < 0x20 and c != 0x0A for c in raw):
        raise NoteError("a note text holds no control characters but newline")
    return raw


@dataclass(frozen=True)
class Signature:
    """One parsed signature line."""

    name: str
    key_id: bytes
    signature: bytes  # the bytes after the key ID
    line: str         # the whole line, without its newline


def parse_signature_line(line: str) -> Signature:
    """Parse ``— <name> <base64(key ID || signature)>`` (a trailing newline is not part of it)."""
    if len(line.encode()) > MAX_SIGNATURE_LINE_BYTES:
        raise NoteError(f"a signature line is at most {MAX_SIGNATURE_LINE_BYTES} bytes")
    if not line.startswith(SIG_PREFIX):
        raise NoteError(f"signature line {line[:60]!r} does not start with an em dash and a space")
    rest = line[len(SIG_PREFIX):]
    name, sep, b64 = rest.partition(" ")
    if not sep or not b64:
        raise NoteError(f"signature line {line[:60]!r} lacks a key name and a signature")
    check_name(name)
    raw = b64decode_strict(b64, f"the signature of {name}")
    if len(raw) < KEY_ID_SIZE + 1:
        raise NoteError(f"the signature of {name} is shorter than a key ID and one byte")
    return Signature(name, raw[:KEY_ID_SIZE], raw[KEY_ID_SIZE:], line)


def split_note(note: bytes) -> tuple[str, list[Signature]]:
    """The text and parsed signature lines of a note, unverified; NoteError if malformed."""
    if len(note) > MAX_NOTE_BYTES:
        raise NoteError(f"a note is at most {MAX_NOTE_BYTES} bytes")
    try:
        decoded = note.decode("utf-8", "strict")
    except UnicodeDecodeError:
        raise NoteError("a note is UTF-8") from None
    if any(ord(ch) < 0x20 and ch != "\n" for ch in decoded):
        raise NoteError("a note holds no control characters but newline")
    split = decoded.rfind("\n\n")
    if split < 0:
        raise NoteError("a note has a blank line between its text and its signatures")
    text, block = decoded[:split + 1], decoded[split + 2:]
    if not block or not block.endswith("\n"):
        raise NoteError("a note ends with at least one signature line and a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"a note carries at most {MAX_SIGNATURES} signatures")
    return text, [parse_signature_line(line) for line in lines]


def open_note(note: bytes, verifiers: Sequence[NoteVerifier]) -> tuple[str, list[str]]:
    """Verify a signed note; return its text and the names of the known keys that signed it.

    Signatures of unknown keys (name and key ID not both known) are ignored; every signature of a
    known key must verify; at least one must be present. Raises NoteError otherwise.
    """
    text, sigs = split_note(note)
    known: dict[tuple[str, bytes], NoteVerifier] = {}
    for v in verifiers:
        other = known.setdefault((v.name, v.key_id), v)
        if other is not v and other != v:
            raise NoteError(f"two different keys are named {v.name} with key ID {v.key_id.hex()}")
    raw = text.encode()
    names: list[str] = []
    for sig in sigs:
        key = known.get((sig.name, sig.key_id))
        if key is None:
            continue
        if not key.verify(raw, sig.signature):
            raise NoteError(f"the signature of {sig.name}+{sig.key_id.hex()} does not verify")
        if sig.name not in names:
            names.append(sig.name)
    if not names:
        raise NoteError("the note carries no signature of a known key")
    return text, names


def append_signatures(note: str, lines: Sequence[str]) -> str:
    """A signed note with more signature lines (each parsed first) appended at its end."""
    for line in lines:
        parse_signature_line(line)
    return note + "".join(line + "\n" for line in lines)


# --- tlog-cosignature/v1 ---------------------------------------------------------------------

def cosigned_message(body: bytes, timestamp: int) -> bytes:
    """``cosignature/v1\\ntime <T>\\n`` + the checkpoint body (what the cosigner signs)."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise NoteError(f"a cosignature timestamp is between 0 and {MAX_TIMESTAMP}")
    return COSIGNATURE_HEADER + f"time {timestamp}\n".encode() + body


class CosignatureSigner:
    """A witness key: cosigns checkpoint bodies (type 0x04)."""

    def __init__(self, name: str, signing_key: nacl.signing.SigningKey) -> None:
        check_name(name)
        self.name = name
        self._key = signing_key
        self.public_key = bytes(signing_key.verify_key)
        self.key_id = key_id(name, ALG_COSIGNATURE_V1, self.public_key)
        self.vkey = cosignature_vkey_of(name, self.public_key)

    def cosign(self, body: bytes, timestamp: int) -> str:
        """The cosignature line (no newline) over checkpoint ``body`` at POSIX time ``timestamp``."""
        try:
            check_text(body.decode("utf-8", "strict"))
        except UnicodeDecodeError:
            raise NoteError("a checkpoint body is UTF-8") from None
        sig = bytes(self._key.sign(cosigned_message(body, timestamp)).signature)
        value = self.key_id + struct.pack(">Q", timestamp) + sig
        return f"{SIG_PREFIX}{self.name} {base64.b64encode(value).decode()}"


@dataclass(frozen=True)
class CosignatureVerifier:
    """A witness's public key (type 0x04); usable as a NoteVerifier in ``open_note``."""

    name: str
    key_id: bytes
    public_key: bytes

    @classmethod
    def from_vkey(cls, vkey: str) -> CosignatureVerifier:
        name, kid, alg, pub = parse_vkey(vkey)
        if alg != ALG_COSIGNATURE_V1:
            raise NoteError(f"vkey {vkey!r} is of type {alg:#04x}, not an Ed25519 cosigner key (0x04)")
        return cls(name, kid, pub)

    @property
    def vkey(self) -> str:
        return cosignature_vkey_of(self.name, self.public_key)

    def timestamp_of(self, body: bytes, signature: bytes) -> int | None:
        """The timestamp of a valid cosignature (the bytes after the key ID), else None."""
        if len(signature) != TIMESTAMP_SIZE + ED25519_SIGNATURE_SIZE:
            return None
        (timestamp,) = struct.unpack(">Q", signature[:TIMESTAMP_SIZE])
        if timestamp > MAX_TIMESTAMP:
            return None
        if not signature_valid(self.public_key, cosigned_message(body, timestamp), signature[TIMESTAMP_SIZE:]):
            return None
        return int(timestamp)

    def verify(self, text: bytes, signature: bytes) -> bool:
        return self.timestamp_of(text, signature) is not None


def verify_cosignature(line: str, body: bytes, verifier: CosignatureVerifier) -> int:
    """Check one cosignature line over checkpoint ``body``; return its timestamp.

    A single trailing newline on ``line`` is allowed. Raises NoteError when the line is
    malformed, names another key, or does not verify.
    """
    sig = parse_signature_line(line[:-1] if line.endswith("\n") else line)
    if (sig.name, sig.key_id) != (verifier.name, verifier.key_id):
        raise NoteError(f"the cosignature is by {sig.name}+{sig.key_id.hex()}, not by "
                        f"{verifier.name}+{verifier.key_id.hex()}")
    timestamp = verifier.timestamp_of(body, sig.signature)
    if timestamp is None:
        raise NoteError(f"the cosignature of {verifier.name} does not verify over this checkpoint")
    return timestamp
