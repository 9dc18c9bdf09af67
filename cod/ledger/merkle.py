"""The ledger's Merkle tree: RFC 9162 hashing, stored hashes, inclusion and consistency proofs.

Hashing is RFC 9162 2.1.1: a leaf hash is SHA-256(0x00 || entry), an interior node hash
SHA-256(0x01 || left || right), the root of the empty tree SHA-256("").

Storage follows golang.org/x/mod/sumdb/tlog: every complete subtree (2^level leaves starting at
leaf n * 2^level) has its hash stored exactly once, at ``stored_hash_index(level, n)``, in the
order the hashes become known while leaves are appended. Appending leaf n therefore writes
1 + (trailing one bits of n) hashes, and the hash of any tree or subtree is a fold of at most
log2(n) stored hashes. A ``HashReader`` reads a batch of stored hashes at once, so building a
proof costs one read (one SQL query) rather than one per hash.

Proofs are made as the tlog package makes them (they equal RFC 9162 2.1.3.1 PATH and 2.1.4.1
PROOF) and checked with RFC 9162's verification algorithms of 2.1.3.2 and 2.1.4.2, step for step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

Hash = bytes
HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

HashReader = Callable[[list[int]], Sequence[bytes]]
"""Reads the stored hashes at the given indexes, in the order asked."""


class ProofError(ValueError):
    """A proof does not verify, or its inputs are out of range (callers convert it to a CodError)."""


def leaf_hash(entry: bytes) -> Hash:
    """RFC 9162 2.1.1: the hash of a leaf holding ``entry``."""
    return hashlib.sha256(LEAF_PREFIX + entry).digest()


def node_hash(left: Hash, right: Hash) -> Hash:
    """RFC 9162 2.1.1: the hash of an interior node."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def stored_hash_index(level: int, n: int) -> int:
    """The storage index of the hash of subtree ``n`` at ``level`` (leaves n*2^level ..)."""
    if level < 0 or n < 0:
        raise ValueError("level and n must not be negative")
    # Level L's n'th hash is stored right after level L+1's (2n+1)'th... walk down to level 0.
    for _ in range(level):
        n = 2 * n + 1
    # Level 0's n'th hash is stored at n + n/2 + n/4 + ... (every hash completed before it).
    i = 0
    while n > 0:
        i += n
        n >>= 1
    return i + level


def _trailing_zeros(x: int) -> int:
    return (x & -x).bit_length() - 1


def split_stored_hash_index(index: int) -> tuple[int, int]:
    """The (level, n) stored at ``index``: the inverse of ``stored_hash_index``."""
    if index < 0:
        raise ValueError("a stored hash index is not negative")
    # stored_hash_index(0, n) < 2n, so the last leaf stored at or before index is >= index/2.
    n = index // 2
    index_n = stored_hash_index(0, n)
    while True:
        # Leaf n+1 is stored after leaf n and the 1 + trailing_zeros(n+1) - 1 hashes leaf n completes.
        x = index_n + 1 + _trailing_zeros(n + 1)
        if x > index:
            break
        n += 1
        index_n = x
    level = index - index_n
    return level, n >> level


def stored_hash_count(n: int) -> int:
    """How many hashes a tree of ``n`` leaves stores."""
    if n < 0:
        raise ValueError("a tree size is not negative")
    if n == 0:
        return 0
    count = stored_hash_index(0, n - 1) + 1
    i = n - 1
    while i & 1:  # each trailing one of n-1 is a subtree completed by the last leaf
        count += 1
        i >>= 1
    return count


def _read(read: HashReader, indexes: list[int]) -> list[bytes]:
    if not indexes:
        return []
    hashes = list(read(indexes))
    if len(hashes) != len(indexes):
        raise ProofError(f"the hash reader returned {len(hashes)} hashes for {len(indexes)} indexes")
    return hashes


def stored_hashes_for_record_hash(n: int, leaf: Hash, read: HashReader) -> list[bytes]:
    """The hashes to store when appending leaf ``n`` (0-based) whose leaf hash is ``leaf``.

    The first is ``leaf`` itself; each trailing one bit of n completes a subtree, whose hash
    joins the left sibling read from storage with the hash completed just before.
    """
    if n < 0:
        raise ValueError("a leaf number is not negative")
    m = _trailing_zeros(n + 1)
    # Sorted ascending: the sibling at level i is subtree (n >> i) - 1, stored earlier at lower levels.
    indexes = [stored_hash_index(i, (n >> i) - 1) for i in range(m - 1, -1, -1)]
    old = _read(read, indexes)
    hashes = [leaf]
    h = leaf
    for i in range(m):
        h = node_hash(old[m - 1 - i], h)
        hashes.append(h)
    return hashes


def _maxpow2(n: int) -> tuple[int, int]:
    """(k, l): k = 2^l, the largest power of two strictly below n (n >= 2)."""
    l = (n - 1).bit_length() - 1
    return 1 << l, l


