"""The referee by re-execution (SPEC 11.3): when signed claims differ, the requester runs the job itself.

Only a wasm job whose module, imported modules and inputs this requester holds (each checked
against its CID when the job was prepared) is refereed; only on the profile the claims were
signed under (a referee on another profile refuses: nobody is branded a liar across profiles);
and only up to ``fuel`` (default the job's own). Whatever stops it is said in ``Ruling.refused``
and the verification keeps the outcome voting gives. The re-execution itself is
:mod:`cod.reexec`, shared with ``cod fraud verify`` and the ledger.
"""

from __future__ import annotations

from cod.reexec import Ruling, lacking, reexecute as referee

SELF, NONE = "self", "none"
METHODS = (SELF, NONE)
"""The values of ``--referee``: re-execute here (the default), or keep voting only."""

__all__ = ["METHODS", "NONE", "SELF", "Ruling", "lacking", "referee"]
