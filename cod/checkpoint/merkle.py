"""The Merkle root of a linear memory over its 64 KiB pages (SPEC 11.6).

The tree of RFC 6962 (section 2.1) with SHA-256: a leaf is SHA-256(0x00 || page), an inner
node SHA-256(0x01 || left || right); n > 1 pages split at k, the largest power of two below
n (pages 0..k-1 on the left); the root of no pages is SHA-256 of nothing.
"""

from __future__ import annotations

import hashlib

PAGE = 65536
LEAF, NODE = b"\x00", b"\x01"


def leaves(memory: bytes | memoryview) -> list[bytes]:
    """The leaf hash of each page of ``memory`` (whose length is a multiple of PAGE)."""
    view = memoryview(memory)
    if len(view) % PAGE:
        raise ValueError(f"a linear memory is whole 64 KiB pages, not {len(view)} bytes")
    return [hashlib.sha256(LEAF + view[n:n + PAGE]).digest() for n in range(0, len(view), PAGE)]


def root_of(hashes: list[bytes]) -> bytes:
    """The RFC 6962 tree hash over the leaf hashes ``hashes`` (iterative)."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    return _subtree(hashes, 0, len(hashes))


def _subtree(hashes: list[bytes], start: int, count: int) -> bytes:
    if count == 1:
        return hashes[start]
    split = 1 << ((count - 1).bit_length() - 1)  # the largest power of two below count
    return hashlib.sha256(NODE + _subtree(hashes, start, split) + _subtree(hashes, start + split,
                                                                              count - split)).digest()


def memory_root(memory: bytes | memoryview) -> bytes:
    """The Merkle root of ``memory``'s pages (the recursion is log2(pages) deep)."""
    return root_of(leaves(memory))
