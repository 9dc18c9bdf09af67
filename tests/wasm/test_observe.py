"""Guest telemetry (SPEC 5.5): the Dylibso Observe API's imports are always there, record
events only when asked, never trap and never change a result, the fuel or the outcome.

Modules are written in WAT. Each test that compares telemetry on and off runs the same module
both ways; expected events are derived by hand from the module's calls.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from cod import Engine, JobSpec, Limits, RunResult, module_cid, run
from cod.errors import ImportRefused
from cod.wasm import observe

API = "dylibso:observe/api"
INSTR = "dylibso:observe/instrument"
EXIT = '(import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))'
WRITE = '(import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))'


def _imports(ids: dict[tuple[str, str], str]) -> str:
    """WAT imports of the Observe functions ``ids`` under those WAT names, typed by the table."""
    types = {"i": "i32", "I": "i64"}
    params = {key: " ".join(types[c] for c in observe.SIGNATURES[key][0]) for key in ids}
    return " ".join(f'(import "{m}" "{n}" (func ${name} (param {params[m, n]})))' for (m, n), name in ids.items())


IMPORTS = _imports({(API, "span-enter"): "enter", (API, "span-exit"): "exit_span", (API, "span-tags"): "tags",
                    (API, "log"): "log", (API, "metric"): "metric", (INSTR, "enter"): "ienter",
                    (INSTR, "exit"): "iexit", (INSTR, "memory-grow"): "grow"})
OLD = "dylibso_observe"
LEGACY = _imports({(OLD, "span_enter"): "lenter", (OLD, "span_exit"): "lexit", (OLD, "span_tags"): "ltags",
                   (OLD, "log"): "llog", (OLD, "metric"): "lmetric", (OLD, "instrument_enter"): "lienter",
                   (OLD, "instrument_exit"): "liexit", (OLD, "instrument_memory_grow"): "ligrow"})
# memory: 0 "job" (3), 8 "k:v,a:b" (7), 16 "hello" (5), 24 "c:1|c" (5), 32 "hi\n" + iovec at 40
DATA = ('(data (i32.const 0) "job") (data (i32.const 8) "k:v,a:b") (data (i32.const 16) "hello") '
        '(data (i32.const 24) "c:1|c") (data (i32.const 32) "hi\\n") '
        '(data (i32.const 40) "\\20\\00\\00\\00\\03\\00\\00\\00") '
        '(data (i32.const 48) "\\ff\\fe")')
CALLS = """
(call $enter (i32.const 0) (i32.const 3))
(call $tags (i32.const 8) (i32.const 7))
(call $ienter (i32.const 10))
(call $log (i32.const 3) (i32.const 16) (i32.const 5))
(call $grow (i32.const 1))
(call $iexit (i32.const 10))
(call $metric (i32.const 1) (i32.const 24) (i32.const 5))
(call $exit_span)
(drop (call $write (i32.const 1) (i32.const 40) (i32.const 1) (i32.const 60)))
"""


def wat(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))


def module(body: str, imports: str = IMPORTS, extra: str = "") -> bytes:
    return wat(f'(module {EXIT} {WRITE} {imports} (memory (export "memory") 1) {DATA} {extra} '
               f'(func $work {body}) (func (export "_start") (call $work) (call $exit (i32.const 7))))')


def _run(engine: Engine, tmp: Path, wasm: bytes, telemetry: bool, modules: dict[str, bytes] | None = None,
         **limits: int) -> RunResult:
    spec = JobSpec(module=module_cid(wasm), limits=Limits(**limits))
    return run(spec, wasm, {}, tmp / ("on" if telemetry else "off"), engine, modules=modules, telemetry=telemetry)


def both(engine: Engine, tmp: Path, wasm: bytes, modules: dict[str, bytes] | None = None,
         **limits: int) -> dict[str, Any]:
    """Run with telemetry on and off; assert the results are the same; the telemetry report."""
    on = _run(engine, tmp, wasm, True, modules, **limits)
    off = _run(engine, tmp, wasm, False, modules, **limits)
    assert (on.result_cid, on.fuel_used, on.exit_code, on.trap) == (off.result_cid, off.fuel_used, off.exit_code,
                                                                    off.trap)
    assert off.telemetry is None and on.telemetry is not None
    listing = sorted(p.name for p in (tmp / "on").iterdir())
    assert listing == sorted(p.name for p in (tmp / "off").iterdir())
    assert set(listing) <= {"exitCode", "outputs", "stderr", "stdout", "trap"}
    return on.telemetry


def _strip(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "ns"} for e in events]


def test_each_call_is_recorded_in_order_and_the_result_is_the_same(engine: Engine, tmp_path: Path) -> None:
    report = both(engine, tmp_path, module(CALLS, extra='(func $three) (func $four)'))
    assert _strip(report["events"]) == [
        {"kind": "enter", "name": "job", "func": None},
        {"kind": "tags", "tags": ["k:v", "a:b"]},
        {"kind": "enter", "name": "three", "func": 10},  # after the 10 imports, the name section's 10th
        {"kind": "log", "level": 3, "message": "hello"},
        {"kind": "memory-grow", "pages": 1},
        {"kind": "exit"},
        {"kind": "metric", "format": 1, "value": "c:1|c"},
        {"kind": "exit"},
    ]
    assert (report["dropped"], report["invalid"]) == (0, 0)
    stamps = [e["ns"] for e in report["events"]]
    assert report["start_ns"] <= stamps[0] and stamps == sorted(stamps) and stamps[-1] <= report["end_ns"]
    assert (tmp_path / "on" / "stdout").read_bytes() == b"hi\n"


def test_function_names_come_from_the_name_section(engine: Engine, tmp_path: Path) -> None:
    wasm = module(CALLS, extra='(func $three) (func $four)')
    names = observe.function_names(wasm)
    # imports: proc_exit, fd_write, the 8 Observe imports (0-9); then $three, $four, $work, _start
    assert (names[0], names[1], names[10], names[12]) == ("exit", "write", "three", "work")
    assert observe.function_names(b"\x00asm\x01\x00\x00\x00") == {}
    assert observe.function_names(b"\x00asm\x01\x00\x00\x00\x00\x05\x04name") == {}


def test_the_events_become_nested_spans(engine: Engine, tmp_path: Path) -> None:
    spans = observe.to_spans(both(engine, tmp_path, module(CALLS)))
    outer, inner = spans["spans"]
    assert (outer["name"], outer["parent"], inner["parent"]) == ("job", None, 0)
    assert outer["attributes"] == {"k": "v", "a": "b"}
    assert inner["attributes"] == {"wasm.function.index": 10, "wasm.memory.grow_pages": 1}
    assert outer["start_ns"] <= inner["start_ns"] <= inner["end_ns"] <= outer["end_ns"]
    assert [(x["message"], x["level"], x["span"]) for x in spans["logs"]] == [("hello", 3, 1)]
    assert [(x["value"], x["span"]) for x in spans["metrics"]] == [("c:1|c", 0)]
    json.dumps(spans)


def test_an_unclosed_span_ends_with_the_run(engine: Engine, tmp_path: Path) -> None:
    report = both(engine, tmp_path, module("(call $enter (i32.const 0) (i32.const 3))"))
    (span,) = observe.to_spans(report)["spans"]
    assert span["end_ns"] == report["end_ns"]


def test_the_legacy_names_work_too(engine: Engine, tmp_path: Path) -> None:
    body = """
    (call $lenter (i64.const 0) (i32.const 3)) (call $ltags (i64.const 8) (i32.const 3))
    (call $llog (i32.const 1) (i64.const 16) (i32.const 5)) (call $lmetric (i32.const 1) (i64.const 24) (i32.const 5))
    (call $lienter (i32.const 0)) (call $ligrow (i32.const 2)) (call $liexit (i32.const 0)) (call $lexit)
    (call $lenter (i64.const -1) (i32.const 3))
    """
    report = both(engine, tmp_path, module(body, LEGACY))
    assert [e["kind"] for e in report["events"]] == ["enter", "tags", "log", "metric", "enter", "memory-grow",
                                                     "exit", "exit"]
    assert report["events"][4]["name"] == "exit"  # function 0 is the proc_exit import, named $exit
    assert report["invalid"] == 1


HOSTILE = """
(call $enter (i32.const 65535) (i32.const 2))      ;; past the end
(call $enter (i32.const -1) (i32.const 1))         ;; 2^32-1
(call $enter (i32.const 0) (i32.const -1))         ;; length 2^32-1
(call $enter (i32.const 48) (i32.const 2))         ;; not UTF-8
(call $tags (i32.const 65536) (i32.const 1))
(call $log (i32.const -7) (i32.const 0) (i32.const 70000))
(call $metric (i32.const 99) (i32.const -1) (i32.const -1))
(call $exit_span) (call $iexit (i32.const 5))      ;; exits with nothing open
(call $grow (i32.const -1))
(call $enter (i32.const 65536) (i32.const 0))      ;; empty at the very end: valid
"""


def test_hostile_arguments_never_trap_and_are_counted(engine: Engine, tmp_path: Path) -> None:
    report = both(engine, tmp_path, module(HOSTILE))
    assert report["invalid"] == 9
    assert _strip(report["events"]) == [{"kind": "memory-grow", "pages": 0xFFFFFFFF},
                                        {"kind": "enter", "name": "", "func": None}]


def test_a_dependency_without_memory_is_counted_invalid(engine: Engine, tmp_path: Path) -> None:
    dep = wat(f'(module {IMPORTS} (func (export "work") (call $log (i32.const 1) (i32.const 0) (i32.const 1)) '
              '(call $exit_span)))')
    cid = module_cid(dep)
    report = both(engine, tmp_path, module("(call $dep)", IMPORTS + f'(import "{cid}" "work" (func $dep))'),
                  {cid: dep})
    assert (report["invalid"], report["events"]) == (2, [])


def test_a_million_calls_stay_bounded(engine: Engine, tmp_path: Path) -> None:
    body = """(local $i i32)
    (loop $l
      (call $enter (i32.const 16) (i32.const 5))
      (call $exit_span)
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 500000))))"""
    report = both(engine, tmp_path, module(body))
    assert len(report["events"]) == observe.MAX_EVENTS
    assert report["dropped"] == 1_000_000 - observe.MAX_EVENTS
    assert len(json.dumps(report)) < 1 << 20  # fits the node's answer line with room to spare


def test_text_is_capped_per_string_and_per_job(engine: Engine, tmp_path: Path) -> None:
    body = """(local $i i32)
    (loop $l
      (call $log (i32.const 3) (i32.const 1024) (i32.const 60000))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 100))))"""
    report = both(engine, tmp_path, module(body))
    messages = [e["message"] for e in report["events"]]
    assert all(len(m.encode()) == observe.MAX_TEXT for m in messages)
    assert len(messages) == observe.MAX_TEXT_BYTES // observe.MAX_TEXT
    assert report["dropped"] == 100 - len(messages)


def test_a_cut_string_ends_at_a_character_boundary(engine: Engine, tmp_path: Path) -> None:
    euro = "\\e2\\82\\ac" * 400  # 1200 bytes of 3-byte characters
    wasm = module("(call $log (i32.const 3) (i32.const 100) (i32.const 1200))",
                  extra=f'(data (i32.const 100) "{euro}")')
    (event,) = both(engine, tmp_path, wasm)["events"]
    assert event["message"] == "\u20ac" * (observe.MAX_TEXT // 3)


def test_a_trapping_job_keeps_its_trap_and_its_events(engine: Engine, tmp_path: Path) -> None:
    report = both(engine, tmp_path, module("(call $enter (i32.const 0) (i32.const 3)) unreachable"))
    assert [e["kind"] for e in report["events"]] == ["enter"]


def test_running_out_of_fuel_is_the_same_with_telemetry_on(engine: Engine, tmp_path: Path) -> None:
    body = "(loop $l (call $enter (i32.const 0) (i32.const 3)) (call $exit_span) (br $l))"
    report = both(engine, tmp_path, module(body), fuel=100_000)
    assert report["dropped"] > 0


def test_a_wrong_signature_is_refused(engine: Engine, tmp_path: Path) -> None:
    wasm = wat(f'(module (import "{API}" "span-enter" (func (param i64 i32))) (func (export "_start")))')
    with pytest.raises(ImportRefused, match="signature differs from the Dylibso Observe"):
        _run(engine, tmp_path, wasm, False)
    wasm = wat(f'(module (import "{API}" "span_enter" (func (param i32 i32))) (func (export "_start")))')
    with pytest.raises(ImportRefused, match="not a function of the Dylibso Observe API"):
        _run(engine, tmp_path, wasm, False)
    wasm = wat(f'(module (import "{API}" "memory" (memory 1)) (func (export "_start")))')
    with pytest.raises(ImportRefused, match="only functions"):
        _run(engine, tmp_path, wasm, False)


def test_a_dependency_linked_by_cid_records_from_its_own_memory(engine: Engine, tmp_path: Path) -> None:
    dep = wat(f'(module (import "{API}" "span-enter" (func $enter (param i32 i32))) '
              f'(import "{API}" "span-exit" (func $exit_span)) (memory (export "memory") 1) '
              '(data (i32.const 0) "dep-span") '
              '(func (export "work") (call $enter (i32.const 0) (i32.const 8)) (call $exit_span)))')
    cid = module_cid(dep)
    wasm = module("(call $enter (i32.const 0) (i32.const 3)) (call $dep) (call $exit_span)",
                  IMPORTS + f'(import "{cid}" "work" (func $dep))')
    report = both(engine, tmp_path, wasm, {cid: dep})
    assert [(e["kind"], e.get("name")) for e in report["events"]] == [
        ("enter", "job"), ("enter", "dep-span"), ("exit", None), ("exit", None)]


def test_telemetry_does_not_reach_the_result_cid(engine: Engine, tmp_path: Path) -> None:
    """The same job CID, result CID and fuel with telemetry on and off, on fresh engines."""
    wasm = module(CALLS)
    first = _run(Engine(tmp_path / "c1"), tmp_path / "a", wasm, True)
    second = _run(Engine(tmp_path / "c2"), tmp_path / "b", wasm, False)
    assert (first.job_cid, first.result_cid, first.fuel_used) == (second.job_cid, second.result_cid,
                                                                  second.fuel_used)
    assert first.telemetry is not None and len(first.telemetry["events"]) == 8


async def test_a_node_hands_the_guest_telemetry_on_and_signs_the_same_result(tmp_path: Path) -> None:
    """A real node on loopback, with a real executor process: the hook gets the events; the
    signed result is the one a run without telemetry gives, and the HTTP answer has no events."""
    import aiohttp

    from cod.node.server import start_node

    wasm = module(CALLS)
    cid = module_cid(wasm)
    spec = JobSpec(module=cid)
    plain = _run(Engine(tmp_path / "cache"), tmp_path, wasm, False)
    got: list[tuple[str, dict[str, Any]]] = []
    running = await start_node(tmp_path / "node", concurrency=1)
    running.node.guest_telemetry = lambda job, report: got.append((job, report))
    try:
        async with aiohttp.ClientSession() as http:
            async with http.put(f"{running.url}/v1/blobs/{cid}", data=wasm,
                                headers={"Content-Type": "application/octet-stream"}) as resp:
                assert resp.status in (200, 201)
            async with http.post(running.url + "/v1/jobs?wait=1", json={"spec": spec.to_dict()}) as resp:
                job = await resp.json(content_type=None)
    finally:
        await running.stop()
    assert (job["state"], job["result_cid"], job["fuel_used"]) == ("done", plain.result_cid, plain.fuel_used)
    assert "guest_telemetry" not in json.dumps(job)
    ((job_cid, report),) = got
    assert job_cid == job["job_cid"] and len(report["events"]) == 8
    assert [s["name"] for s in observe.to_spans(report)["spans"]] == ["job", "work"]


class FakeRecorderSpan:
    """A stand-in for an OpenTelemetry span: records what is done to it (test only)."""

    def __init__(self, name: str, parent: "FakeRecorderSpan | None", start: int | None,
                 attributes: dict[str, Any]) -> None:
        self.name, self.parent, self.start, self.attributes = name, parent, start, attributes
        self.events: list[tuple[str, dict[str, Any], int]] = []
        self.end_time: int | None = None

    def add_event(self, name: str, attributes: dict[str, Any], timestamp: int) -> None:
        self.events.append((name, attributes, timestamp))

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def end(self, end_time: int | None = None) -> None:
        self.end_time = end_time


class FakeRecorderTracer:
    """A stand-in for an OpenTelemetry tracer whose context is just the parent span (test only)."""

    def __init__(self) -> None:
        self.spans: list[FakeRecorderSpan] = []

    def start_span(self, name: str, context: Any = None, start_time: int | None = None,
                   attributes: dict[str, Any] | None = None) -> FakeRecorderSpan:
        span = FakeRecorderSpan(name, context, start_time, attributes or {})
        self.spans.append(span)
        return span


def test_replay_puts_the_guest_spans_under_the_job_span(engine: Engine, tmp_path: Path) -> None:
    report = both(engine, tmp_path, module(CALLS + "(call $log (i32.const 1) (i32.const 16) (i32.const 5))"
                                           "(call $exit_span)"))
    job = FakeRecorderSpan("job", None, 0, {})
    tracer = FakeRecorderTracer()
    started = observe.replay(observe.to_spans(report), tracer, job, lambda span: span)
    outer, inner = started
    assert [(s.name, s.parent) for s in tracer.spans] == [("job", job), ("work", outer)]
    assert outer.attributes == {"k": "v", "a": "b"} and outer.events[0][:2] == ("metric", {
        "format": "statsd", "value": "c:1|c"})
    assert inner.events[0][:2] == ("log", {"level": "info", "message": "hello"})
    assert job.events[0][:2] == ("log", {"level": "error", "message": "hello"})
    assert job.attributes == {"cod.guest_telemetry.dropped": 0, "cod.guest_telemetry.invalid": 1}
    assert all(s.end_time is not None and s.start is not None and s.start <= s.end_time for s in started)


def test_the_worst_text_for_json_still_fits_the_answer_line(engine: Engine, tmp_path: Path) -> None:
    """Control characters grow sixfold in JSON; the caps keep the report well under the 1 MiB
    line the node reads from its executor process."""
    body = """(local $i i32)
    (memory.fill (i32.const 1024) (i32.const 1) (i32.const 1024))
    (loop $l
      (call $log (i32.const 3) (i32.const 1024) (i32.const 1024))
      (call $enter (i32.const 1024) (i32.const 1))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 2000))))"""
    report = both(engine, tmp_path, module(body))
    assert report["dropped"] > 0 and len(json.dumps(report)) < 600 * 1024


async def test_guest_spans_appear_under_the_node_job_span_with_real_opentelemetry(tmp_path: Path) -> None:
    """Tracing on (the SDK's in-memory exporter): a node's job span holds the guest's spans
    (job > work), on the wall clock within the job span, and the signed result is the one a run
    with telemetry off gives."""
    import time

    import aiohttp
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from cod import telemetry
    from cod.node.server import start_node

    wasm = module(CALLS)
    cid = module_cid(wasm)
    plain = _run(Engine(tmp_path / "cache"), tmp_path, wasm, False)
    spans = InMemorySpanExporter()
    telemetry.configure([spans])
    try:
        before = time.time_ns()
        running = await start_node(tmp_path / "node", concurrency=1)
        try:
            async with aiohttp.ClientSession() as http:
                async with http.put(f"{running.url}/v1/blobs/{cid}", data=wasm,
                                    headers={"Content-Type": "application/octet-stream"}) as resp:
                    assert resp.status in (200, 201)
                async with http.post(running.url + "/v1/jobs?wait=1",
                                     json={"spec": JobSpec(module=cid).to_dict()}) as resp:
                    job = await resp.json(content_type=None)
        finally:
            await running.stop()
        after = time.time_ns()
    finally:
        telemetry.shutdown()
    assert (job["state"], job["result_cid"], job["fuel_used"]) == ("done", plain.result_cid, plain.fuel_used)
    finished = {s.name: s for s in spans.get_finished_spans()}
    job_span, outer, inner = finished["node.job"], finished["job"], finished["work"]
    assert outer.parent is not None and outer.parent.span_id == job_span.context.span_id
    assert inner.parent is not None and inner.parent.span_id == outer.context.span_id
    assert outer.context.trace_id == job_span.context.trace_id
    for span in (outer, inner):
        assert span.start_time is not None and span.end_time is not None
        assert before <= span.start_time <= span.end_time <= after
