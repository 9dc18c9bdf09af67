"""CARv1 writer: a header naming one root, then every block as varint(len) || CID || data.

The header is the DAG-CBOR map ``{"roots": [root], "version": 1}``, written here byte by byte
(keys in DAG-CBOR's length-first order, the CID as tag 42 over bytes 0x00 || CID).
"""

from __future__ import annotations

import os
import tempfile
from typing import BinaryIO

from .cid import CID, varint
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
