"""Attacks on the requester's and node's tracing (cod.telemetry, SPEC 9.10): a collector that hangs."""

from __future__ import annotations

import os

from .helpers import ROOT

HANGING_COLLECTOR = """
import os, socket, threading, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(64)
held = []
threading.Thread(target=lambda: [held.append(s.accept()) for _ in iter(int, 1)], daemon=True).start()
os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{s.getsockname()[1]}"
os.environ["OTEL_EXPORTER_OTLP_TIMEOUT"] = "1"
from cod import telemetry
telemetry.configure(otlp=True)
t = time.perf_counter()
for i in range(5000):
    with telemetry.span("x"):
        telemetry.guest({"events": [{"kind": "enter", "name": "g", "func": None, "ns": 1}], "end_ns": 2})
spans = time.perf_counter() - t
t = time.perf_counter()
telemetry.shutdown()
print(spans, time.perf_counter() - t, len(held))
"""


def test_a_hanging_otlp_collector_never_blocks_spans_and_shutdown_is_bounded() -> None:
    """COD_TRACING with an OTLP endpoint that accepts and never answers: 10,000 spans (a job's
    and its guest's) end without waiting on it (the batch queue drops when full); shutdown waits
    on the exporter's timeout per batch, so it is bounded by OTEL_EXPORTER_OTLP_TIMEOUT (measured
    ~5 s with 1 s; with the default 10 s a process exits up to about a minute late)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", HANGING_COLLECTOR], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    spans, shutdown, connections = (float(x) for x in done.stdout.split())
    assert connections >= 1  # it did try the collector
    assert spans < 5.0  # never waited on it (measured 0.15 s for 5,000 spans)
    assert shutdown < 60.0
