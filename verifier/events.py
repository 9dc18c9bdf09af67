"""What a verification reports while it runs, for a person watching (``cod run --verify``):
each node's state as it changes and the bytes of large transfers. Nothing here feeds back
into the verification; an Events object that ignores everything (the base class) changes
no result."""

from __future__ import annotations

SUBMITTING = "submitting"
UPLOADING = "uploading"
BUSY = "busy"
QUEUED = "queued"
RUNNING = "running"
SIGNED = "signed"
FAILED = "failed"
NODE_STATES = (SUBMITTING, UPLOADING, BUSY, QUEUED, RUNNING, SIGNED, FAILED)

JOB_POLL_S = 0.5
"""How often a watched node is asked for its job's state (queued or running) while it runs it."""


class Events:
    """Receives a verification's progress; every method does nothing unless overridden."""

    watching_nodes = False
    """True when node states should be polled (queued/running): costs a request per node and JOB_POLL_S."""

    def node(self, node_id: str, url: str, state: str, detail: str = "") -> None:
        """Node ``node_id`` at ``url`` is now in ``state`` (one of NODE_STATES)."""

    def transfer(self, key: str, label: str, done: int, total: int | None) -> None:
        """``done`` of ``total`` bytes of the transfer ``key`` (an upload or a download)."""


__all__ = ["BUSY", "Events", "FAILED", "JOB_POLL_S", "NODE_STATES", "QUEUED", "RUNNING", "SIGNED", "SUBMITTING",
           "UPLOADING"]
