"""Stage 7 attacks: guest telemetry (SPEC 5.5) and its replay into a trace (9.10)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from cod import Engine
from cod.wasm import observe

from .test_observe import API, EXIT, IMPORTS, _run, both, module, wat


def _loop(call: str, n: int, before: str = "") -> str:
    return f"""(local $i i32) {before}
    (loop $l
      {call}
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const {n}))))"""


def test_a_flood_of_invalid_calls_is_capped_like_valid_ones(engine: Engine, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad-pointer calls used to be read (memory lookup, bounds) on every call with telemetry on
    and never hit a cap: measured 300k calls 1.03 s on vs 0.67 s off, so a job near its
    timeout_ms could time out only on a tracing node. Now MAX_EVENTS invalid calls are a cap."""
    reads = [0]
    text = observe.Telemetry._text

    def counting(*args: Any) -> str | None:
        reads[0] += 1
        return text(*args)

    monkeypatch.setattr(observe.Telemetry, "_text", staticmethod(counting))
    n = 100_000
    report = both(engine, tmp_path, module(_loop("(call $enter (i32.const -1) (i32.const 5))", n)))
    assert report["invalid"] == observe.MAX_EVENTS
    assert report["dropped"] == n - observe.MAX_EVENTS
    assert report["events"] == []
    assert reads[0] == observe.MAX_EVENTS  # nothing more was looked at


def test_exits_without_an_enter_are_capped_too(engine: Engine, tmp_path: Path) -> None:
    report = both(engine, tmp_path, module(_loop("(call $exit_span)", 5000)))
    assert (report["invalid"], report["dropped"]) == (observe.MAX_EVENTS, 5000 - observe.MAX_EVENTS)


def test_the_worst_escaping_report_fits_the_worker_pipe(engine: Engine, tmp_path: Path) -> None:
    """Text is capped in UTF-8 bytes but crosses the worker pipe as JSON: a control character is
    1 byte of text and 6 of JSON (\\u0001), a lone comma in tags becomes `"", `. The worst report
    must still fit the pool's 1 MiB line (cod/node/pool.py limit=1 << 20)."""
    ctl = "\\01" * 1024
    commas = "," * 1024
    data = f'(data (i32.const 1024) "{ctl}") (data (i32.const 4096) "{commas}")'
    body = """(local $i i32)
    (call $enter (i32.const 1024) (i32.const 1024))
    (loop $l
      (call $log (i32.const -1) (i32.const 1024) (i32.const 1024))
      (call $tags (i32.const 4096) (i32.const 1024))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 100))))"""
    report = both(engine, tmp_path, module(body, extra=data))
    assert report["dropped"] > 0 and report["events"]
    line = json.dumps({"ok": True, "guest_telemetry": report})
    assert len(line) > 5 * observe.MAX_TEXT_BYTES  # the escaping did blow it up ...
    bound = 6 * observe.MAX_TEXT_BYTES + 128 * observe.MAX_EVENTS  # ... within this bound
    assert len(line) < bound < 1 << 20
    from cod.node import pool

    assert "limit=1 << 20" in Path(pool.__file__).read_text()


def test_calls_from_a_start_function_are_neutral(engine: Engine, tmp_path: Path) -> None:
    """The start function runs while instantiating, before _start: the imports must work (or be
    counted invalid), never refuse or trap the module, and the result is the same either way."""
    wasm = wat(f'(module {EXIT} (import "{API}" "span-enter" (func $enter (param i32 i32))) '
               f'(import "{API}" "span-exit" (func $exit_span)) (memory (export "memory") 1) '
               '(data (i32.const 0) "init") (func $init (call $enter (i32.const 0) (i32.const 4)) '
               '(call $exit_span) (call $enter (i32.const -8) (i32.const 4))) (start $init) '
               '(func (export "_start") (call $exit (i32.const 3))))')
    report = both(engine, tmp_path, wasm)
    assert [e.get("name") for e in report["events"]] == ["init", None]
    assert report["invalid"] == 1
    assert _run(engine, tmp_path / "x", wasm, True).exit_code == 3


