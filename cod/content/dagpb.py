"""dag-pb nodes and UnixFS Data messages, encoded byte-exactly.

Field order follows the canonical dag-pb form (@ipld/dag-pb, go-codec-dagpb): a PBNode is
its Links (field 2) in order, then its Data (field 1); a PBLink is Hash (1), Name (2),
Tsize (3). The UnixFS Data message writes its fields in field-number order and leaves out
the ones that are unset, as ipfs-unixfs and boxo do.
"""

from __future__ import annotations

from dataclasses import dataclass

from .cid import CID, read_varint, varint

# UnixFS Data.DataType
DIRECTORY = 1
FILE = 2
SYMLINK = 4
HAMT_SHARD = 5

MURMUR3_X64_64 = 0x22  # multicodec of the HAMT hash function


@dataclass(frozen=True)
class Link:
    """One PBLink: the child's CID, its name (UTF-8 bytes) and its cumulative size."""

    cid: CID
    name: bytes
    tsize: int


def _field_bytes(tag: int, value: bytes) -> bytes:
    return bytes((tag,)) + varint(len(value)) + value


def encode_link(link: Link) -> bytes:
    body = _field_bytes(0x0A, link.cid.binary) + _field_bytes(0x12, link.name)
    body += b"\x18" + varint(link.tsize)
    return body


def link_serialized_size(link: Link) -> int:
    """Bytes this link adds to a PBNode: field tag, length and the link itself."""
    n = len(encode_link(link))
    return 1 + len(varint(n)) + n


def encode_node(data: bytes, links: list[Link]) -> bytes:
    """A PBNode with ``links`` (already in their final order) and ``data``."""
    parts = [_field_bytes(0x12, encode_link(link)) for link in links]
    parts.append(_field_bytes(0x0A, data))
    return b"".join(parts)


def unixfs_data(
    kind: int,
    *,
    data: bytes | None = None,
    filesize: int | None = None,
    blocksizes: list[int] | None = None,
    hash_type: int | None = None,
    fanout: int | None = None,
) -> bytes:
    """The UnixFS ``Data`` protobuf message (no mode, no mtime: cod never writes them)."""
    out = bytearray(b"\x08" + varint(kind))
    if data:
        out += _field_bytes(0x12, data)
    if filesize is not None:
        out += b"\x18" + varint(filesize)
    for size in blocksizes or ():
        out += b"\x20" + varint(size)
    if hash_type is not None:
        out += b"\x28" + varint(hash_type)
    if fanout is not None:
        out += b"\x30" + varint(fanout)
    return bytes(out)


def _fields(data: bytes) -> list[tuple[int, int, bytes | int]]:
    """(field number, wire type, value) of a protobuf message; only varint and bytes fields."""
    out: list[tuple[int, int, bytes | int]] = []
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(data, pos)
            out.append((number, wire, value))
        elif wire == 2:
            length, pos = read_varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated protobuf field")
            out.append((number, wire, data[pos : pos + length]))
            pos += length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    return out


@dataclass(frozen=True)
class UnixFSData:
    kind: int
    data: bytes
    filesize: int | None
    blocksizes: tuple[int, ...]


def decode_node(block: bytes) -> tuple[bytes, list[Link]]:
    """A PBNode's Data and Links; raises ValueError on a malformed block."""
    data = b""
    links: list[Link] = []
    for number, _, value in _fields(block):
        if number == 1 and isinstance(value, bytes):
            data = value
        elif number == 2 and isinstance(value, bytes):
            cid, name, tsize = None, b"", 0
            for n, _, v in _fields(value):
                if n == 1 and isinstance(v, bytes):
                    cid = CID.from_bytes(v)
                elif n == 2 and isinstance(v, bytes):
                    name = v
                elif n == 3 and isinstance(v, int):
                    tsize = v
            if cid is None:
                raise ValueError("PBLink without a Hash")
            links.append(Link(cid, name, tsize))
        else:
            raise ValueError(f"unexpected PBNode field {number}")
    return data, links


def decode_unixfs(data: bytes) -> UnixFSData:
    kind, payload, filesize, sizes = -1, b"", None, []
    for number, _, value in _fields(data):
        if number == 1 and isinstance(value, int):
            kind = value
        elif number == 2 and isinstance(value, bytes):
            payload = value
        elif number == 3 and isinstance(value, int):
            filesize = value
        elif number == 4 and isinstance(value, int):
            sizes.append(value)
    if kind < 0:
        raise ValueError("UnixFS Data without a Type")
    return UnixFSData(kind, payload, filesize, tuple(sizes))
