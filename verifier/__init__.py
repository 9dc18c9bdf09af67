"""The requester side of cod: node selection, dispatch to N nodes, comparison of signed
result CIDs, node records, and the in-process devstack.

    from verifier import Devstack, verify

Names are imported on first use (PEP 562): ``import verifier.reputation`` for a local run's
record must not load the node server, aiohttp's web side and the devstack with it.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"Devstack": "devstack", "Records": "reputation", "EXIT_CODES": "verify", "Answer": "verify",
            "Requester": "verify", "Verification": "verify", "verify": "verify"}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'verifier' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = ["EXIT_CODES", "Answer", "Devstack", "Records", "Requester", "Verification", "verify"]
