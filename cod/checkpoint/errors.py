"""The error of execution checkpoints (SPEC 11.6)."""

from __future__ import annotations

from ..errors import CodError


class CheckpointError(CodError):
    """A module cannot be instrumented, a run cannot be checkpointed or resumed, or a snapshot
    is malformed (exit 30)."""

    code = 30
