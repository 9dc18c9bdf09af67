"""The only sources of time and randomness a job ever sees.

Time is a virtual counter in nanoseconds since the Unix epoch. It starts at the spec's
epoch; every clock read returns the counter and then advances it by one tick, so the n-th
read (from 0) returns ``epoch + n * tick`` plus whatever the job slept. Sleeping
(``poll_oneoff`` on a clock) moves the counter forward at once; the host never waits.

Randomness is the ChaCha20 key stream (RFC 8439, which obsoletes RFC 7539: counter from 0,
nonce of 12 zero bytes) under a key derived from the job seed with HKDF-SHA256 (no salt, info
``cod/random_get/v1``). Successive ``random_get`` calls read the stream in order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # cryptography (~10 ms to import) is loaded by the first job that asks for randomness
    from cryptography.hazmat.primitives.ciphers import CipherContext

RANDOM_INFO = b"cod/random_get/v1"
KEY_BYTES = 32
U64_MAX = 2**64 - 1


class VirtualClock:
    """One time line shared by every WASI clock id."""

    def __init__(self, epoch_ns: int, tick_ns: int) -> None:
        self.now = epoch_ns
        self.tick = tick_ns

    def read(self) -> int:
        value = self.now
        self.now = min(self.now + self.tick, U64_MAX)
        return value

    def sleep(self, duration_ns: int) -> None:
        self.now = min(self.now + duration_ns, U64_MAX)

    def sleep_until(self, deadline_ns: int) -> None:
        self.now = max(self.now, deadline_ns)


def hkdf_sha256(ikm: bytes, *, salt: bytes | None, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869): extract with ``salt`` (None: no salt, i.e. 32 zero bytes), then
    expand with ``info`` to ``length`` bytes."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def chacha20_keystream(key: bytes, length: int, *, counter: int = 0, nonce: bytes = bytes(12)) -> bytes:
    """``length`` bytes of the ChaCha20 key stream (RFC 8439 section 2.4) from block ``counter``
    (32-bit) under the 96-bit ``nonce``: blocks counter, counter + 1, ... serialized in order."""
    return _chacha20(key, counter, nonce).update(bytes(length))


def random_key(seed: bytes) -> bytes:
    """The key of a job's random stream: HKDF-SHA256(seed, no salt, info RANDOM_INFO, 32 bytes)."""
    return hkdf_sha256(seed, salt=None, info=RANDOM_INFO, length=KEY_BYTES)


def _chacha20(key: bytes, counter: int, nonce: bytes) -> "CipherContext":
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    # cryptography's ChaCha20 takes the 16-byte initial state words 12-15: the block counter
    # (little-endian) followed by the nonce
    if not 0 <= counter < 2**32 or len(nonce) != 12:
        raise ValueError("ChaCha20 takes a 32-bit block counter and a 12-byte nonce")
    return Cipher(algorithms.ChaCha20(key, counter.to_bytes(4, "little") + nonce), mode=None).encryptor()


class RandomStream:
    """The job's random bytes: the ChaCha20 key stream (counter 0, nonce 0) under random_key(seed)."""

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._stream: "CipherContext | None" = None  # keyed at the first read

    def read(self, n: int) -> bytes:
        if self._stream is None:
            self._stream = _chacha20(random_key(self._seed), 0, bytes(12))
        return self._stream.update(bytes(n))
