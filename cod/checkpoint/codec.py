"""The primitives of the snapshot encoding (SPEC 11.6): little-endian integers, length-prefixed
byte strings, and a reader that refuses anything else."""

from __future__ import annotations

import struct

from .errors import CheckpointError


class Writer:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def u8(self, value: int) -> None:
        self.parts.append(struct.pack("<B", value))

    def u32(self, value: int) -> None:
        self.parts.append(struct.pack("<I", value))

    def u64(self, value: int) -> None:
        self.parts.append(struct.pack("<Q", value))

    def text(self, value: bytes) -> None:
        """str: u32 length, then the bytes."""
        self.u32(len(value))
        self.parts.append(bytes(value))

    def blob(self, value: bytes) -> None:
        """blob: u64 length, then the bytes."""
        self.u64(len(value))
        self.parts.append(bytes(value))

    def raw(self, value: bytes) -> None:
        self.parts.append(bytes(value))

    def bytes(self) -> bytes:
        return b"".join(self.parts)


class Reader:
    """Reads what Writer wrote; CheckpointError("malformed snapshot: ...") past the end."""

    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = memoryview(data)
        self.offset = offset

    def take(self, n: int) -> memoryview:
        if n < 0 or self.offset + n > len(self.data):
            raise CheckpointError(f"malformed snapshot: it ends inside a field at byte {self.offset}")
        out = self.data[self.offset:self.offset + n]
        self.offset += n
        return out

    def u8(self) -> int:
        return int(self.take(1)[0])

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "little")

    def u64(self) -> int:
        return int.from_bytes(self.take(8), "little")

    def text(self) -> bytes:
        return bytes(self.take(self.u32()))

    def blob(self) -> bytes:
        return bytes(self.take(self.u64()))

    def flag(self) -> bool:
        value = self.u8()
        if value > 1:
            raise CheckpointError(f"malformed snapshot: a flag of {value} at byte {self.offset - 1}")
        return value == 1

    def end(self) -> None:
        if self.offset != len(self.data):
            raise CheckpointError(f"malformed snapshot: {len(self.data) - self.offset} bytes after its end")
