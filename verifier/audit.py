"""Random audits (SPEC 11.4): a share P of the runs whose claims agreed is re-executed here.

Keys are free, so N agreeing signatures may be one operator: agreement alone is decided by the
count. An audit re-executes an agreed run exactly as the referee re-executes a disputed one
(:mod:`cod.reexec`) and, when its result differs, every agreeing signer is a proven liar and the
run is ``audit-failed``. Which runs are audited is drawn after the nodes answered, from the
operating system's randomness (:func:`secrets.randbelow`): no node can know beforehand whether
its run will be checked, so what a colluding set of keys risks on every run is P.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from cod.errors import UsageError
from cod.reexec import Ruling

Chooser = Callable[[float], bool]
"""Decides whether a run is audited, given P; the default draws from the OS (tests pass their own)."""

AUDIT_SCALE = 1 << 32
"""A run is audited when a uniform draw below AUDIT_SCALE falls below round(P * AUDIT_SCALE)."""


def check_share(p: float) -> float:
    """``p`` as a share of runs to audit: 0 <= p <= 1, else a UsageError (exit 2)."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise UsageError(f"--audit {p!r} is not a share of runs", "give a number from 0 (never) to 1 (every run)")
    return float(p)


def chosen(p: float, chooser: Chooser | None = None) -> bool:
    """Whether this run is audited: never at 0, always at 1, else with probability ``p``."""
    if p <= 0:
        return False
    if p >= 1:
        return True
    if chooser is not None:
        return chooser(p)
    return secrets.randbelow(AUDIT_SCALE) < round(p * AUDIT_SCALE)


def record(p: float, ruling: Ruling | None) -> dict[str, Any]:
    """The run's ``audit`` JSON object: the share, whether this run was chosen and what was found."""
    if ruling is None:
        return {"p": p, "chosen": False, "result_cid": None, "job_fuel": None, "segment_fuel": None,
                "refused": None}
    return {"p": p, "chosen": True, "result_cid": ruling.result_cid, "job_fuel": ruling.job_fuel,
            "segment_fuel": ruling.segment_fuel, "refused": ruling.refused}


__all__ = ["AUDIT_SCALE", "Chooser", "check_share", "chosen", "record"]
