"""LEB128, as the WebAssembly binary format writes its integers.

:func:`read_u` is the lenient reader of cod's section scanners (any unsigned value up to a
u64). :func:`read_u32` and :func:`read_s32` read as a WebAssembly decoder does: at most 5
bytes, the value in range, nothing read at or past ``end``; non-minimal encodings within
those limits are accepted. :func:`write_u` and :func:`write_s` give the minimal encodings.
"""

from __future__ import annotations

from ..content.cid import varint

MAX_SHIFT = 63  # a u64 at most: longer encodings are malformed
MAX_BYTES_32 = 5  # a u32 or an i32 takes at most ceil(32 / 7) bytes


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


def _read_32(data: bytes, offset: int, end: int, signed: bool) -> tuple[int, int]:
    value = 0
    for shift in range(0, 7 * MAX_BYTES_32, 7):
        if offset >= end:
            raise ValueError("LEB128 runs past the end")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if byte & 0x80:
            continue
        if signed and byte & 0x40:
            value -= 1 << (shift + 7)
        low, high = (-(1 << 31), 1 << 31) if signed else (0, 1 << 32)
        if not low <= value < high:
            raise ValueError(f"{'i' if signed else 'u'}32 out of range")
        return value, offset
    raise ValueError("32-bit LEB128 longer than 5 bytes")


def read_u32(data: bytes, offset: int, end: int) -> tuple[int, int]:
    """A ``u32`` at ``offset``, every byte below ``end``: (value, offset after it). ValueError otherwise."""
    return _read_32(data, offset, end, signed=False)


def read_s32(data: bytes, offset: int, end: int) -> tuple[int, int]:
    """An ``i32`` (signed LEB128) at ``offset``, every byte below ``end``. ValueError otherwise."""
    return _read_32(data, offset, end, signed=True)


def write_u(value: int) -> bytes:
    """The minimal unsigned LEB128 of ``value`` >= 0 (multiformats' varint is the same encoding)."""
    return varint(value)


def write_s(value: int) -> bytes:
    """The minimal signed LEB128 of ``value``."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7  # an arithmetic shift keeps the sign
        if (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40):
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)
