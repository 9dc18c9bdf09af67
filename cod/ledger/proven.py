"""Ledger answers proved against the log's key: a signed checkpoint, a leaf by its inclusion proof.

What a client checks before it believes (or signs) what a ledger answered (SPEC.md 12.7): the
checkpoint note opens with the log's vkey (12.2), and the leaf's RFC 9162 inclusion path leads
to that checkpoint's root (12.1). Every failure is AuditFailed naming what did not verify.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from ..errors import AuditFailed
from . import merkle
from .checkpoint import Checkpoint, CheckpointError
from .note import NoteError, Verifier, open_note

HINT = "the ledger (or something between you and it) answered what its log does not hold; nothing was signed"


def checkpoint(note: str, vkey: str, where: str = "the ledger's checkpoint") -> Checkpoint:
    """The checkpoint of ``note`` once it opens with ``vkey``."""
    try:
        text, _ = open_note(note.encode(), [Verifier.from_vkey(vkey)])
        return Checkpoint.parse(text.encode())
    except (NoteError, CheckpointError) as exc:
        raise AuditFailed([f"{where} is not signed by the log key {vkey}: {exc}"], HINT) from None


@dataclass(frozen=True)
class Proved:
    """A leaf that the log holds at ``index`` in the tree of ``checkpoint``."""

    index: int
    leaf: bytes
    checkpoint: Checkpoint

    def value(self) -> dict[str, Any]:
        try:
            value = json.loads(self.leaf)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise AuditFailed([f"leaf {self.index} is not a JSON object"], HINT)
        return value


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise AuditFailed([f"the inclusion proof's {what} is not base64 text"], HINT)
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise AuditFailed([f"the inclusion proof's {what} is not base64"], HINT) from None


def inclusion(proof: Any, vkey: str, index: int) -> Proved:
    """The leaf of an inclusion answer (``{"leaf_index", "tree_size", "leaf", "inclusion_path",
    "checkpoint"}``, 12.7) once it is proved to be leaf ``index`` of the checkpoint ``vkey`` signed."""
    if not isinstance(proof, dict) or not isinstance(proof.get("checkpoint"), str) \
            or not isinstance(proof.get("inclusion_path"), list):
        raise AuditFailed([f"the ledger's inclusion proof of leaf {index} is not an inclusion answer"], HINT)
    signed = checkpoint(proof["checkpoint"], vkey, f"the checkpoint of the inclusion proof of leaf {index}")
    if proof.get("leaf_index") != index:
        raise AuditFailed([f"the ledger answered an inclusion proof of leaf {proof.get('leaf_index')!r}, "
                           f"not of leaf {index}"], HINT)
    leaf = _b64(proof.get("leaf"), "leaf")
    path = [_b64(h, "path") for h in proof["inclusion_path"]]
    try:
        merkle.check_record(path, signed.size, signed.root, index, merkle.leaf_hash(leaf))
    except merkle.ProofError as exc:
        raise AuditFailed([f"leaf {index} is not in the log's signed tree of size {signed.size}: {exc}"],
                          HINT) from None
    return Proved(index, leaf, signed)


__all__ = ["Proved", "checkpoint", "inclusion"]
