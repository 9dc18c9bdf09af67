"""An executor process: reads one JSON request a line on stdin, answers one JSON line.

Started by the node's Pool as `python -m cod.node.worker CACHE_DIR`; it keeps one Engine
(and so one module cache in memory) for its whole life.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ..errors import CodError
from ..jobspec import JobSpec
from ..wasm.engine import Engine
from ..wasm.executor import run


def handle(engine: Engine, request: dict[str, Any]) -> dict[str, Any]:
    try:
        result = run(JobSpec.from_json(request["spec"]), Path(request["module"]).read_bytes(), request["sources"],
                     request["out"], engine)
    except CodError as exc:
        return {"error": type(exc).__name__, "code": exc.code, "message": exc.message, "hint": exc.hint}
    return {"result_cid": result.result_cid, "exit_code": result.exit_code, "trap": result.trap,
            "fuel_used": result.fuel_used, "profile": result.profile}


def main() -> None:
    engine = Engine(sys.argv[1])
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        out.write(json.dumps(handle(engine, json.loads(line))) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
