"""The error of execution checkpoints (SPEC 11.6): cod.errors.CheckpointError, re-exported."""

from __future__ import annotations

from ..errors import CheckpointError

__all__ = ["CheckpointError"]
