"""The requester side of cod: node selection, dispatch to N nodes, comparison of signed
result CIDs, node records, and the in-process devstack.

    from verifier import Devstack, verify
"""

from .devstack import Devstack
from .reputation import Records
from .verify import EXIT_CODES, Answer, Requester, Verification, verify

__all__ = ["EXIT_CODES", "Answer", "Devstack", "Records", "Requester", "Verification", "verify"]
