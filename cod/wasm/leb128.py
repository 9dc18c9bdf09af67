"""Unsigned LEB128, as the WebAssembly binary format writes its integers."""

from __future__ import annotations

MAX_SHIFT = 63  # a u64 at most: longer encodings are malformed


def read_u(data: bytes, offset: int) -> tuple[int, int]:
    """The unsigned LEB128 at ``offset``: (value, offset after it). IndexError past the end,
    ValueError for an encoding longer than a u64."""
    value = shift = 0
    while True:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, offset
        if shift > MAX_SHIFT:
            raise ValueError("LEB128 too long")
