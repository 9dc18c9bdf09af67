"""CARv1 writer: a header naming one root, then every block as varint(len) || CID || data.

The header is the DAG-CBOR map ``{"roots": [root], "version": 1}``, written here byte by byte
(keys in DAG-CBOR's length-first order, the CID as tag 42 over bytes 0x00 || CID).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

from ..errors import CapExceeded, CIDError
from .cid import CID, read_varint, varint
from .unixfs import Importer


def header(root: CID) -> bytes:
    cid_bytes = b"\x00" + root.binary
    body = (
        b"\xa2"  # map(2)
        + b"\x65roots"
        + b"\x81"  # array(1)
        + b"\xd8\x2a"  # tag(42)
        + _cbor_bytes_head(len(cid_bytes))
        + cid_bytes
        + b"\x67version"
        + b"\x01"
    )
    return varint(len(body)) + body


def _cbor_bytes_head(n: int) -> bytes:
    if n < 24:
        return bytes((0x40 | n,))
    if n < 256:
        return bytes((0x58, n))
    return bytes((0x59,)) + n.to_bytes(2, "big")


class CarWriter:
    """Streams blocks into a CARv1 file; blocks already written are not written again."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._seen: set[bytes] = set()

    def block(self, cid: CID, data: memoryview) -> None:
        key = cid.binary
        if key in self._seen:
            return
        self._seen.add(key)
        self._out.write(varint(len(key) + len(data)) + key)
        self._out.write(data)


def car_bytes(path: str | os.PathLike[str], root: CID) -> bytes:
    """The CARv1 of a host tree whose root CID is already known, built in memory in one pass.

    For small trees (results served by a node); raises CIDError if the tree does not hash
    to ``root``.
    """
    out = io.BytesIO()
    out.write(header(root))
    writer = CarWriter(out)
    actual = Importer(sink=writer.block).tree(path).cid
    if actual != root:
        raise CIDError(f"{os.fspath(path)!r} hashes to {actual}, not to {root}")
    return out.getvalue()


def write_car(path: str | os.PathLike[str], dest: str | os.PathLike[str]) -> CID:
    """Write the UnixFS DAG of the host tree ``path`` as a CARv1 at ``dest``; returns the root.

    The blocks go to a temporary file first (the root is only known at the end), then the
    header and the blocks are joined into ``dest`` atomically.
    """
    dest = os.fspath(dest)
    folder = os.path.dirname(os.path.abspath(dest))
    with tempfile.TemporaryFile(dir=folder) as blocks:
        writer = CarWriter(blocks)  # type: ignore[arg-type]
        root = Importer(sink=writer.block).tree(path).cid
        blocks.seek(0)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".car-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(header(root))
                while chunk := blocks.read(1 << 20):
                    out.write(chunk)
            os.replace(tmp, dest)
        except BaseException:
            os.unlink(tmp)
            raise
    return root


MAX_HEADER_BYTES = 1 << 20
"""Longest CAR header cod reads."""

MAX_SECTION_BYTES = 1 << 21
"""Longest CAR section (CID bytes and block) cod reads: 2 MiB, twice the importer's chunk."""


def read_car(source: BinaryIO, max_blocks: int | None = None) -> tuple[list[CID], Iterator[tuple[CID, bytes]]]:
    """Parse a CARv1: its roots, and its blocks, each checked against its CID as it is read.

    Raises CIDError for a malformed CAR or a block whose bytes do not hash to its CID, and
    CapExceeded (cap ``max_car_blocks``) past ``max_blocks`` blocks (duplicates counted).
    """
    roots = read_header(source)

    def blocks() -> Iterator[tuple[CID, bytes]]:
        count = 0
        while (section := _read_section(source)) is not None:
            count += 1
            if max_blocks is not None and count > max_blocks:
                raise CapExceeded("max_car_blocks", max_blocks, "the number of blocks in the CAR")
            yield section[0], section[1]

    return roots, blocks()


