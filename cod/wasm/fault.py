"""A deterministic fault for the devstack's liars (SPEC 11.8): one flipped byte of what the host
hands the guest.

The WASI layer (:mod:`cod.wasm.wasi`) tells a Fault about every successful call of the
*countable* functions, in the order the guest makes them, on one counter from 0:
``fd_read``, ``fd_pread``, ``random_get`` and ``clock_time_get``. At call number ``at``, or
at the first countable call after it that returns data when that one returns none (a read at
the end of a file, ``random_get`` of 0 bytes), the first byte the call returns is flipped
(XOR 0xFF) before the guest sees it. A fault fires at most once. ``at`` past the calls a run
makes never fires: :data:`NEVER` only counts them.

This is a test device, not part of the protocol: a run with a fault is a lie, never a result
cod signs as its own. A run without one (``fault=None``) is today's run, byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

COUNTED = ("fd_read", "fd_pread", "random_get", "clock_time_get")
"""The WASI functions whose successful calls a Fault counts."""
NEVER = 1 << 62
"""An ``at`` no run reaches: the fault only counts the calls (how a liar measures a job)."""
FLIP = 0xFF


@dataclass
class Fault:
    """Flip the first returned byte at countable call ``at`` (or the next that returns data).

    ``calls`` (countable calls seen so far) and ``fired`` (the number of the call whose byte was
    flipped, None while none was) are the state of one run: give each run a fresh Fault.
    """

    at: int
    calls: int = 0
    fired: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.at, bool) or not isinstance(self.at, int) or not 0 <= self.at <= NEVER:
            raise ValueError(f"a fault's call number is an integer from 0 to {NEVER}, not {self.at!r}")

    @classmethod
    def counter(cls) -> "Fault":
        """A fault that never fires: after a run, ``calls`` is the number of countable calls it made."""
        return cls(NEVER)

    def returned(self, data: list[memoryview], length: int) -> None:
        """One countable call returned ``length`` bytes, laid out in order over the buffers ``data``."""
        number = self.calls
        self.calls += 1
        if self.fired is not None or number < self.at or length <= 0:
            return
        for buf in data:
            if len(buf):
                buf[0] ^= FLIP
                self.fired = number
                return

    def to_json(self) -> dict[str, Any]:
        """What an executor process is asked with (``at``) and answers (``calls``, ``fired``)."""
        return {"at": self.at, "calls": self.calls, "fired": self.fired}

    @classmethod
    def from_json(cls, data: Any) -> "Fault":
        """A fresh fault at ``data["at"]``; raises ValueError for anything else."""
        if not isinstance(data, dict) or "at" not in data:
            raise ValueError(f"a fault is an object with an \"at\" call number, not {data!r}")
        return cls(data["at"])
