"""dag-pb nodes and UnixFS Data messages, encoded byte-exactly.

Field order follows the canonical dag-pb form (@ipld/dag-pb, go-codec-dagpb): a PBNode is
its Links (field 2) in order, then its Data (field 1); a PBLink is Hash (1), Name (2),
Tsize (3). The UnixFS Data message writes its fields in field-number order and leaves out
the ones that are unset, as ipfs-unixfs and boxo do.
"""

from __future__ import annotations

from dataclasses import dataclass

from .cid import CID, varint

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