def _subtree_index(lo: int, hi: int, need: list[int]) -> None:
    """Append the indexes of the stored hashes that fold into the hash of leaves [lo, hi)."""
    while lo < hi:
        k, level = _maxpow2(hi - lo + 1)
        need.append(stored_hash_index(level, lo >> level))
        lo += k


def _subtree_hash(lo: int, hi: int, hashes: list[bytes], pos: int) -> tuple[bytes, int]:
    """Fold the hashes read for leaves [lo, hi) starting at ``hashes[pos]``; return (hash, next pos)."""
    count = 0
    while lo < hi:
        k, _ = _maxpow2(hi - lo + 1)
        count += 1
        lo += k
    h = hashes[pos + count - 1]
    for i in range(count - 2, -1, -1):
        h = node_hash(hashes[pos + i], h)
    return h, pos + count


def tree_hash(n: int, read: HashReader) -> Hash:
    """The root of the first ``n`` leaves (RFC 9162 MTH), from at most log2(n)+1 stored hashes."""
    if n < 0:
        raise ValueError("a tree size is not negative")
    if n == 0:
        return EMPTY_ROOT
    need: list[int] = []
    _subtree_index(0, n, need)
    h, _ = _subtree_hash(0, n, _read(read, need), 0)
    return h


def _leaf_proof_index(lo: int, hi: int, n: int, need: list[int]) -> None:
    if lo + 1 == hi:
        return
    k, _ = _maxpow2(hi - lo)
    if n < lo + k:
        _leaf_proof_index(lo, lo + k, n, need)
        _subtree_index(lo + k, hi, need)
    else:
        _subtree_index(lo, lo + k, need)
        _leaf_proof_index(lo + k, hi, n, need)


def _leaf_proof(lo: int, hi: int, n: int, hashes: list[bytes], pos: int,
                proof: list[bytes]) -> int:
    if lo + 1 == hi:
        return pos
    k, _ = _maxpow2(hi - lo)
    if n < lo + k:
        pos = _leaf_proof(lo, lo + k, n, hashes, pos, proof)
        th, pos = _subtree_hash(lo + k, hi, hashes, pos)
    else:
        th, pos = _subtree_hash(lo, lo + k, hashes, pos)
        pos = _leaf_proof(lo + k, hi, n, hashes, pos, proof)
    proof.append(th)
    return pos


def prove_record(t: int, n: int, read: HashReader) -> list[bytes]:
    """The inclusion proof of leaf ``n`` in the tree of size ``t`` (RFC 9162 2.1.3.1 PATH).

    Raises ProofError when n is not a leaf of that tree.
    """
    if t < 0 or n < 0 or n >= t:
        raise ProofError(f"leaf {n} is not in a tree of size {t}")
    need: list[int] = []
    _leaf_proof_index(0, t, n, need)
    proof: list[bytes] = []
    _leaf_proof(0, t, n, _read(read, need), 0, proof)
    return proof


def _tree_proof_index(lo: int, hi: int, n: int, need: list[int]) -> None:
    if n == hi:
        if lo != 0:
            _subtree_index(lo, hi, need)
        return
    k, _ = _maxpow2(hi - lo)
    if n <= lo + k:
        _tree_proof_index(lo, lo + k, n, need)
        _subtree_index(lo + k, hi, need)
    else:
        _subtree_index(lo, lo + k, need)
        _tree_proof_index(lo + k, hi, n, need)


def _tree_proof(lo: int, hi: int, n: int, hashes: list[bytes], pos: int,
                proof: list[bytes]) -> int:
    if n == hi:
        if lo == 0:
            return pos
        th, pos = _subtree_hash(lo, hi, hashes, pos)
        proof.append(th)
        return pos
    k, _ = _maxpow2(hi - lo)
    if n <= lo + k:
        pos = _tree_proof(lo, lo + k, n, hashes, pos, proof)
        th, pos = _subtree_hash(lo + k, hi, hashes, pos)
    else:
        th, pos = _subtree_hash(lo, lo + k, hashes, pos)
        pos = _tree_proof(lo + k, hi, n, hashes, pos, proof)
    proof.append(th)
    return pos


def prove_tree(t: int, n: int, read: HashReader) -> list[bytes]:
    """The consistency proof from tree size ``n`` to tree size ``t`` (RFC 9162 2.1.4.1 PROOF).

    Empty when n == 0 or n == t (nothing to prove). Raises ProofError when n > t.
    """
    if n < 0 or t < 0 or n > t:
        raise ProofError(f"no consistency proof from size {n} to size {t}")
    if n == 0 or n == t:
        return []
    need: list[int] = []
    _tree_proof_index(0, t, n, need)
    proof: list[bytes] = []
    _tree_proof(0, t, n, _read(read, need), 0, proof)
    return proof


