"""Attacks on guest telemetry (cod.wasm.observe, SPEC 5.5): floods of invalid calls, the worst
escaping, start functions, huge grow hooks, and tags that once broke the replay into spans.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cod import Engine
from cod.wasm import observe

from .test_observe import API, EXIT, _run, both, module, wat


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
