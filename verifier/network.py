"""Where the nodes are: --node URLs, COD_NODES, the config file, or an embedded devstack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cod.config import load
from cod.local import PreparedJob

from .events import Events
from .reputation import Records
from .verify import Progress, Verification, verify


def configured_nodes(explicit: list[str] | None = None) -> list[str]:
    """Node URLs from the command line, else COD_NODES (comma-separated), else the config file."""
    if explicit:
        return list(explicit)
    return load().nodes


async def run_verified(job: PreparedJob, n: int, urls: list[str], *, quorum: int | None = None,
                       records: Records | None = None, output_dir: Path | None = None,
                       progress: Progress = lambda step: None, events: Events | None = None,
                       require_local: bool = False, cache_dir: Path | None = None, referee: str = "none",
                       **judging: Any) -> Verification:
    """Verify on the given nodes; with none, on an embedded devstack of N nodes torn down after.

    The embedded nodes keep compiled modules in ``cache_dir`` (the requester's module cache, so
    the module the local check compiled is not compiled again by each node), else each its own;
    ``referee`` and the other options of the referee and audits (``referee_fuel``, ``referee_bytes``,
    ``audit``, ...) as for ``verify`` (the referee's engine uses ``cache_dir`` too)."""
    if urls:
        return await verify(job, urls, n, quorum=quorum, records=records, output_dir=output_dir, progress=progress,
                            events=events, require_local=require_local, referee=referee, cache_dir=cache_dir,
                            **judging)
    from .devstack import Devstack  # the node server, only when this command runs the nodes itself

    progress(f"Starting an embedded devstack of {n} node(s)")
    # its nodes die with the command: runs are kept, nodes are not
    async with Devstack(n, cache_dir=cache_dir) as stack:
        return await verify(job, stack.urls, n, quorum=quorum, records=(records or Records()).ephemeral(),
                            output_dir=output_dir, progress=progress, events=events, require_local=require_local,
                            referee=referee, cache_dir=cache_dir, **judging)
