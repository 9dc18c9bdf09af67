"""A job being prepared: admitted by the policy and fetching what it lacks, not yet queued (SPEC 9.6).

Between a ``POST /v1/jobs`` and the job's record in the job table, the node checks the job
and fetches the blobs it lacks from peers and gateways (SPEC 9.8), which can take minutes.
That job is known to the node all along (``GET /v1/jobs/{cid}`` answers state ``preparing``)
and ``DELETE /v1/jobs/{cid}`` cancels it. Concurrent submissions of one job share one
preparation: one fetch task, which ends when the job is cancelled or when no submission
waits for it any more.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from ..jobspec import JobSpec

PREPARING = "preparing"
PREPARATION_CANCELLED = {"error": "Cancelled", "message": "the job was cancelled (DELETE /v1/jobs/{job_cid}) while "
                         "the node fetched its inputs; it never ran"}


@dataclass(eq=False)
class Preparation:
    """One job's preparation, shared by every submission of it under way."""

    spec: JobSpec
    users: int = 0  # submissions waiting on it
    task: asyncio.Task[dict[str, str]] | None = None  # the fetch (cod.node.app Node._gather), once started
    cancelled: bool = False
    record: dict[str, Any] | None = None  # the cancelled job's record, once cancelled

    def public(self, job_cid: str) -> dict[str, Any]:
        """The record ``GET /v1/jobs/{cid}`` answers while the job is prepared."""
        return {"job_cid": job_cid, "state": PREPARING, "spec": self.spec.to_dict(), "result_cid": None,
                "exit_code": None, "trap": None, "fuel_used": None, "profile": None, "statement": None,
                "error": None}


__all__ = ["PREPARATION_CANCELLED", "PREPARING", "Preparation"]
