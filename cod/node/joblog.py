"""One log line per finished job (``cod serve`` / ``cod devstack --log-format text|json``).

The wall clock stamps the line and times the run for the operator; neither reaches a result.
Text from a job or a requester (errors) is cut and stripped of control characters, so a log
line stays one line whatever a hostile job asks for.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TextIO

LOG_FORMATS = ("text", "json")
MAX_ERROR_CHARS = 200

JobLog = Callable[[dict[str, Any]], None]


def record(node_id: str, row: dict[str, Any], seconds: float,
           trace: tuple[str, str] | None = None) -> dict[str, Any]:
    """The log record of a finished job from its row in the node's job store; with ``trace``
    (the IDs of the job's span, when tracing is on) it carries ``trace_id`` and ``span_id``."""
    error: Any = row.get("error")
    if isinstance(error, str):
        try:
            error = json.loads(error)
        except ValueError:
            error = {"error": "Error", "message": error}
    message = None
    if isinstance(error, dict):
        message = _clean(f"{error.get('error', '')}: {error.get('message', '')}".strip(": "))
    ids = {"trace_id": trace[0], "span_id": trace[1]} if trace is not None else {}
    return {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "node": node_id, "job": row.get("job_cid"), "state": row.get("state"),
            "exit_code": row.get("exit_code"), "trap": row.get("trap"), "fuel_used": row.get("fuel_used"),
            "result_cid": row.get("result_cid"), "error": message, "ms": round(seconds * 1000), **ids}


def _clean(text: str) -> str:
    from ..text import printable

    text = printable(text)
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 3] + "..."


def text_line(rec: dict[str, Any]) -> str:
    """``TIME node NODE job JOB done exit 0 fuel 123 result CID 85ms`` (or ``failed ERROR``)."""
    node = str(rec["node"])[8:16]
    job = str(rec["job"])[9:17]
    head = f"{rec['time']} node {node} job {job} {rec['state']}"
    if rec["state"] == "done":
        trap = f" trap {rec['trap']}" if rec.get("trap") else ""
        return (f"{head} exit {rec['exit_code']}{trap} fuel {rec['fuel_used']} result {rec['result_cid']} "
                f"{rec['ms']}ms{_trace(rec)}")
    return f"{head} {rec.get('error') or ''} {rec['ms']}ms{_trace(rec)}".replace("  ", " ")


def _trace(rec: dict[str, Any]) -> str:
    return f" trace {rec['trace_id']}" if rec.get("trace_id") else ""


def writer(fmt: str, stream: TextIO | None = None) -> JobLog:
    """A JobLog writing each record as one line in ``fmt`` ("text" or "json") to ``stream`` (stderr)."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {LOG_FORMATS}")

    def write(rec: dict[str, Any]) -> None:
        out = stream or sys.stderr
        line = json.dumps(rec, sort_keys=True) if fmt == "json" else text_line(rec)
        try:
            out.write(line + "\n")
            out.flush()
        except (OSError, ValueError):
            pass  # a closed log stream never stops a node

    return write


__all__ = ["JobLog", "LOG_FORMATS", "record", "text_line", "writer"]
