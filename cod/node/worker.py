"""An executor process: reads one JSON request a line on stdin, answers one JSON line.

A request names the spec, the module's blob, the input directories (``sources``), the
results directory (``out``) and, for a module that imports modules by CID, ``modules``: the
blob path of each dependency by CIDv1 text (SPEC 5.4), and ``telemetry``: true to collect the
guest's telemetry (SPEC 5.5), answered under ``guest_telemetry`` beside the result, and
``fault`` (a devstack liar's only): the run's :class:`cod.wasm.fault.Fault`, answered under
``fault`` with the calls it counted and the one it flipped.

Started by the node's Pool as `python -m cod.node.worker CACHE_DIR NODE_PID`; it keeps one
Engine (and so one module cache in memory) for its whole life. It dies with its node: the
kernel sends it SIGKILL when the node dies (PR_SET_PDEATHSIG), and if the node died before
that was set, the parent check right after exits at once. So no executor outlives a node
killed with SIGKILL to write results the restarted node has marked failed.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import CodError, ExecutorCrashed
from ..jobspec import JobSpec
from ..wasm.engine import Engine
from ..wasm.executor import run
from ..wasm.fault import Fault
from . import disk

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when ``parent`` dies; exit now if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl: we were re-parented already
        os._exit(1)


def handle(engine: Engine, line: str) -> dict[str, Any]:
    """The answer to one request line: a result, or an error (never an exception)."""
    try:
        request = json.loads(line)
        modules = {cid: Path(path).read_bytes() for cid, path in request.get("modules", {}).items()}
        fault = Fault.from_json(request["fault"]) if request.get("fault") is not None else None
        begun = time.time_ns()  # for the node's trace only (asked for by "timed"); never in a result
        result = run(JobSpec.from_json(request["spec"]), Path(request["module"]).read_bytes(), request["sources"],
                     request["out"], engine, modules=modules, telemetry=bool(request.get("telemetry")), fault=fault)
        ended = time.time_ns()
    except CodError as exc:
        return _error(exc)
    except Exception as exc:  # a bug or a host fault fails this job, never the executor
        why = disk.unwritable(exc)
        if why:  # the results (or the module cache) met a full or read-only disk
            return _error(disk.full("running the job (submit it again)", why))
        return _error(ExecutorCrashed(f"the executor failed: {type(exc).__name__}: {str(exc)[:300]}",
                                      "the node is still up; the job may be retried"))
    answer = {"result_cid": result.result_cid, "exit_code": result.exit_code, "trap": result.trap,
              "fuel_used": result.fuel_used, "profile": result.profile}
    if result.telemetry is not None:
        answer["guest_telemetry"] = result.telemetry
    if fault is not None:
        answer["fault"] = fault.to_json()
    if request.get("timed") is True:  # execute: the run in the engine, its results hashed and installed
        answer["timings"] = {"execute": [begun, ended]}
    return answer


def _error(exc: CodError) -> dict[str, Any]:
    return {"error": type(exc).__name__, "code": exc.code, "message": exc.message, "hint": exc.hint}


def main() -> None:
    if len(sys.argv) > 2:
        die_with_parent(int(sys.argv[2]))
    engine = Engine(sys.argv[1], wall_clock=False)  # the pool kills a worker that overruns the timeout
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        out.write(json.dumps(handle(engine, line)) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