def test_huge_memory_grow_hooks_stay_in_int64(engine: Engine, tmp_path: Path) -> None:
    """u32::MAX pages per hook, as often as the caps allow: the summed span attribute must stay
    an int64 (OTLP encodes ints as int64; one overflowing attribute would fail a whole batch)."""
    report = both(engine, tmp_path, module(_loop("(call $grow (i32.const -1))", 5000,
                                                 "(call $enter (i32.const 16) (i32.const 5))")))
    spans = observe.to_spans(report)["spans"]
    assert spans[0]["attributes"]["wasm.memory.grow_pages"] == (observe.MAX_EVENTS - 1) * 0xFFFFFFFF < 2 ** 63


def test_a_guest_tag_naming_the_grow_attribute_does_not_break_the_replay(engine: Engine, tmp_path: Path) -> None:
    """A tag `wasm.memory.grow_pages:x` then a memory-grow hook: to_spans added an int to the
    guest's text and raised TypeError, losing all of that job's guest spans. Now the count wins."""
    data = '(data (i32.const 2048) "wasm.memory.grow_pages:x")'
    report = both(engine, tmp_path, module("(call $enter (i32.const 16) (i32.const 5)) "
                                           "(call $tags (i32.const 2048) (i32.const 24)) (call $grow (i32.const 2))",
                                           extra=data))
    spans = observe.to_spans(report)["spans"]
    assert spans[0]["attributes"]["wasm.memory.grow_pages"] == 2


def test_odd_reports_never_escape_the_hand_on(caplog: pytest.LogCaptureFixture) -> None:
    """_hand_on_telemetry gets what the worker sent; junk (a list of events that are not dicts,
    an exit with no enter, a deep stack) is logged, never raised into the job."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from cod import telemetry
    from cod.node.app import Node

    exporter = InMemorySpanExporter()
    telemetry.configure([exporter], [])
    try:
        hand_on = Node._hand_on_telemetry
        fake: Any = type("N", (), {"guest_telemetry": None})()
        deep = {"events": [{"kind": "enter", "name": str(i), "func": None, "ns": i} for i in range(1024)],
                "end_ns": 2000}
        with telemetry.span("node.job"):
            hand_on(fake, "job", deep)
            hand_on(fake, "job", {"events": ["junk", 3]})
            hand_on(fake, "job", {"events": [{"kind": "exit", "ns": 1}, {"kind": "enter"}]})
            hand_on(fake, "job", [1, 2])
        names = [s.name for s in exporter.get_finished_spans()]
        assert names.count("0") == 1 and "1023" in names and "node.job" in names
    finally:
        telemetry.shutdown()



@pytest.mark.parametrize("hostile", ["/root/.ssh", "../../etc/passwd", "~/.cod/node.key", "bafy:/inputs", ""])
def test_a_result_cid_that_would_render_to_a_local_path_is_refused_at_the_answer(hostile: str) -> None:
    """Airflow chains stages by ``inputs=["{{ ...['result_cid'] }}:/inputs"]``; a local path
    there would make the requester upload its own files (as ``cod run -i PATH`` does, which is
    the DAG author's choice). The value comes from nodes' answers, so hostile nodes agreeing on
    ``/root/.ssh`` must not get it into XCom: a done record's result_cid must be a CID. The
    empty text passed the check (a parse failure compared its canonical form "" to "") and so
    could group and be judged as a result; now it is refused like any other non-CID."""
    from cod.errors import CodError
    from verifier import schema

    job = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    with pytest.raises(CodError, match="result_cid"):
        schema.job_record("n", {"job_cid": job, "state": "done", "result_cid": hostile, "statement": {}}, job)


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
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert done.returncode == 0, done.stderr[-2000:]
    spans, shutdown, connections = (float(x) for x in done.stdout.split())
    assert connections >= 1  # it did try the collector
    assert spans < 5.0  # never waited on it (measured 0.15 s for 5,000 spans)
    assert shutdown < 60.0
