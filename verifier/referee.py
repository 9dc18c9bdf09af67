"""The referee by re-execution (SPEC 11.3): when signed claims differ, the requester runs the job itself.

Only a wasm job whose module, imported modules and inputs this requester holds (each checked
against its CID when the job was prepared) is refereed; only on the profile the claims were
signed under (a referee on another profile refuses: nobody is branded a liar across profiles);
and only up to ``fuel`` (default the job's own). Whatever stops it is said in ``Ruling.refused``
and the verification keeps the outcome voting gives.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cod.errors import CodError
from cod.jobspec import ENGINE_WASM
from cod.local import PreparedJob

SELF, NONE = "self", "none"
METHODS = (SELF, NONE)
"""The values of ``--referee``: re-execute here (the default), or keep voting only."""


@dataclass
class Ruling:
    """What the referee found: its own result CID, or why it did not judge (``refused``)."""

    result_cid: str | None = None
    job_fuel: int = 0
    segment_fuel: int = 0
    refused: str | None = None

    def to_json(self, liars: list[str]) -> dict[str, Any]:
        return {"method": SELF, "result_cid": self.result_cid, "job_fuel": self.job_fuel,
                "segment_fuel": self.segment_fuel, "rounds": 0, "liars": liars}


def lacking(job: PreparedJob) -> str | None:
    """Why this requester cannot re-execute ``job`` (None when it can)."""
    spec = job.spec
    if spec.engine != ENGINE_WASM:
        return f"a {spec.engine} job is never re-executed by the referee"
    if not job.wasm:
        return f"this requester does not hold the module {spec.module}"
    if job.missing_modules:
        return f"this requester does not hold the imported module {job.missing_modules[0]}"
    for item in spec.inputs:
        if item.path not in job.sources:
            return f"this requester does not hold the input {item.cid} (mounted at {item.path})"
    if spec.output_base and spec.outputs not in job.sources:
        return f"this requester does not hold the output base {spec.output_base}"
    return None


def referee(job: PreparedJob, profile: str, fuel: int | None = None, cache_dir: Path | None = None) -> Ruling:
    """Re-execute ``job`` here to judge claims signed under ``profile``, with at most ``fuel``
    (default the job's own fuel). Never raises a CodError: a run that fails is a refusal."""
    from cod.wasm.engine import Engine
    from cod.wasm.executor import run
    from cod.wasm.hostcall import OUT_OF_FUEL

    job_fuel = job.spec.limits.fuel
    ruling = Ruling(job_fuel=job_fuel)
    why = lacking(job)
    if why is not None:
        ruling.refused = f"the referee cannot re-execute the job: {why}"
        return ruling
    try:
        engine = Engine(cache_dir, wall_clock=True)
    except CodError as exc:
        ruling.refused = f"the referee has no engine: {exc.message}"
        return ruling
    if engine.profile != profile:
        ruling.refused = (f"the referee runs profile {engine.profile}, the claims were signed under {profile}: "
                          "it does not judge across profiles")
        return ruling
    bound = job_fuel if fuel is None else min(fuel, job_fuel)
    spec = job.spec if bound == job_fuel else replace(job.spec, limits=replace(job.spec.limits, fuel=bound))
    scratch = Path(tempfile.mkdtemp(prefix="cod-referee-"))
    try:
        result = run(spec, job.wasm, job.sources, scratch / "out", engine, modules=job.modules)
    except CodError as exc:
        ruling.refused = f"the referee's re-execution failed: {exc.message}"
        return ruling
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ruling.segment_fuel = result.fuel_used
    if bound < job_fuel and result.trap == OUT_OF_FUEL:
        ruling.refused = (f"the referee's fuel bound ({bound} of the job's {job_fuel}) ran out before the job "
                          "ended (raise --referee-fuel)")
        return ruling
    ruling.result_cid = result.result_cid
    return ruling
