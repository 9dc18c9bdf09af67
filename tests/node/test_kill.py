"""A node killed with SIGKILL takes its executors with it, and a restarted node adopts nothing
of the jobs it marks failed. Real `cod serve` subprocesses, a real busy-looping job."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from cod import JobSpec, Limits, module_cid

from ..node_kit import BUSY_WAT, wat
from .conftest import Serve

POLL_SECONDS = 0.05
PATIENCE_SECONDS = 60.0  # a bound against hanging, not a speed requirement


def _state(pid: int) -> str | None:
    """The process state letter from /proc (R running, S sleeping, Z zombie), None when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def _until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + PATIENCE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(POLL_SECONDS)


def test_a_node_killed_with_sigkill_leaves_no_executor_and_adopts_nothing(
        tmp_path: Path, serves: list[Serve]) -> None:
    data = tmp_path / "node"
    first = Serve(data)
    serves.append(first)
    busy = wat(BUSY_WAT)
    assert first.call("PUT", f"/v1/blobs/{module_cid(busy)}", busy, "application/octet-stream")[0] == 201
    spec = JobSpec(module=module_cid(busy), limits=Limits(fuel=10**12, timeout_ms=600_000))
    status, job = first.call("POST", "/v1/jobs", json.dumps({"spec": spec.to_dict()}).encode())
    assert status == 202
    (executor,) = first.children()
    _until(lambda: _state(executor) == "R", "the executor never started running the busy loop")

    first.process.kill()  # SIGKILL: no handler, no cleanup in the node
    first.process.wait()
    _until(lambda: _state(executor) in (None, "Z"), "the executor outlived its node")

    # what an orphan would have done later: results for the job, and a staging dir
    (data / "results" / job["job_cid"]).mkdir()
    (data / "results" / job["job_cid"] / "stdout").write_bytes(b"late")
    (data / "results" / ".cod-staging-orphan").mkdir()
    second = Serve(data)
    serves.append(second)
    status, after = second.call("GET", f"/v1/jobs/{job['job_cid']}")
    assert status == 200 and after["state"] == "failed" and after["error"]["error"] == "Interrupted"
    status, body = second.call("GET", f"/v1/jobs/{job['job_cid']}/results/stdout")
    assert status == 404 and body["error"] == "NotFound"
    assert sorted(os.listdir(data / "results")) == []
