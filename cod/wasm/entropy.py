"""The only sources of time and randomness a job ever sees.

Time is a virtual counter in nanoseconds since the Unix epoch. It starts at the spec's
epoch; every clock read returns the counter and then advances it by one tick, so the n-th
read (from 0) returns ``epoch + n * tick`` plus whatever the job slept. Sleeping
(``poll_oneoff`` on a clock) moves the counter forward at once; the host never waits.

Randomness is the ChaCha20 key stream (RFC 7539, 16-byte nonce block of zeros, counter from
0) under a key derived from the job seed with HKDF-SHA256 (no salt, info
``cod/random_get/v1``). Successive ``random_get`` calls read the stream in order.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

RANDOM_INFO = b"cod/random_get/v1"
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


class RandomStream:
    """The job's random bytes: a ChaCha20 key stream keyed from the seed."""

    def __init__(self, seed: bytes) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=RANDOM_INFO).derive(seed)
        self._stream = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()

    def read(self, n: int) -> bytes:
        return self._stream.update(bytes(n))
