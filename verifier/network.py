"""Where the nodes are: --node URLs, COD_NODES, the config file, or an embedded devstack."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cod.errors import CodError
from cod.local import PreparedJob

from .devstack import Devstack
from .reputation import Records
from .verify import Progress, Verification, verify


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "cod" / "config.json"


def configured_nodes(explicit: list[str] | None = None) -> list[str]:
    """Node URLs from the command line, else COD_NODES (comma-separated), else the config file."""
    if explicit:
        return list(explicit)
    env = os.environ.get("COD_NODES", "").strip()
    if env:
        return [u.strip() for u in env.split(",") if u.strip()]
    path = config_path()
    if path.exists():
        try:
            data: Any = json.loads(path.read_text())
            nodes = data.get("nodes", []) if isinstance(data, dict) else []
        except ValueError as exc:
            raise CodError(f"config file {path} is not valid JSON: {exc}") from exc
        return [str(u) for u in nodes]
    return []


async def run_verified(job: PreparedJob, n: int, urls: list[str], *, quorum: int | None = None,
                       records: Records | None = None, output_dir: Path | None = None,
                       progress: Progress = lambda step: None) -> Verification:
    """Verify on the given nodes; with none, on an embedded devstack of N nodes torn down after."""
    if urls:
        return await verify(job, urls, n, quorum=quorum, records=records, output_dir=output_dir, progress=progress)
    progress(f"Starting an embedded devstack of {n} node(s)")
    async with Devstack(n) as stack:
        return await verify(job, stack.urls, n, quorum=quorum, records=records, output_dir=output_dir,
                            progress=progress)
