"""How a devstack liar lies (SPEC 11.8): a test device for verifiers, never part of the protocol.

A lying node runs the job, changes what it ran or what it got, and signs the changed result
as a real cheater would. Its mode says where the lie enters:

- ``late``: the run is honest, then its ``stdout`` gets a line appended (the lie of Stage 4).
- ``early``: the run's first countable WASI call (:mod:`cod.wasm.fault`) hands the guest one
  flipped byte: execution diverges at its start.
- ``random``: the flip is at countable call ``key mod C``, where ``key`` is the SHA-256 of
  ``b"cod-devstack-lie\\0" + seed + job CID`` (CID text, UTF-8) read as a big-endian
  integer, and ``C`` is the number of countable calls an honest run of the job makes (the
  liar counts them in an honest run first).

A liar always lies: when the fault never fires, or the faulted run fails, or its result is the
honest one (a flipped byte the job's output does not show), the late lie is told on top.
Liars with the same seed tell the same lie for the same job: they collude.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..content.unixfs import cid_of_tree
from ..errors import UsageError
from ..wasm.fault import Fault

MODES = ("late", "early", "random")
DOMAIN = b"cod-devstack-lie\0"
DEFAULT_SEED = b""
"""Every liar's seed unless told otherwise: liars collude by default."""
LATE_LIE = b"(a lie)\n"


def mode_of(cheat: bool | str | None) -> str | None:
    """A node's lying mode: None (honest) for False or None, "late" for True, else one of MODES."""
    if cheat is None or cheat is False:
        return None
    if cheat is True:
        return "late"
    if cheat in MODES:
        return cheat
    raise UsageError(f"{cheat!r} is not a way to lie", f"use one of: {', '.join(MODES)}")


def key(seed: bytes, job_cid: str) -> int:
    """The random mode's key: SHA-256(DOMAIN + seed + job CID text), big-endian."""
    return int.from_bytes(hashlib.sha256(DOMAIN + seed + job_cid.encode()).digest(), "big")


def fault_for(mode: str | None, seed: bytes, job_cid: str, calls: int) -> Fault | None:
    """The fault a liar in ``mode`` runs job ``job_cid`` with, given ``calls``: the countable calls
    of the job's honest run. None for an honest node, a late liar, or a random one with no
    countable call to fault. A pure function: the same arguments, the same fault."""
    if mode == "early":
        return Fault(0)
    if mode == "random" and calls > 0:
        return Fault(key(seed, job_cid) % calls)
    return None


def late_line(seed: bytes) -> bytes:
    """The line the late lie appends: today's for the default seed, one of the seed's own else."""
    if seed == DEFAULT_SEED:
        return LATE_LIE
    return b"(a lie " + hashlib.sha256(DOMAIN + seed).hexdigest()[:16].encode() + b")\n"


def tell_late(out: Path, seed: bytes = DEFAULT_SEED) -> str:
    """The late lie: append :func:`late_line` to the results' stdout; the changed result's CID."""
    with open(out / "stdout", "ab") as stdout:
        stdout.write(late_line(seed))
    return str(cid_of_tree(out))
