"""The requester side of cod: node selection, dispatch to N nodes, comparison of signed
result CIDs, node records, and the in-process devstack.

    from verifier import Devstack, verify

Names are imported on first use (PEP 562): ``import verifier.reputation`` for a local run's
record must not load the node server, aiohttp's web side and the devstack with it.

``verifier.verify`` is both a submodule and the function it defines. Importing the submodule
binds its name on the package, which would hide the function from ``from verifier import
verify``; the package refuses that one binding (``_Package``), so the name stays the function,
as it was when this file imported everything eagerly. The submodule is in sys.modules as
always (``from verifier.verify import check_quorum`` works).
"""

from __future__ import annotations

import importlib
import sys
import types
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


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        if name == "verify" and isinstance(value, types.ModuleType):
            return  # the import system binding the submodule: `verifier.verify` is the function
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = ["EXIT_CODES", "Answer", "Devstack", "Records", "Requester", "Verification", "verify"]
