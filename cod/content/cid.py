"""CIDv1 and multihash helpers (sha2-256 only, base32 lower text form).

A CID here is always version 1: ``varint(1) || varint(codec) || multihash``, written as
``b`` + RFC 4648 base32, lower case, no padding, exactly as IPFS tools print it.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

import multihash

from ..errors import CIDError

RAW = 0x55
DAG_PB = 0x70
JSON = 0x0200
SHA2_256 = 0x12
CIDV0_LENGTH = 46  # "Qm" + 44 base58btc characters: 34 bytes of multihash

_CODEC_NAMES = {RAW: "raw", DAG_PB: "dag-pb", JSON: "json"}


def varint(n: int) -> bytes:
    """Unsigned LEB128, as multiformats and protobuf use it."""
    if n < 0:
        raise ValueError("varint of a negative number")
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(data: bytes, pos: int = 0) -> tuple[int, int]:
    """Decode an unsigned varint at ``pos``; returns (value, next position)."""
    value = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise CIDError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise CIDError("varint longer than 9 bytes")


@dataclass(frozen=True, order=True)
class CID:
    """A CIDv1: codec and the sha2-256 digest of a block."""

    codec: int
    digest: bytes

    @classmethod
    def of(cls, codec: int, block: bytes | bytearray | memoryview) -> "CID":
        """The CID of ``block`` under ``codec``, hashed with sha2-256."""
        return cls(codec, hashlib.sha256(block).digest())

    @property
    def multihash(self) -> bytes:
        return bytes(multihash.encode(self.digest, SHA2_256))

    @property
    def binary(self) -> bytes:
        """Binary form: version, codec, multihash."""
        return varint(1) + varint(self.codec) + self.multihash

    def __str__(self) -> str:
        text = base64.b32encode(self.binary).decode("ascii").lower().rstrip("=")
        return "b" + text

    def __repr__(self) -> str:
        return f"CID({self})"

    @property
    def codec_name(self) -> str:
        return _CODEC_NAMES.get(self.codec, hex(self.codec))

    @classmethod
    def parse(cls, text: str) -> "CID":
        """Parse the base32 text form of a CIDv1 with a sha2-256 multihash, or a CIDv0
        (``Qm...``: base58btc of a sha2-256 multihash, which always names dag-pb); a CIDv0
        becomes the CIDv1 of the same block, so its text form here is ``bafybei...``."""
        if text.startswith("Qm") and len(text) == CIDV0_LENGTH:
            return cls._parse_v0(text)
        if not text.startswith("b") or len(text) < 10:
            raise CIDError(
                f"not a CIDv1 in base32: {text!r}",
                "cod accepts CIDv1 text starting with 'b' (e.g. bafkrei...)",
            )
        body = text[1:].upper()
        try:
            raw = base64.b32decode(body + "=" * (-len(body) % 8))
        except ValueError as exc:
            raise CIDError(f"not valid base32: {text!r}") from exc
        return cls.from_bytes(raw)

    @classmethod
    def _parse_v0(cls, text: str) -> "CID":
        import base58

        try:
            raw = base58.b58decode(text)
        except ValueError as exc:
            raise CIDError(f"not valid base58btc: {text!r}") from exc
        if len(raw) != 34 or raw[:2] != bytes((SHA2_256, 32)):
            raise CIDError(f"not a CIDv0 (a sha2-256 multihash in base58btc): {text!r}")
        return cls(DAG_PB, raw[2:])

    @classmethod
    def from_bytes(cls, raw: bytes) -> "CID":
        version, pos = read_varint(raw, 0)
        if version != 1:
            raise CIDError(f"CID version {version} is not supported; cod uses CIDv1")
        codec, pos = read_varint(raw, pos)
        try:
            decoded = multihash.decode(bytes(raw[pos:]))
        except Exception as exc:  # py-multihash raises several types
            raise CIDError(f"bad multihash in CID: {exc}") from exc
        if decoded.code != SHA2_256 or len(decoded.digest) != 32:
            raise CIDError("only sha2-256 CIDs are supported")
        return cls(codec, bytes(decoded.digest))