def _check_hashes(proof: Sequence[bytes], *named: tuple[str, bytes]) -> None:
    for name, value in named:
        if not isinstance(value, bytes) or len(value) != HASH_SIZE:
            raise ProofError(f"{name} is not a {HASH_SIZE}-byte hash")
    for i, p in enumerate(proof):
        if not isinstance(p, bytes) or len(p) != HASH_SIZE:
            raise ProofError(f"proof element {i} is not a {HASH_SIZE}-byte hash")


def check_record(proof: list[bytes], t: int, th: Hash, n: int, h: Hash) -> None:
    """Check that leaf hash ``h`` is leaf ``n`` of the tree of size ``t`` and root ``th``.

    RFC 9162 2.1.3.2, step for step. Raises ProofError when it does not verify.
    """
    _check_hashes(proof, ("the root", th), ("the leaf hash", h))
    # 1. leaf_index must be below tree_size.
    if n < 0 or t < 0 or n >= t:
        raise ProofError(f"leaf {n} is not in a tree of size {t}")
    # 2.-3.
    fn, sn, r = n, t - 1, h
    # 4.
    for p in proof:
        if sn == 0:
            raise ProofError("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    # 5.
    if sn != 0:
        raise ProofError("the inclusion proof is shorter than the tree is deep")
    if r != th:
        raise ProofError(f"the inclusion proof of leaf {n} does not lead to the root of size {t}")


def check_tree(proof: list[bytes], t: int, th: Hash, n: int, h: Hash) -> None:
    """Check that the tree of size ``n`` and root ``h`` is a prefix of size ``t`` with root ``th``.

    RFC 9162 2.1.4.2, step for step, for 0 < n < t; n == t needs an empty proof and equal roots,
    n == 0 an empty proof and ``h`` the empty root. Raises ProofError when it does not verify.
    """
    _check_hashes(proof, ("the new root", th), ("the old root", h))
    if n < 0 or t < 0 or n > t:
        raise ProofError(f"size {n} cannot be a prefix of size {t}")
    if n == 0 or n == t:
        if proof:
            raise ProofError(f"a consistency proof from size {n} to size {t} is empty")
        if n == 0 and h != EMPTY_ROOT:
            raise ProofError("the root of the empty tree is SHA-256 of nothing")
        if n == t and h != th:
            raise ProofError(f"two different roots for the same size {n}")
        return
    # 1.
    if not proof:
        raise ProofError("the consistency proof is empty")
    path = list(proof)
    # 2.
    if n & (n - 1) == 0:
        path.insert(0, h)
    # 3.
    fn, sn = n - 1, t - 1
    # 4.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5.
    fr = sr = path[0]
    # 6.
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # 7.
    if sn != 0:
        raise ProofError("the consistency proof is shorter than the tree is deep")
    if fr != h:
        raise ProofError(f"the consistency proof does not lead to the old root of size {n}")
    if sr != th:
        raise ProofError(f"the consistency proof does not lead to the new root of size {t}")


def root(leaves: Sequence[bytes]) -> Hash:
    """RFC 9162 2.1.1 MTH(D[n]) of the entries ``leaves``, by the RFC's recursion (in memory)."""
    return root_of_hashes([leaf_hash(e) for e in leaves])


def root_of_hashes(hashes: Sequence[bytes]) -> Hash:
    """MTH of a tree whose leaf hashes are ``hashes`` (RFC recursion over index ranges)."""
    def mth(lo: int, hi: int) -> bytes:
        if hi - lo == 1:
            return hashes[lo]
        k, _ = _maxpow2(hi - lo)
        return node_hash(mth(lo, lo + k), mth(lo + k, hi))

    if not hashes:
        return EMPTY_ROOT
    return mth(0, len(hashes))


class RootBuilder:
    """MTH of leaf hashes given one at a time, in O(log n) memory: the stack of perfect subtrees."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []  # (leaves, hash), sizes strictly decreasing

    def add(self, leaf: Hash) -> None:
        size, digest = 1, leaf
        while self._stack and self._stack[-1][0] == size:
            left = self._stack.pop()[1]
            size, digest = 2 * size, node_hash(left, digest)
        self._stack.append((size, digest))

    def root(self) -> Hash:
        if not self._stack:
            return EMPTY_ROOT
        digest = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            digest = node_hash(left, digest)
        return digest


class MemoryHashes:
    """Stored hashes kept in a list (the audit and tests): ``append`` leaves, ``read`` batches."""

    def __init__(self) -> None:
        self.hashes: list[bytes] = []
        self.size = 0

    def read(self, indexes: list[int]) -> list[bytes]:
        """The stored hashes at ``indexes``; IndexError past the end."""
        return [self.hashes[i] for i in indexes]

    def append(self, entry_hash: Hash) -> None:
        """Append a leaf by its leaf hash, storing the hashes it completes."""
        self.hashes.extend(stored_hashes_for_record_hash(self.size, entry_hash, self.read))
        self.size += 1

    def root(self) -> Hash:
        return tree_hash(self.size, self.read)
