"""Attacks on the requester's and node's tracing (cod.telemetry, SPEC 9.10): a collector that hangs."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from .helpers import ROOT, VECTORS, cod_env, devstack

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
    and its guest's) end without waiting on it (the batch queue drops when full); shutdown waited
    on the exporter's timeout per batch (~5 s with 1 s; with the default 10 s a process exited up
    to about a minute late); now it waits at most cod.otlp.SHUTDOWN_TIMEOUT_S (1 s)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", HANGING_COLLECTOR], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    spans, shutdown, connections = (float(x) for x in done.stdout.split())
    assert connections >= 1  # it did try the collector
    assert spans < 5.0  # never waited on it (measured 0.15 s for 5,000 spans)
    assert shutdown < 3.0  # 1 s and a margin for a loaded machine; 5 s before


HELLO = str(VECTORS / "hello.wasm")
SDK_LINES = ("Transient error", "Failed to export", "Exception while exporting", "Traceback", "opentelemetry")
"""What the OpenTelemetry SDK printed for a dead collector (8 such lines a run), and a traceback."""
SLACK_S = 3.0
"""How much longer than a run without a collector a run with a dead one may take: the SDK's own
default (a 10 s timeout per export, retried with backoff) made it 9 to 11 s longer."""


@contextlib.contextmanager
def _blackhole() -> Iterator[str]:
    """An OTLP endpoint that accepts connections and never answers (nor closes them)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        for conn in held:
            conn.close()


def _closed_port() -> str:
    """An OTLP endpoint that refuses connections: a port just freed."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _telemetry_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("telemetry: ")]


def test_a_dead_otlp_collector_neither_delays_a_run_nor_a_node_and_says_so_once(tmp_path: Path) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT naming a closed port, or a collector that accepts and never
    answers: a verified run took 9 to 11 s longer than without one and printed the SDK's retry
    lines (8 a run). Now export is in the background and the exit waits on it at most a bound:
    the run succeeds, at most SLACK_S slower than a run without a collector (so well before the
    SDK's 10 s export timeout could have passed), and says once, on one line, that spans are
    dropped. A node exporting to the black hole answers the jobs as ever, without SDK lines."""
    env = cod_env(tmp_path)
    node_log = tmp_path / "devstack.stderr"
    with _blackhole() as hole, node_log.open("w") as node_err:
        with devstack({**env, "OTEL_EXPORTER_OTLP_ENDPOINT": hole}, tmp_path, 1, stderr=node_err) as nodes:
            env["COD_NODES"] = nodes[0][1]

            def run(**extra: str) -> tuple[subprocess.CompletedProcess[str], float]:
                start = time.monotonic()
                done = subprocess.run([sys.executable, "-m", "cod", "run", "--verify", "1", HELLO], cwd=tmp_path,
                                      env={**env, **extra}, capture_output=True, text=True, timeout=120)
                return done, time.monotonic() - start

            base, base_s = run()
            assert base.returncode == 0, base.stderr
            result = [line for line in base.stderr.splitlines() if line.startswith("Result CID:")]  # the summary
            assert len(result) == 1 and not _telemetry_lines(base.stderr), base.stderr
            for endpoint in (_closed_port(), hole):
                done, took = run(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint)
                assert done.returncode == 0 and result[0] in done.stderr.splitlines(), done.stderr
                said = _telemetry_lines(done.stderr)
                assert len(said) == 1 and endpoint in said[0], done.stderr
                assert not [line for line in done.stderr.splitlines() if any(sdk in line for sdk in SDK_LINES)], \
                    done.stderr
                assert took < base_s + SLACK_S, (endpoint, took, base_s)
    node_said = node_log.read_text()
    assert len(_telemetry_lines(node_said)) <= 1, node_said
    assert not [line for line in node_said.splitlines() if any(sdk in line for sdk in SDK_LINES)], node_said
