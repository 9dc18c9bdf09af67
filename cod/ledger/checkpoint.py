"""C2SP tlog-checkpoint bodies: ``<origin>\\n<size>\\n<base64 root>\\n`` [extension lines].

The ledger writes no extension lines; ``parse`` accepts them (non-empty, C2SP) so a witness can
cosign any log's checkpoint, and ``body()`` gives them back byte for byte.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from .merkle import HASH_SIZE
from .note import NoteError, b64decode_strict

MAX_TREE_SIZE = 2**63 - 1  # sizes are u64 on the wire elsewhere (tlog-tiles); keep within i64 for SQLite
MAX_ORIGIN_BYTES = 1024
MAX_BODY_BYTES = 16384


class CheckpointError(NoteError):
    """A checkpoint body is malformed."""


def parse_size(text: str, what: str = "tree size") -> int:
    """An ASCII decimal without leading zeros (``0`` itself allowed), at most MAX_TREE_SIZE."""
    if not text or not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        raise CheckpointError(f"the {what} {text[:30]!r} is not a decimal without leading zeros")
    if len(text) > 19 or int(text) > MAX_TREE_SIZE:
        raise CheckpointError(f"the {what} is over {MAX_TREE_SIZE}")
    return int(text)


@dataclass(frozen=True)
class Checkpoint:
    """A log's signed statement of its size and root (the note text, without signatures)."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = field(default=())

    def body(self) -> bytes:
        """The note text: origin, size, base64 root, extension lines, each ending in a newline."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(), *self.extensions]
        return "".join(line + "\n" for line in lines).encode()

    @classmethod
    def parse(cls, body: bytes) -> Checkpoint:
        """Parse a checkpoint body strictly; CheckpointError names the first problem."""
        if len(body) > MAX_BODY_BYTES:
            raise CheckpointError(f"a checkpoint body is at most {MAX_BODY_BYTES} bytes")
        try:
            text = body.decode("utf-8", "strict")
        except UnicodeDecodeError:
            raise CheckpointError("a checkpoint body is UTF-8") from None
        if not text.endswith("\n"):
            raise CheckpointError("a checkpoint body ends with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError("a checkpoint body has an origin, a size and a root hash line")
        origin, size_text, root_text, *extensions = lines
        if not origin or len(origin.encode()) > MAX_ORIGIN_BYTES:
            raise CheckpointError(f"the origin line is 1 to {MAX_ORIGIN_BYTES} bytes")
        if any(ord(ch) < 0x20 for ch in text if ch != "\n"):
            raise CheckpointError("a checkpoint body holds no control characters")
        size = parse_size(size_text)
        try:
            root = b64decode_strict(root_text, "the root hash")
        except NoteError as exc:
            raise CheckpointError(str(exc)) from None
        if len(root) != HASH_SIZE:
            raise CheckpointError(f"the root hash has {len(root)} bytes, not {HASH_SIZE}")
        if any(not line for line in extensions):
            raise CheckpointError("extension lines are not empty")
        return cls(origin, size, root, tuple(extensions))