def index_car(source: BinaryIO, max_blocks: int) -> tuple[list[CID], dict[CID, tuple[int, int]]]:
    """Read a seekable CARv1 once: its roots, and where each block's bytes lie (offset, length).

    Every block is checked against its CID as it is read; raises like ``read_car``.
    """
    roots = read_header(source)
    index: dict[CID, tuple[int, int]] = {}
    count = 0
    while (section := _read_section(source)) is not None:
        count += 1
        if count > max_blocks:
            raise CapExceeded("max_car_blocks", max_blocks, "the number of blocks in the CAR")
        cid, data = section
        index.setdefault(cid, (source.tell() - len(data), len(data)))
    return roots, index


def read_header(source: BinaryIO) -> list[CID]:
    """The roots named by a CARv1 header; raises CIDError for anything else."""
    head_len = _read_stream_varint(source)
    if head_len is None or head_len > MAX_HEADER_BYTES:
        raise CIDError("not a CARv1: no header")
    head = source.read(head_len)
    if len(head) != head_len:
        raise CIDError("truncated CAR header")
    try:
        return _parse_header(head)
    except (IndexError, ValueError) as exc:
        raise CIDError(f"malformed CAR header: {exc}") from exc


def _read_section(source: BinaryIO) -> tuple[CID, bytes] | None:
    """The next block, checked against its CID; None at the end of the CAR."""
    length = _read_stream_varint(source)
    if length is None:
        return None
    if length > MAX_SECTION_BYTES:
        raise CIDError(f"CAR block of {length} bytes is larger than cod allows (2 MiB)")
    section = source.read(length)
    if len(section) != length:
        raise CIDError("truncated CAR block")
    try:
        cid, data = _split_section(section)
    except (IndexError, ValueError) as exc:
        raise CIDError(f"malformed CAR block: {exc}") from exc
    if CID.of(cid.codec, data) != cid:
        raise CIDError(f"CAR block {cid} does not hash to its CID")
    return cid, data


def _read_stream_varint(source: BinaryIO) -> int | None:
    value, shift = 0, 0
    while True:
        byte = source.read(1)
        if not byte:
            if shift == 0:
                return None
            raise CIDError("truncated varint in CAR")
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
        shift += 7
        if shift > 63:
            raise CIDError("varint too long in CAR")


def _parse_header(head: bytes) -> list[CID]:
    """The DAG-CBOR header {"roots": [...], "version": 1}, as cod and ipfs-car write it."""
    if not head.startswith(b"\xa2\x65roots") or not head.endswith(b"\x67version\x01"):
        raise CIDError("not a CARv1 header cod can read (want {roots, version: 1})")
    body = head[len(b"\xa2\x65roots") : -len(b"\x67version\x01")]
    count = body[0] - 0x80 if 0x80 <= body[0] < 0x98 else -1
    if count < 0:
        raise CIDError("CAR roots is not a short array")
    roots, pos = [], 1
    for _ in range(count):
        if body[pos : pos + 2] != b"\xd8\x2a":
            raise CIDError("CAR root is not a CID (tag 42)")
        pos += 2
        if body[pos] == 0x58:
            length, pos = body[pos + 1], pos + 2
        elif 0x40 <= body[pos] < 0x58:
            length, pos = body[pos] - 0x40, pos + 1
        else:
            raise CIDError("CAR root CID has an unexpected length")
        raw = body[pos : pos + length]
        if not raw.startswith(b"\x00"):
            raise CIDError("CAR root CID lacks the 0x00 multibase prefix")
        roots.append(CID.from_bytes(raw[1:]))
        pos += length
    return roots


def _split_section(section: bytes) -> tuple[CID, bytes]:
    version, pos = read_varint(section, 0)
    codec, pos = read_varint(section, pos)
    code, pos = read_varint(section, pos)
    size, pos = read_varint(section, pos)
    end = pos + size
    if version != 1 or code != 0x12 or size != 32 or len(section) < end:
        raise CIDError("CAR block CID is not a CIDv1 with a sha2-256 multihash")
    return CID(codec, section[pos:end]), section[end:]
